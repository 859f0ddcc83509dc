"""Errors a user can cause and fix: the CLI prints them as one line, never a traceback."""


class OccupancyError(Exception):
    """A problem with the user's input, files or machine; `exit_code` is what the CLI returns."""

    exit_code = 2


class ConfigError(OccupancyError):
    """config.yaml cannot be read, or a setting is unknown, of the wrong type or out of range."""


class AudioError(OccupancyError):
    """An audio file is missing, empty, corrupt or not audio at all, or overlaps another in time."""


class ModelError(OccupancyError):
    """A model file is missing, does not match its metadata, or cannot be loaded safely."""


class DeviceError(OccupancyError):
    """The audio input device is missing, busy, or PortAudio is not installed."""


class StorageError(OccupancyError):
    """The SQLite log cannot be opened or written (read-only, locked, disk full)."""


class LogGoneError(StorageError):
    """The log file was deleted or replaced while a run wrote it: what the run logged is not at its path."""


class MissingExtraError(OccupancyError):
    """The command needs packages a venue install leaves out: PyTorch and the lab (the train extra)."""
