"""config.yaml -> typed, validated settings.

The file is read once into frozen dataclasses. Every mistake (unknown key, wrong type, value out of
range, unreadable YAML) becomes a ConfigError whose one-line message names the file, the key and
what is allowed. Missing keys take the defaults below; command-line flags override afterwards.
Relative paths are resolved against the folder that holds the config file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import reprlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .paths import PROJECT_DIR, SAMPLE_RATE, VAD_LOUD_THRESHOLD, VAD_QUIET_DBFS, VAD_THRESHOLD, WINDOW_S

DEFAULT_CONFIG_NAME = "config.yaml"
# Values renamed so that each name means one thing ("seed" was also a random seed, "report" also the
# command); the old names are still accepted, with a one-line notice.
RENAMED = {"recipe": {"seed": "paper"}, "preset": {"report": "paper"}}


def _opt(default, *, low=None, high=None, choices=None, kind=None, renamed=None):
    """A dataclass field carrying its validation rule: numeric range, allowed choices, value kind, and
    old names of its values (still accepted, with a notice)."""
    meta = {"low": low, "high": high, "choices": choices, "kind": kind, "renamed": renamed or {}}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = _opt(SAMPLE_RATE, choices=[SAMPLE_RATE])
    window_s: float = _opt(WINDOW_S, choices=[WINDOW_S])
    hop_s: float = _opt(1.0, low=0.1, high=1.0)
    device: str | int | None = _opt(None, kind="device")
    block_size: int = _opt(1600, low=64, high=SAMPLE_RATE)


@dataclass(frozen=True)
class ModelConfig:
    path: str | None = _opt(None, kind="path")
    device: str = _opt("auto", choices=["auto", "cpu", "cuda"])
    vad: bool = _opt(True)
    vad_threshold: float = _opt(VAD_THRESHOLD, low=0.0, high=1.0)
    vad_loud_threshold: float = _opt(VAD_LOUD_THRESHOLD, low=0.0, high=1.0)
    vad_quiet_dbfs: float = _opt(VAD_QUIET_DBFS, low=-120.0, high=0.0)
    sex: bool = _opt(False)
    batch_size: int = _opt(256, low=1, high=4096)
    threads: int = _opt(0, low=0, high=256)


@dataclass(frozen=True)
class MonitorConfig:
    smoothing_windows: int = _opt(5, low=1, high=600)
    smoothing: str = _opt("median", choices=["median", "max", "mean"])
    capacity_limit: int = _opt(0, low=0, high=1000)
    venue: str = _opt("My venue")
    room: str = _opt("")  # with venue, what names this box in a fleet (occupancy sync, Prometheus)
    queue_seconds: float = _opt(30.0, low=1.0, high=3600.0)
    voices: bool = _opt(False)
    voices_minutes: int = _opt(5, low=1, high=60)
    metrics_address: str = _opt("127.0.0.1")  # where --metrics-port listens: a fleet's Prometheus scrapes it


@dataclass(frozen=True)
class StorageConfig:
    database: str = _opt("~/.local/share/occupancy/occupancy.db", kind="path")
    retention_days: int = _opt(0, low=0, high=36500)
    flush_interval_s: float = _opt(1.0, low=0.05, high=60.0)
    sync_url: str | None = _opt(None, kind="postgresql-url")  # `occupancy sync`'s central store


@dataclass(frozen=True)
class DashboardConfig:
    refresh_hz: float = _opt(2.0, low=0.1, high=30.0)
    history_minutes: int = _opt(10, low=1, high=240)


@dataclass(frozen=True)
class DataConfig:
    corpora: list[str] = _opt(
        ["../shared/data/librispeech-mini", "../shared/data/speechocean762-train"], kind="paths"
    )
    noise: list[str] = _opt(["../shared/data/noise"], kind="paths")
    voices: list[str] = _opt(["../shared/data/picovoice-commands", "../shared/data/picovoice-keywords"], kind="paths")
    recordings: list[str] = _opt(["../shared/data/real", "../shared/data/real-dev/ami"], kind="paths")
    recipe: str = _opt("realistic", choices=["realistic", "paper", "scenes"], renamed=RENAMED["recipe"])
    max_speakers: int = _opt(3, low=1, high=10)
    seed: int = _opt(0, low=0, high=2**31 - 1)
    cache_mb: int = _opt(512, low=16, high=65536)
    reverb_share: float = _opt(0.5, low=0.0, high=1.0)
    rir_rooms: int = _opt(200, low=1, high=10000)


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    source: str = "built-in defaults"


_SECTION_CLASSES = {
    "audio": AudioConfig,
    "model": ModelConfig,
    "monitor": MonitorConfig,
    "storage": StorageConfig,
    "dashboard": DashboardConfig,
    "data": DataConfig,
}


# What a config file may hold, far beyond any real one (two levels deep, some 50 values): past these,
# the file is refused before it is read into Python values.
MAX_DEPTH = 20  # PyYAML reads nesting recursively: 100,000 levels overflow Python's stack
MAX_VALUES = 10_000  # aliases count once per use: 486 bytes of nested aliases expand to billions


class _ConfigLoader(yaml.SafeLoader):
    """yaml.safe_load's loader refusing what would hang or crash it: nesting deeper than MAX_DEPTH, aliases
    expanding past MAX_VALUES values or into themselves, and scalars Python cannot hold (a 5,000-digit
    integer, 30 February): each a YAML error at its line and column."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        _expanded_size(node, {})
        return super().construct_document(node)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            reason = str(exc).split(";")[0]  # not Python's advice to raise its limit on integer digits
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value ({reason})", node.start_mark) from None


