"""config.yaml: documented defaults, typed loading, one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from occupancy.cli import main
from occupancy.config import Config, ConfigError, load_config, override

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_equals_builtin_defaults():
    """The documented file and the code agree, so deleting a key never changes behaviour."""
    shipped = load_config(REPO / "config.yaml")
    builtin = Config()
    for section in ("audio", "model", "monitor", "dashboard"):
        assert getattr(shipped, section) == getattr(builtin, section)
    assert shipped.storage.database.endswith(".local/share/occupancy/occupancy.db")
    assert shipped.data.corpora[0] == str((REPO.parent / "shared/data/librispeech-mini").resolve())


def test_every_setting_is_documented_with_a_comment():
    text = (REPO / "config.yaml").read_text()
    cfg = Config()
    for section in ("audio", "model", "monitor", "storage", "dashboard", "data"):
        for key in vars(getattr(cfg, section)):
            line = next((ln for ln in text.splitlines() if ln.strip().startswith(f"{key}:")), None)
            assert line is not None, f"{section}.{key} missing from config.yaml"
            assert "#" in line, f"{section}.{key} has no comment"


def test_missing_keys_take_defaults_and_relative_paths_follow_the_file(tmp_path):
    cfg_file = tmp_path / "venue.yaml"
    cfg_file.write_text("audio:\n  hop_s: 0.5\nstorage:\n  database: logs/venue.db\n")
    cfg = load_config(cfg_file)
    assert cfg.audio.hop_s == 0.5
    assert cfg.audio.block_size == 1600
    assert cfg.storage.database == str(tmp_path / "logs" / "venue.db")
    assert cfg.source == str(cfg_file)


def test_flags_override_the_file(tmp_path):
    cfg = override(Config(), "audio", hop_s=0.25, device=None)
    assert cfg.audio.hop_s == 0.25
    with pytest.raises(ConfigError, match="--hop: must be between 0.1 and 1.0"):
        override(cfg, "audio", hop_s=3.0)


def test_empty_file_gives_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("")
    assert load_config(tmp_path / "c.yaml").audio == Config().audio


@pytest.mark.parametrize(
    "text, expected",
    [
        ("audio:\n  hop: 0.5\n", "unknown key 'audio.hop' (allowed: sample_rate, window_s, hop_s"),
        ("sound:\n  hop_s: 0.5\n", "unknown section 'sound'"),
        ("audio:\n  hop_s: fast\n", "audio.hop_s: must be a number, got 'fast'"),
        ("audio:\n  hop_s: 2.5\n", "audio.hop_s: must be between 0.1 and 1.0, got 2.5"),
        ("audio:\n  sample_rate: 44100\n", "audio.sample_rate: must be one of 16000, got 44100"),
        ("model:\n  device: gpu\n", "model.device: must be one of auto, cpu, cuda, got 'gpu'"),
        ("model:\n  vad: 1\n", "model.vad: must be true or false, got 1"),
        ("monitor:\n  smoothing_windows: 2.5\n", "monitor.smoothing_windows: must be an integer"),
        ("data:\n  corpora: /one/path\n", "data.corpora: must be a list of paths"),
        ("audio: [1, 2]\n", "audio: must be a mapping"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("audio:\n  hop_s: [0.5\n", "invalid YAML at line"),
    ],
)
def test_bad_config_gives_one_line_and_exit_2(tmp_path, capsys, text, expected):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(cfg_file)
    assert expected in str(err.value)
    assert str(cfg_file) in str(err.value)
    # Through the CLI: one line on stderr, exit code 2, no traceback.
    code = main(["--config", str(cfg_file), "classify", str(tmp_path)])
    stderr = capsys.readouterr().err
    assert code == 2
    assert stderr.count("\n") == 1 and expected in stderr and "Traceback" not in stderr


def test_missing_and_unreadable_config(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.yaml"), "classify", "x.wav"]) == 2
    assert "nope.yaml: config file not found" in capsys.readouterr().err
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    assert main(["--config", str(binary), "classify", "x.wav"]) == 2
    assert "binary.yaml: cannot read config file" in capsys.readouterr().err


def test_config_from_environment_variable(tmp_path, monkeypatch):
    cfg_file = tmp_path / "env.yaml"
    cfg_file.write_text("monitor:\n  venue: Corner Shop\n")
    monkeypatch.setenv("OCCUPANCY_CONFIG", str(cfg_file))
    assert load_config().monitor.venue == "Corner Shop"


def test_console_script_bad_config_has_no_traceback(tmp_path):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text("storage:\n  retention_days: -1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "occupancy.cli", "--config", str(cfg_file), "classify", "x.wav"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"occupancy: error: {cfg_file}: storage.retention_days: must be between 0 and 36500, got -1"
    )


def run_report_with_config(tmp_path, text: str) -> subprocess.CompletedProcess:
    """`occupancy --config FILE report` in a child held to 1 GB of memory and a minute, as a venue runs it."""
    import resource

    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(text)

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [sys.executable, "-m", "occupancy.cli", "--config", str(cfg_file), "report", "--db", str(tmp_path / "log.db")],
        capture_output=True, text=True, timeout=60, preexec_fn=limit_memory,
    )


def alias_bomb() -> str:
    """A "billion laughs": nine aliases of nine aliases ... of nine strings, a few hundred bytes expanding to 9^9 strings."""
    parts = ["&a [" + ", ".join(['"lol"'] * 9) + "]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        parts.append(f"&{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "monitor:\n  venue: [" + ", ".join(parts) + "]\n"


@pytest.mark.parametrize("text, expected", [
    (alias_bomb(), "invalid YAML at line 2, column 202: its aliases expand to more than 10,000 values"),
    ("monitor:\n  venue: [&a0 [1], " + ", ".join(f"&a{i} [*a{i - 1}]" for i in range(1, 30000)) + "]\n",
     "its aliases nest more than 20 levels deep"),
    ("audio:\n  device: &loop [*loop]\n", "invalid YAML at line 2, column 11: an alias refers to a value that contains it"),
    ("audio: " + "[" * 100_000 + "]" * 100_000 + "\n", "invalid YAML at line 1, column 27: nested more than 20 levels deep"),
    ("audio:\n  hop_s: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n", "nested more than 20 levels deep"),
    ("monitor:\n  capacity_limit: " + "9" * 5000 + "\n", "invalid YAML at line 2, column 19: cannot read this value "
     "(Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits)"),
    ("audio:\n  device: 2026-02-30\n", "invalid YAML at line 2, column 11: cannot read this value (day is out of range for month)"),
    ('storage:\n  database: "log\\0.db"\n', "storage.database: must be a path (a string without NUL characters), got 'log\\x00.db'"),
    ('data:\n  noise: ["a\\0"]\n', "data.noise: must be a list of paths (strings without NUL characters), got ['a\\x00']"),
], ids=["alias-bomb", "alias-chain", "alias-loop", "deep-lists", "deep-maps", "5000-digits", "30-february", "nul-path", "nul-paths"])
def test_configs_that_would_hang_or_crash_the_reader_are_one_line(tmp_path, text, expected):
    """Alias bombs, deep nesting and values Python cannot hold: refused before they are built (issue 26)."""
    proc = run_report_with_config(tmp_path, text)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"occupancy: error: {tmp_path / 'config.yaml'}: ") and line.endswith(expected)


def test_an_error_quotes_a_huge_value_cut_short(tmp_path):
    """The message names the key and shows the value's start, not all of it."""
    proc = run_report_with_config(tmp_path, "monitor:\n  capacity_limit: " + "9" * 4000 + "\nstorage:\n  database: [" + "x, " * 5000 + "]\n")
    assert proc.returncode == 2
    assert proc.stderr == (f"occupancy: error: {tmp_path / 'config.yaml'}: monitor.capacity_limit: must be between 0 and "
                           f"1000, got {'9' * 18}...{'9' * 19}\n")
    proc = run_report_with_config(tmp_path, "storage:\n  database: [" + "x, " * 5000 + "]\n")
    assert proc.returncode == 2 and len(proc.stderr) < 300 and "storage.database: must be a path" in proc.stderr
