"""The `occupancy` console command: help, version, subcommands, classify on real audio."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from occupancy import __version__
from occupancy.cli import COMMANDS, main, named_command
from occupancy.models import default_model_path, sex_model_path
from occupancy.sample import SAMPLE_AUDIO, load_truth
from occupancy.engine.store import open_store, start_run, write_batch
from occupancy.engine.events import CountEvent

needs_model = pytest.mark.skipif(
    not default_model_path().exists(), reason="no trained model shipped in models/ yet"
)


def occupancy(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script, as a user would."""
    exe = shutil.which("occupancy", path=str(Path(sys.executable).parent)) or "occupancy"
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=300)


def test_help_lists_every_subcommand_in_order():
    proc = occupancy("--help")
    assert proc.returncode == 0
    # one line per subcommand, indented 4 (wrapped help text is indented further)
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("    ") and line[4] != " "]
    assert listed == list(COMMANDS)  # so the table cli.py narrows the parser with is what the modules add


@pytest.mark.parametrize("argv, command", [
    (["report", "--db", "x.db"], "report"),
    (["-v", "--config", "c.yaml", "replay", "a.wav"], "replay"),
    (["--config=c.yaml", "train", "--help"], "train"),
    (["--config", "report", "monitor"], "monitor"),  # "report" is the config file's name here
    (["--help"], None),
    ([], None),
    (["--config"], None),  # malformed: the full parser says so
])
def test_named_command_reads_past_the_global_options(argv, command):
    assert named_command(argv) == command


