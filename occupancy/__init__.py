"""occupancy: a real-time microphone occupancy monitor.

microphone/WAV -> capture thread -> 1-s windows (queue) -> inference worker (CPU/CUDA)
      -> count events -> SQLite log -> hourly traffic -> reports
                      -> Textual dashboard
"""

__version__ = "0.1.0"
