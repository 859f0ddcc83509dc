"""The live product: audio in, 1-s windows, counts, the SQLite log and metrics, the same for the
microphone, a replayed file and the demo. `loading.py` is its only door to the models."""
