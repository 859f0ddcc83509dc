"""occupancy: a real-time microphone occupancy monitor.

microphone/WAV -> capture thread -> 1-s windows (queue) -> inference worker (CPU/CUDA)
      -> count events -> SQLite log -> hourly traffic -> reports
                      -> Textual dashboard
LibriSpeech -> mixtures (1..N speakers, sex metadata) -> training -> models/*.safetensors

The package, by audience (tests/test_layout.py holds these rules by reading the imports):
  errors, config, paths  shared by all: one error hierarchy, config.yaml -> settings, constants
  engine/     the live product: capture, windows, the worker, the pipeline, the SQLite log, metrics
  models/     inference only: architectures, model files, the counter and its speech gate
  reporting/  read-only analysis of the log: queries, summaries, renderers, plots
  ui/         what a person watches: the Textual dashboard and the headless lines
  fleet/      many boxes, one view: the log pushed to a central PostgreSQL and read back (the fleet extra)
  lab/        research and release tools: training data, train, evaluate, bench, ONNX export
  cli/        argparse only: one module per family of `occupancy` commands
  sample/     the bundled demo recording and its per-second truth

Walls: `cli` may import anything; `ui` imports `engine` and `reporting`; `lab` imports `models` and
`engine`; `engine` reaches `models` only through `engine/loading.py`; `reporting` reads the log
through `engine/store.py` (its schema) and nothing else of the engine; `fleet` imports `engine` and
`reporting`; nothing imports `cli` or `lab`.
"""

__version__ = "0.1.0"