def _expanded_size(node: yaml.Node, seen: dict[int, tuple[int, int] | None]) -> tuple[int, int]:
    """(values, depth) of `node` with its aliases expanded, each shared node measured once (`seen`); a
    ComposerError past MAX_VALUES or MAX_DEPTH, or for an alias inside the value it names."""
    key = id(node)
    if key in seen:
        if seen[key] is None:
            raise yaml.composer.ComposerError(None, None, "an alias refers to a value that contains it", node.start_mark)
        return seen[key]
    seen[key] = None
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = node.value if isinstance(node, yaml.SequenceNode) else []
    sizes = [_expanded_size(child, seen) for child in children]
    values, depth = 1 + sum(n for n, _ in sizes), 1 + max((d for _, d in sizes), default=0)
    if values > MAX_VALUES:
        raise yaml.composer.ComposerError(
            None, None, f"its aliases expand to more than {MAX_VALUES:,} values", node.start_mark)
    if depth > MAX_DEPTH:
        raise yaml.composer.ComposerError(
            None, None, f"its aliases nest more than {MAX_DEPTH} levels deep", node.start_mark)
    seen[key] = values, depth
    return values, depth


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 2, 60, 60, 40


def shown(value: Any) -> str:
    """`value` as an error message quotes it: its repr, cut short (a file's value can be any size)."""
    return _SHOWN.repr(value)


def find_config_file(explicit: str | os.PathLike | None = None) -> Path | None:
    """The file to read: --config, else $OCCUPANCY_CONFIG, else ./config.yaml; None means defaults."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    env = os.environ.get("OCCUPANCY_CONFIG")
    if env:
        return find_config_file(env)
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and validate the config file (see find_config_file); missing keys take defaults."""
    file = find_config_file(path)
    if file is None:
        return config_from_dict({}, None)
    try:
        raw = yaml.load(file.read_text(encoding="utf-8"), Loader=_ConfigLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{file}: invalid YAML{where}: {problem}") from None
    return config_from_dict(raw, file)


def config_from_dict(raw: Any, file: Path | None = None) -> Config:
    """Validate a parsed YAML document into a Config; relative paths are resolved against `file`."""
    name = str(file) if file else "built-in defaults"
    base = file.resolve().parent if file else Path.cwd()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: top level must be a mapping of sections ({', '.join(_SECTION_CLASSES)})")
    for key in raw:
        if key not in _SECTION_CLASSES:
            raise ConfigError(f"{name}: unknown section {shown(key)} (allowed: {', '.join(_SECTION_CLASSES)})")
    sections = {
        key: _build_section(name, base, key, cls, raw.get(key)) for key, cls in _SECTION_CLASSES.items()
    }
    return Config(**sections, source=name)


def _build_section(name: str, base: Path, section: str, cls, raw: Any):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: {section}: must be a mapping of settings")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(
                f"{name}: unknown key {shown(f'{section}.{key}')} (allowed: {', '.join(fields)})"
            )
        values[key] = _check_value(name, base, f"{section}.{key}", fields[key], value)
    for key, f in fields.items():
        if key not in values and f.metadata.get("kind") in ("path", "paths") and f.default is not None:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            values[key] = _check_value("defaults", PROJECT_DIR, key, f, default)
    return cls(**values)