def test_help_loads_no_model_runtime_and_no_audio_library():
    """`occupancy --help` builds every subcommand's parser without loading a model runtime or the audio
    libraries (each command imports what it needs when it runs): it starts at once."""
    script = textwrap.dedent("""
        import sys
        from occupancy.cli import main
        try:
            main(["--help"])
        except SystemExit as end:
            assert end.code == 0
        loaded = {"torch", "onnxruntime", "soundfile", "soxr", "sounddevice"} & set(sys.modules)
        assert not loaded, f"occupancy --help loaded {sorted(loaded)}"
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "classify" in proc.stdout


def test_report_does_not_load_torch(tmp_path):
    """`import occupancy.cli.report` and a whole `occupancy report` run leave both model runtimes
    (PyTorch takes seconds to import) unloaded."""
    db_path = tmp_path / "log.db"
    db = open_store(db_path)
    run_id = start_run(db, source="replay", device="t", model="t", compute="cpu", hop_s=1.0)
    start = datetime(2026, 11, 25, 18, tzinfo=UTC)
    write_batch(db, run_id, [
        CountEvent(start=start + timedelta(seconds=i), end=start + timedelta(seconds=i + 1), seconds=1.0, count=i % 4,
                   probabilities=(0.25,) * 4, smoothed=float(i % 4), level_dbfs=-30.0, latency_ms=5.0, captured_at=0.0)
        for i in range(120)
    ], {})
    db.close()
    script = textwrap.dedent(f"""
        import sys
        import occupancy.cli.report
        assert "torch" not in sys.modules, "import occupancy.cli.report loaded torch"
        from occupancy.cli import main
        assert main(["report", "--db", {str(db_path)!r}, "--utc"]) == 0
        assert "torch" not in sys.modules, "occupancy report loaded torch"
        assert "onnxruntime" not in sys.modules, "occupancy report loaded onnxruntime"
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "2026-11-25 18:00" in proc.stdout


@pytest.mark.parametrize("args", [["evaluate", "--length", "8"], ["classify", str(SAMPLE_AUDIO), "--device", "cuda"]],
                         ids=["evaluate", "classify on cuda"])
def test_a_command_needing_pytorch_says_in_one_line_what_to_install_where_it_is_absent(args):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # as in a venue install, which has no PyTorch
        from occupancy.cli import main
        sys.exit(main({args!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line == (f"occupancy: error: `occupancy {args[0]}` needs the train extra (torch is not installed): "
                    "pip install 'occupancy[train]'")


def test_version():
    proc = occupancy("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"occupancy {__version__}"


def test_subcommand_help():
    proc = occupancy("classify", "--help")
    assert proc.returncode == 0 and "--json" in proc.stdout and "--hop" in proc.stdout


def test_unknown_subcommand_is_a_usage_error():
    proc = occupancy("frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "file not found"),
        (b"", "empty file (0 bytes)"),
        (b"not audio at all\n" * 20, "not a readable audio file"),
    ],
)
def test_classify_bad_input_exits_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "input.wav"
    if content is not None:
        path.write_bytes(content)
    code = main(["classify", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln]
    assert lines[-1].startswith("occupancy: error: ") and message in lines[-1]
    assert "Traceback" not in err


def test_classify_folder_without_audio(tmp_path, capsys):
    assert main(["classify", str(tmp_path)]) == 2
    assert "no .wav or .flac files found" in capsys.readouterr().err


def test_classify_without_model_says_so(tmp_path, capsys):
    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    assert main(["classify", str(tmp_path / "a.wav"), "--model", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors" in capsys.readouterr().err


@needs_model
def test_classify_json_on_the_sample_follows_the_stable_format(capsys):
    assert main(["classify", str(SAMPLE_AUDIO), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    truth = load_truth()
    assert len(rows) == len(truth)
    for second, row in enumerate(rows):
        assert set(row) == {"path", "start_s", "end_s", "count", "probabilities"}
        assert row["path"] == str(SAMPLE_AUDIO)
        assert (row["start_s"], row["end_s"]) == (second, second + 1)
        assert abs(sum(row["probabilities"]) - 1) < 1e-3
        assert row["count"] == int(np.argmax(row["probabilities"]))
    correct = sum(r["count"] == t for r, t in zip(rows, truth))
    silent_right = sum(r["count"] == 0 for r, t in zip(rows, truth) if t == 0)
    assert correct / len(truth) >= 0.6, f"{correct}/{len(truth)} windows right"
    assert silent_right / truth.count(0) >= 0.8  # nobody speaking stays 0, dishes and typing included


SEX_MODEL = sex_model_path()


@pytest.mark.skipif(not SEX_MODEL.exists(), reason="no sex-composition model shipped in models/")
def test_classify_sex_splits_each_count_into_women_and_men(capsys):
    assert main(["classify", str(SAMPLE_AUDIO), "--json", "--sex"]) == 0  # the sex model by default
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(load_truth())
    for row in rows:
        assert set(row) == {"path", "start_s", "end_s", "count", "probabilities", "women", "men"}
        assert row["women"] >= 0 and row["men"] >= 0 and row["women"] + row["men"] == row["count"]
    assert any(r["women"] for r in rows) and any(r["men"] for r in rows)  # the sample holds both


@needs_model
def test_classify_sex_with_a_model_without_that_head_is_one_line(capsys):
    assert main(["classify", str(SAMPLE_AUDIO), "--sex", "--model", str(default_model_path())]) == 2
    err = capsys.readouterr().err.strip()
    assert "no sex-composition head" in err and "counter.safetensors" in err and len(err.splitlines()) == 1


@needs_model
def test_classify_text_hop_and_bad_file_among_good(tmp_path, capsys):
    good = tmp_path / "good.flac"
    sf.write(good, sf.read(SAMPLE_AUDIO)[0][: 3 * 16000], 16000)
    (tmp_path / "bad.wav").write_bytes(b"junk" * 100)
    code = main(["classify", str(tmp_path), "--hop", "0.5"])
    captured = capsys.readouterr()
    assert code == 2  # one bad file: reported, the others still classified
    assert "bad.wav: not a readable audio file" in captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 5 and all(str(good) in ln and "count" in ln for ln in lines)


@needs_model
def test_console_script_classify_runs_end_to_end(tmp_path):
    stereo48k = tmp_path / "stereo48k.wav"
    x, _ = sf.read(SAMPLE_AUDIO, frames=2 * 16000, start=20 * 16000)
    t = np.arange(len(x) * 3) / 48000.0
    up = np.interp(t, np.arange(len(x)) / 16000.0, x)
    sf.write(stereo48k, np.stack([up, up], axis=1), 48000, subtype="PCM_24")
    proc = occupancy("classify", "--json", str(stereo48k), env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
