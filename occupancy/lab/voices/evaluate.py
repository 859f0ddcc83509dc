"""`occupancy evaluate --voices`: the distinct-voices stage measured whole, as a venue runs it.

Each voices scene (scenes.py) is cut into 1-s windows; the shipped counter (ONNX Runtime, speech gate
included) counts them all; the windows it counts as one voice go, in stream order with their time,
to a DistinctVoices asked for its figure after each, as live. The figure at the scene's end (its
5-min horizon) is scored against the number of talkers. The issue's bars are for scenes of 2-12
talkers (within +-1, mean absolute error) and for one talker alone (reads 1); `noisy` is reported
without a bar. The stage's CPU time (hear and figure only) is divided by the one-voice seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from ...config import Config
from ...engine.loading import gate_rule
from ...models import load_counter
from ...models.voices import DistinctVoices, VoiceEncoder
from ..data.corpus import WINDOW
from .scenes import CONDITIONS, HORIZON_S, VoiceScene, make_voice_scene, rooms_for, scene_plan

log = logging.getLogger(__name__)

BARS = {  # condition -> figure -> (bar, is it a minimum)
    "dry": {"within_1": (0.80, True), "mae": (1.0, False), "single_reads_1": (0.95, True)},
    "rooms": {"within_1": (0.70, True), "mae": (1.5, False), "single_reads_1": (0.95, True)},
}
COST_BAR_MS = 5.0  # CPU ms per one-voice second


def scene_mixer(config: Config, split: str):
    """A Mixer of `split`'s speakers and noise with the room bank, and the bank's rooms the split uses."""
    from ..data import load_splits
    from ..data.mixing import Mixer
    from ..data.rooms import rir_bank

    splits = load_splits(config.data)
    mixer = Mixer(splits, split, max_speakers=1, reverb_share=1.0)
    mixer.bank = rir_bank(config.data.rir_rooms)
    return mixer, rooms_for(split, mixer.bank)


def voice_scenes(config: Config, split: str, condition: str, scenes: int, singles: int, seed: int):
    """The scenes of one condition, made one at a time (each holds minutes of audio)."""
    mixer, rooms = scene_mixer(config, split)
    for index, talkers in scene_plan(scenes, singles):
        yield make_voice_scene(mixer, np.random.default_rng([seed, index]), talkers, condition, rooms)


def heard_windows(counter, scene: VoiceScene) -> tuple[np.ndarray, np.ndarray]:
    """(time at each window's end in s, window) of the seconds the counter counts as one voice."""
    windows = scene.audio[: scene.seconds * WINDOW].reshape(scene.seconds, WINDOW)
    counts = np.concatenate([counter.predict(windows[i:i + 256]).argmax(axis=1) for i in range(0, len(windows), 256)])
    one = np.flatnonzero(counts == 1)
    return one + 1.0, windows[one]


def run_stage(voices: DistinctVoices, times: np.ndarray, windows: np.ndarray, end_s: float) -> tuple[int, float]:
    """The figure at `end_s` after hearing the windows in order (asking for it after each, as live),
    and the CPU seconds the stage took."""
    voices.clear()
    started = time.process_time()
    for t, window in zip(times, windows):
        voices.hear(t, window)
        voices.figure(t)
    figure = voices.figure(end_s)
    return figure, time.process_time() - started


def score_readings(truths: list[int], readings: list[int]) -> dict:
    """Share within +-1 and MAE over scenes of 2+ talkers; share of one-talker scenes reading 1; mean
    reading per number of talkers."""
    truth, reading = np.asarray(truths), np.asarray(readings)
    multi, single = truth >= 2, truth == 1
    error = np.abs(reading - truth)
    return {
        "scenes": int(multi.sum()), "singles": int(single.sum()),
        "within_1": round(float((error[multi] <= 1).mean()), 4) if multi.any() else None,
        "mae": round(float(error[multi].mean()), 4) if multi.any() else None,
        "single_reads_1": round(float((reading[single] == 1).mean()), 4) if single.any() else None,
        "per_k": {str(k): {"n": int((truth == k).sum()), "mean_reading": round(float(reading[truth == k].mean()), 3),
                           "within_1": round(float((error[truth == k] <= 1).mean()), 3)} for k in np.unique(truth)},
    }


def verdicts(condition: str, scores: dict) -> dict:
    """figure -> {bar, value, met} for the condition's bars (none for `noisy`)."""
    out = {}
    for figure, (bar, minimum) in BARS.get(condition, {}).items():
        value = scores[figure]
        met = value is not None and (value >= bar if minimum else value <= bar)
        out[figure] = {"bar": f"{'>=' if minimum else '<='} {bar}", "value": value, "met": met}
    return out


def evaluate_voices(config: Config, *, split: str = "test", conditions: tuple[str, ...] = CONDITIONS,
                    scenes: int = 88, singles: int = 32, seed: int = 1234, encoder: VoiceEncoder | None = None,
                    progress: Callable[[str], None] = log.info) -> dict:
    """Every condition's scores, bar verdicts and stage cost, as JSON-ready data."""
    counter = load_counter(config.model.path, vad=config.model.vad, gate_rule=gate_rule(config.model),
                           threads=config.model.threads, runtime="onnx")
    encoder = encoder or VoiceEncoder()
    voices = DistinctVoices(encoder, horizon_s=HORIZON_S)
    report = {"split": split, "seed": seed, "counter": counter.name, "horizon_s": HORIZON_S,
              "threshold": encoder.threshold, "projection": encoder.settings.get("fit", {}), "conditions": {}}
    for condition in conditions:
        truths, readings, cpu_s, heard_s, total_s, started = [], [], 0.0, 0, 0, time.perf_counter()
        for scene in voice_scenes(config, split, condition, scenes, singles, seed):
            times, windows = heard_windows(counter, scene)
            figure, cpu = run_stage(voices, times, windows, float(scene.seconds))
            truths.append(scene.truth)
            readings.append(figure)
            cpu_s, heard_s, total_s = cpu_s + cpu, heard_s + len(times), total_s + scene.seconds
        scores = score_readings(truths, readings)
        scores["cpu_ms_per_voice_s"] = round(1000 * cpu_s / max(heard_s, 1), 3)
        scores["one_voice_share"] = round(heard_s / max(total_s, 1), 3)  # of the scenes' seconds
        scores["verdicts"] = verdicts(condition, scores)
        report["conditions"][condition] = scores
        progress(f"{condition}: {len(truths)} scenes in {time.perf_counter() - started:.0f} s")
    return report


def format_voices(report: dict) -> str:
    """The table `occupancy evaluate --voices` prints: one line per condition, then mean readings per K."""
    lines = [f"distinct voices, {report['split']} speakers, horizon {report['horizon_s']} s, threshold "
             f"{report['threshold']}, counter {report['counter']}",
             f"{'condition':<10}{'scenes':>7}{'+-1':>7}{'MAE':>7}{'singles':>8}{'reads 1':>8}{'ms/s':>7}  bars"]
    for condition, s in report["conditions"].items():
        bars = ", ".join(f"{k} {v['bar']} {'met' if v['met'] else 'MISSED'}" for k, v in s["verdicts"].items())
        lines.append(f"{condition:<10}{s['scenes']:>7}{_num(s['within_1']):>7}{_num(s['mae']):>7}{s['singles']:>8}"
                     f"{_num(s['single_reads_1']):>8}{s['cpu_ms_per_voice_s']:>7.2f}  {bars or 'no bar'}")
    ks = sorted({int(k) for s in report["conditions"].values() for k in s["per_k"]})
    lines.append("\nmean reading per number of talkers")
    lines.append(f"{'condition':<10}" + "".join(f"{k:>6}" for k in ks))
    for condition, s in report["conditions"].items():
        lines.append(f"{condition:<10}" + "".join(f"{_num(s['per_k'].get(str(k), {}).get('mean_reading'), 1):>6}"
                                                  for k in ks))
    lines.append(f"\nstage cost bar: <= {COST_BAR_MS} CPU ms per one-voice second")
    return "\n".join(lines)


def _num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