def _check_value(name: str, base: Path, key: str, f: dataclasses.Field, value: Any) -> Any:
    meta = f.metadata
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    kind = meta.get("kind")

    def fail(allowed: str):
        raise ConfigError(f"{name}: {key}: {allowed}, got {shown(value)}")

    if kind == "device":
        if value is None or (isinstance(value, (int, str)) and not isinstance(value, bool)):
            return value
        fail("must be an input device name, index, or null")
    if kind == "postgresql-url":
        if value is None or (isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))):
            return value
        # not `fail`: the value may hold a password
        raise ConfigError(f"{name}: {key}: must be a postgresql://user@host/database URL or null")
    if kind == "path":
        if value is None and default is None:
            return None
        if not _is_path(value):
            fail("must be a path (a string without NUL characters)")
        return _resolve(base, value)
    if kind == "paths":
        if not isinstance(value, list) or not all(_is_path(v) for v in value):
            fail("must be a list of paths (strings without NUL characters)")
        return [_resolve(base, v) for v in value]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            fail("must be true or false")
    elif isinstance(default, int):
        value = _number(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            fail("must be an integer")
    elif isinstance(default, float):
        value = _number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("must be a number")
        if not math.isfinite(value):
            fail("must be a finite number")  # NaN passes every range check: it compares false to all
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            fail("must be a string")
    if isinstance(value, str) and value in meta.get("renamed", {}):
        value = _renamed_notice(key, value, meta["renamed"][value])
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
    if choices is not None and value not in choices:
        fail(f"must be one of {', '.join(map(str, choices))}")
    if (low is not None and value < low) or (high is not None and value > high):
        fail(f"must be between {low} and {high}")
    return value


def _is_path(value: Any) -> bool:
    """A string the system can take as a file name: not empty, no NUL (which every file call refuses)."""
    return isinstance(value, str) and bool(value) and "\0" not in value


def _number(value: Any) -> Any:
    """Text that spells a number as that number: YAML 1.1 reads `1e9` (an exponent without a dot) as a
    string, yet it means a billion. Anything else is returned as it is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _renamed_notice(what: str, old: str, new: str) -> str:
    print(f"occupancy: notice: {what} '{old}' is now called '{new}'", file=sys.stderr)
    return new


def current_name(kind: str, value: str) -> str:
    """`value` of a `kind` in RENAMED under its current name (an old name gets a notice on stderr)."""
    new = RENAMED.get(kind, {}).get(value)
    return value if new is None else _renamed_notice(kind, value, new)


def _resolve(base: Path, value: str) -> str:
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else (base / path).resolve())


# Settings whose command-line flag is not simply --<setting-name>.
FLAG_NAMES = {"hop_s": "--hop"}


def override(config: Config, section: str, **values: Any) -> Config:
    """Apply command-line flags (None means 'not given') on top of the file's settings."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return config
    current = getattr(config, section)
    fields = {f.name: f for f in dataclasses.fields(current)}
    checked = {
        k: _check_value("command line", Path.cwd(), FLAG_NAMES.get(k, f"--{k.replace('_', '-')}"), fields[k], v)
        for k, v in given.items()
    }
    return dataclasses.replace(config, **{section: dataclasses.replace(current, **checked)})
