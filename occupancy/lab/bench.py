"""`occupancy bench`: is this machine fast enough, and how does our model compare to the seed paper's M5?

Everything is measured through the code the monitor runs, which on a CPU is ONNX Runtime (the model's
ONNX companion and the ONNX speech gate; M5's companion is exported into a temporary folder first):
accuracy with occupancy.lab.evaluate on the test split's mixtures; whether ONNX Runtime counts like
PyTorch (the bundled sample and those mixtures); classify speed and single-window latency with the
counter's own `predict` (VAD gate + network, as live) and with the network alone, and the same in
PyTorch beside them; replay speed with a real Pipeline writing a real SQLite log; capture-to-count
and capture-to-log latency from a replay paced in real time (the live path: blocks stamped when they
arrive, counted, and committed); the monitor's peak memory and start from `occupancy monitor` in a
child process reading a real PortAudio device (ALSA's file plugin playing the sample; its peak is the
kernel's VmHWM). Each figure is taken for the default model and for M5 in the same run and given as a
ratio (M5 / default). Three figures belong to the program, not a model: `occupancy --help`'s wall time,
the disk a venue install takes, and the opt-in distinct-voices stage's CPU time per one-voice second.

Timings depend on the machine's load: the JSON records the load average before and after.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from ..engine.audio import read_audio
from ..engine.capture import FileSource
from ..config import Config, override
from ..errors import OccupancyError
from ..models.files import metadata_path
from ..paths import PROJECT_DIR, RUNS_DIR, SAMPLE_RATE
from ..engine.loading import load_counter_from_config, load_voices_from_config
from ..engine.pipeline import Pipeline
from ..sample import SAMPLE_AUDIO, load_truth, sample_windows
from ..engine.store import open_store
from .alsa import ALSA_CONF, ALSA_DEVICE, alsa_file_device
from .onnx import compare_runtimes, export_onnx

log = logging.getLogger(__name__)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # replays are logged at a fixed, recognisable time

# How much work each figure gets: --quick only proves that every part runs.
SIZES = {
    False: dict(seconds=3.0, accuracy_windows=400, replay_copies=10, latency_s=20.0, monitor_s=60.0, help_runs=7,
                voice_seconds=600),
    True: dict(seconds=0.3, accuracy_windows=8, replay_copies=1, latency_s=2.0, monitor_s=3.0, help_runs=1,
               voice_seconds=24),
}
LOW_FLUSH_S = 0.05  # a flush interval that keeps capture-to-log latency within the target

# (key, label, target, is the target a minimum) for the table; keys index a model's flat figures, or
# the program's ("program.").
TABLE = [
    ("accuracy.realistic dry", "accuracy, realistic dry (test split)", None, True),
    ("accuracy.realistic reverberant", "accuracy, realistic reverberant", None, True),
    ("accuracy.paper recipe", "accuracy, paper recipe", None, True),
    ("accuracy.bundled sample", "accuracy, bundled sample (replayed)", None, True),
    ("same_as_pytorch.bundled sample", "ONNX counts = PyTorch's, bundled sample", 1.0, True),
    ("same_as_pytorch.test mixtures", "ONNX counts = PyTorch's, test mixtures", 0.995, True),
    ("counter.batch1_windows_per_s", "classify windows/s, batch 1", None, True),
    ("counter.batched_windows_per_s", "classify windows/s, batched", 1500, True),
    ("counter.batched_windows_per_cpu_s", "classify windows per CPU-second, batched", None, True),
    ("counter.latency_p50_ms", "single-window latency p50 (ms)", None, False),
    ("counter.latency_p99_ms", "single-window latency p99 (ms)", 3, False),
    ("network.batched_windows_per_s", "network alone windows/s, batched", None, True),
    ("network.latency_p99_ms", "network alone latency p99 (ms)", None, False),
    ("pytorch.batched_windows_per_s", "PyTorch counter windows/s, batched", None, True),
    ("pytorch.latency_p99_ms", "PyTorch counter latency p99 (ms)", None, False),
    ("replay.x_realtime", "replay with SQLite log (x real time)", 500, True),
    ("replay.x_realtime_per_cpu_s", "replay, audio seconds per CPU-second", None, True),
    ("replay_voices.x_realtime", "replay --voices (x real time)", None, True),
    ("latency.count_p99_ms", "capture-to-count p99 (ms)", None, False),
    ("latency.log_p50_ms", "capture-to-log p50 (ms), configured flush", None, False),
    ("latency.log_p99_ms", "capture-to-log p99 (ms), configured flush", None, False),
    ("latency_low_flush.log_p99_ms", f"capture-to-log p99 (ms), flush {LOW_FLUSH_S} s", 100, False),
    ("monitor.peak_rss_mb", "monitor peak memory (MB)", 150, False),
    ("monitor.start_s", "monitor start, launch to counting (s)", 2, False),
    ("load_s", "model load time (s)", None, False),
    ("program.help_s", "`occupancy --help` (s)", 0.3, False),
    ("program.venue_install_mb", "venue install on disk (MB)", 400, False),
    ("program.voices.cpu_ms_per_voice_s", "distinct voices, CPU ms per one-voice s", 5, False),
]


def run_bench(config: Config, *, quick: bool, output: str | Path, m5: str | None) -> None:
    """Measure everything, print the table and write the JSON to `output`."""
    sizes = SIZES[quick]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="occupancy-bench-") as tmp:
        folder = Path(tmp)
        m5_path, m5_trained = find_m5(m5, config, folder)
        models = {"default": config, "M5": override(config, "model", path=str(m5_path))}
        program = {"help_s": help_seconds(sizes["help_runs"]), "venue_install_mb": venue_install_mb(),
                   "voices": voices_cost(sizes["voice_seconds"])}
        live, batched, figures = {}, {}, {}
        for name, model_config in models.items():
            started = time.perf_counter()
            live[name] = load_counter_from_config(model_config.model, live=True)  # as monitor and replay load it
            figures[name] = {"model": live[name].name, "file": str(live[name].path),
                             "load_s": round(time.perf_counter() - started, 3)}
            batched[name] = load_counter_from_config(model_config.model)  # as classify loads it
        figures["M5"]["trained"] = m5_trained
        windows = speech_first_windows(config.model.batch_size)
        for name, counter in live.items():  # before PyTorch is loaded, which tunes the process's allocator
            log.info("bench: %s", name)
            fig = figures[name]
            fig["counter"] = speed(counter.predict, batched[name].predict, windows, sizes["seconds"])
            fig["network"] = speed(counter.count_probabilities, batched[name].count_probabilities, windows,
                                   sizes["seconds"])
            fig["replay"] = replay_speed(models[name], counter, sizes["replay_copies"], folder)
            fig["replay_voices"] = replay_speed(models[name], counter, sizes["replay_copies"], folder, voices=True)
            fig["replay_voices"].pop("sample_accuracy")
            fig["latency"] = capture_latency(models[name], counter, sizes["latency_s"], folder)
            low = override(models[name], "storage", flush_interval_s=LOW_FLUSH_S)
            fig["latency_low_flush"] = capture_latency(low, counter, sizes["latency_s"], folder)
            fig["monitor"] = monitor_run(counter.path, sizes["monitor_s"], folder)
        log.info("bench: PyTorch, and accuracy on the test split")
        pytorch = {name: load_counter_from_config(c.model, live=True, runtime="torch") for name, c in models.items()}
        for name, (acc, same) in accuracy(config, live, pytorch, sizes["accuracy_windows"]).items():
            fig = figures[name]
            fig["accuracy"], fig["same_as_pytorch"] = acc, same
            fig["accuracy"]["bundled sample"] = fig["replay"].pop("sample_accuracy")
            fig["same_as_pytorch"]["bundled sample"] = _same_share(pytorch[name], live[name], sample_windows())
            fig["pytorch"] = speed(pytorch[name].predict, _in_torch_threads(os.cpu_count(), pytorch[name].predict),
                                   windows, sizes["seconds"])
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": {
            "cpus": os.cpu_count(), "onnxruntime": _version("onnxruntime"), "torch": torch.__version__,
            "live_threads": max(1, (os.cpu_count() or 2) - 1), "classify_threads": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "m5_note": None if m5_trained else "no trained M5 found: an untrained M5 (same architecture, same speed); "
                                           "its accuracy figures mean nothing",
        "program": program,
        "models": figures,
        "ratios_m5_over_default": ratios(figures),
        "targets": targets(figures["default"], program),
    }
    print(format_table(result))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten: {output}")


def find_m5(given: str | None, config: Config, folder: Path) -> tuple[Path, bool]:
    """A trained M5 (given, or from the zoo's runs), else an untrained one, copied into `folder` with
    its ONNX companion (the monitor's runtime counts with it)."""
    from ..models import read_metadata
    from ..models.architectures import build_model
    from ..models.io import save_model

    trained = [Path(given)] if given else sorted(
        (RUNS_DIR / "zoo").glob("M5-*/M5.safetensors"),
        key=lambda path: path.parent.name != "M5-realistic")  # trained like ours first
    weights = folder / "M5.safetensors"
    if trained:
        for source, target in ((trained[0], weights), (metadata_path(trained[0]), metadata_path(weights))):
            shutil.copyfile(source, target)
    else:
        classes = read_metadata(_default_weights(config))["classes"]
        torch.manual_seed(0)
        meta = {"architecture": "M5", "arch_kwargs": {}, "classes": classes, "sample_rate": SAMPLE_RATE,
                "window_s": 1.0}
        save_model(build_model("M5", n_classes=len(classes)).eval(), weights, meta)
    export_onnx(weights)
    return weights, bool(trained)


def _default_weights(config: Config) -> Path:
    from ..models import default_model_path

    return Path(config.model.path) if config.model.path else default_model_path()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def accuracy(config: Config, counters: dict, pytorch: dict, length: int) -> dict[str, tuple[dict, dict]]:
    """Each model's accuracy (VAD-gated counter) on the evaluation's test sets, same mixtures for all,
    and the share of those mixtures ONNX Runtime counts as PyTorch does."""
    from .evaluate import TEST_SETS, evaluate_windows, mixture_windows

    out: dict[str, tuple[dict, dict]] = {name: ({}, {}) for name in counters}
    top = counters["default"].classes[-1]
    same: dict[str, list[int]] = {name: [0, 0] for name in counters}
    try:
        for set_name, kwargs in TEST_SETS.items():
            windows, counts = mixture_windows(config, length=length, seed=1234, max_speakers=top, **kwargs)
            for name, counter in counters.items():
                scores = evaluate_windows(counter, windows, counts)
                out[name][0][set_name] = round(scores["counter"]["accuracy"], 4)
                out[name][0][f"{set_name} (network alone)"] = round(scores["network"]["accuracy"], 4)
                check = compare_runtimes(pytorch[name], counter, windows)
                same[name] = [same[name][0] + check["same_count"], same[name][1] + check["windows"]]
    except OccupancyError as exc:  # no corpus in a user's clone: the other figures still stand
        log.warning("bench: no test-split accuracy (%s)", exc)
        for name in counters:
            out[name][0]["skipped"] = str(exc)
    for name, (equal, total) in same.items():
        if total:
            out[name][1]["test mixtures"] = round(equal / total, 4)
    return out


def _same_share(pytorch, counter, windows: np.ndarray) -> float:
    check = compare_runtimes(pytorch, counter, windows)
    return round(check["same_count"] / check["windows"], 4)


def _in_torch_threads(n: int, predict):
    """`predict`, run with `n` torch threads (classify's: every core), then with the count it had."""
    def run(windows):
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return predict(windows)
        finally:
            torch.set_num_threads(before)
    return run


def speech_first_windows(n: int) -> np.ndarray:
    """Up to `n` 1-s windows of real speech and silence: the bundled sample's, starting at its first
    speech (the one-window warm-up then runs the voice-activity stage too)."""
    windows = sample_windows()
    first_speech = next(second for second, count in enumerate(load_truth()) if count > 0)
    return np.roll(windows, -first_speech, axis=0)[:n]


def speed(single, batched, windows: np.ndarray, seconds: float) -> dict:
    """Windows/s one at a time with `single` (with its latency percentiles) and in batches of
    len(windows) with `batched`.

    One at a time is the live monitor's case (its counter keeps a core for capture and the log), over
    every window in turn (speech, silence, and speech the gate must listen to); batches are
    classify's and replay's (every core). Per CPU-second too: on a shared machine that is what the
    figure would be with a core to itself.
    """
    one, _ = _timed(single, [w[None] for w in windows], seconds)
    many, cpu = _timed(batched, [windows], seconds)
    ms = np.array(one) * 1000
    done = len(windows) * len(many)
    return {
        "batch1_windows_per_s": round(len(one) / sum(one), 1),
        "latency_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "latency_p99_ms": round(float(np.percentile(ms, 99)), 2),
        "batch": len(windows),
        "batched_windows_per_s": round(done / sum(many), 1),
        "batched_windows_per_cpu_s": round(done / cpu, 1),
    }


def _timed(predict, calls: list[np.ndarray], seconds: float) -> tuple[list[float], float]:
    """Wall durations of `predict` on each of `calls` in turn, round and round for about `seconds`
    (after an untimed warm-up), and their CPU time."""
    predict(calls[0])
    times: list[float] = []
    cpu = time.process_time()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        started = time.perf_counter()
        predict(calls[len(times) % len(calls)])
        times.append(time.perf_counter() - started)
    return times, time.process_time() - cpu


def _child_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with this very package first on the child's path."""
    package_parent = str(Path(__file__).resolve().parents[2])
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))}


def voices_cost(seconds: int) -> dict:
    """CPU time of the distinct-voices stage per one-voice second, on one thread: a stream in which every
    second is one voice (the bundled sample's, in turn), heard and asked for its figure each second as
    live, so it embeds in the stage's batches and reclusters a horizon that fills up (600 s: full)."""
    from ..models.voices import DistinctVoices, VoiceEncoder

    voices = DistinctVoices(VoiceEncoder(threads=1))
    one_voice = sample_windows()[np.asarray(load_truth()) == 1]
    windows = one_voice[np.arange(seconds) % len(one_voice)]
    voices.hear(0.0, windows[0])
    voices.figure(0.0)  # warm-up, untimed
    voices.clear()
    started = time.process_time()
    for second, window in enumerate(windows, 1):
        voices.hear(float(second), window)
        voices.figure(float(second))
    cpu = time.process_time() - started
    return {"cpu_ms_per_voice_s": round(1000 * cpu / seconds, 3), "voice_seconds": seconds,
            "voiceprints_held": voices.held, "horizon_s": voices.horizon_s}


def help_seconds(runs: int) -> float:
    """Median wall time of `occupancy --help` in a fresh interpreter, as a user starts it."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "occupancy.cli", "--help"], env=_child_env(dict(os.environ)), check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def venue_install_mb() -> float:
    """Disk a venue install takes: the occupancy package and every distribution its base requirements
    pull in (no extras), as installed here, file by file. The requirements are the checkout's
    pyproject.toml where there is one (what `pip install .` reads), else the installed metadata's.
    A fresh environment adds pip (about 17 MB)."""
    from packaging.requirements import Requirement

    package = Path(__file__).resolve().parents[1]
    pyproject = PROJECT_DIR / "pyproject.toml"
    if pyproject.is_file():
        todo = list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])
    else:
        todo = list(metadata.requires("occupancy") or [])
    total = sum(f.stat().st_size for f in package.rglob("*") if f.is_file())
    seen = {"occupancy"}
    while todo:
        requirement = Requirement(todo.pop())
        name = requirement.name.lower().replace("_", "-")
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        dist = metadata.distribution(name)
        total += sum(p.stat().st_size for p in map(Path, map(dist.locate_file, dist.files or [])) if p.is_file())
        todo += dist.requires or []
    return round(total / 1e6, 1)


def replay_speed(config: Config, counter, copies: int, folder: Path, voices: bool = False) -> dict:
    """`replay --speed max` of the sample `copies` times into a fresh SQLite log, timed end to end
    (with `voices`, as `replay --voices`: the distinct-voices stage on)."""
    db = folder / f"replay-{counter.name}{'-voices' if voices else ''}.db"
    source = FileSource([SAMPLE_AUDIO] * copies, start=T0, block_size=config.audio.block_size)
    stage = load_voices_from_config(override(config, "monitor", voices=True).monitor) if voices else None
    pipeline = Pipeline(config, source, counter, db_path=db, voices=stage)
    started, cpu = time.perf_counter(), time.process_time()
    pipeline.run()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    audio_s = copies * sf.info(str(SAMPLE_AUDIO)).duration
    store = open_store(db, readonly=True)
    counts = [row["count"] for row in store.query("SELECT count FROM events ORDER BY start_utc, id")]
    store.close()
    truth = load_truth()
    first = counts[: len(truth)]
    return {
        "audio_s": audio_s, "wall_s": round(wall, 2), "x_realtime": round(audio_s / wall, 1),
        "cpu_s": round(cpu, 2), "x_realtime_per_cpu_s": round(audio_s / cpu, 1),
        "windows_logged": len(counts), "largest_batch": pipeline.worker.largest_batch,
        "sample_accuracy": round(float(np.mean(np.array(first) == np.minimum(truth, counter.classes[-1]))), 4),
    }


def capture_latency(config: Config, counter, seconds: float, folder: Path) -> dict:
    """The sample replayed at real-time pace: window's last sample in -> counted, and -> committed."""
    db = folder / f"latency-{counter.name}-{config.storage.flush_interval_s}.db"
    source = FileSource([SAMPLE_AUDIO], realtime=True, start=datetime.now(UTC), block_size=config.audio.block_size)
    pipeline = Pipeline(config, source, counter, db_path=db, max_seconds=seconds)
    counted: list[float] = []
    pipeline.subscribe(lambda event: counted.append(event.latency_ms))
    pipeline.run()
    logged = list(pipeline.writer.log_latencies_ms)
    return {
        "flush_interval_s": config.storage.flush_interval_s, "windows": len(logged),
        **_percentiles("count", counted), **_percentiles("log", logged),
    }


def _percentiles(name: str, values_ms: list[float]) -> dict:
    if not values_ms:
        return {}
    return {f"{name}_{label}_ms": round(float(np.percentile(values_ms, q)), 1)
            for label, q in (("p50", 50), ("p99", 99), ("max", 100))}


def monitor_run(weights: Path, seconds: float, folder: Path, timeout: float = 600.0) -> dict:
    """`occupancy monitor --headless` in a child process: its peak resident memory, and how long after
    its launch it is counting (its run is in the log) and has logged its first window.

    The monitor reads the ALSA file device (real PortAudio capture), which runs far faster than real
    time: held to the wall clock, the monitor counts about a window a second of it, as live, and takes
    about `seconds`. Without ALSA's configuration it replays the sample instead.
    """
    db = folder / f"monitor-{weights.stem}.db"
    config_file = folder / f"monitor-{weights.stem}.yaml"
    config_file.write_text(yaml.safe_dump({"model": {"path": str(weights)}}))
    command = [sys.executable, "-m", "occupancy.cli", "--config", str(config_file)]
    if ALSA_CONF.is_file():
        audio = np.resize(read_audio(SAMPLE_AUDIO), int(seconds * SAMPLE_RATE))  # the sample, looped
        env = _child_env(alsa_file_device(folder, audio))
        command += ["monitor", "--device", ALSA_DEVICE, "--duration", str(seconds)]
        how = "monitor --headless on the ALSA file device"
    else:
        env = _child_env(dict(os.environ))
        command += ["replay", "--speed", "max", str(SAMPLE_AUDIO)]
        how = "replay --headless --speed max (no ALSA configuration here)"
    command += ["--headless", "--db", str(db)]
    with open(folder / "monitor.err", "w+") as errors:
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors, cwd=folder)
        watched = _watch(child, db, timeout)
        errors.seek(0)
        tail = errors.read().strip().splitlines()[-1:]
    if child.returncode != 0:
        raise OccupancyError(f"bench: the monitor failed (exit {child.returncode}): {' '.join(tail)}")
    store = open_store(db, readonly=True)
    windows = store["events"].count
    store.close()
    return {"how": how, **watched, "windows_logged": windows}


def _watch(child: subprocess.Popen, db: Path, timeout: float) -> dict:
    """Every 50 ms until the child ends: its VmHWM (the kernel's peak-RSS counter for its program), and
    when its run, then its first window, appear in the log.

    Not the child's ru_maxrss: Linux carries the peak across the fork and exec that start it, so it
    would report this (larger) benchmark process instead.
    """
    launched = time.monotonic()
    peak, moments = 0, {}
    while True:
        ended = child.poll() is not None
        now = time.monotonic()
        if now - launched > timeout:
            child.kill()
            child.wait()
            raise OccupancyError(f"bench: the monitor did not finish within {timeout:.0f} s")
        try:
            with open(f"/proc/{child.pid}/status") as fh:
                peak = max([peak] + [int(line.split()[1]) for line in fh if line.startswith("VmHWM:")])
        except OSError:
            pass  # it has just ended
        for key, table in (("start_s", "runs"), ("first_window_s", "events")):
            if key not in moments and _has_rows(db, table):  # (a short run may end before a poll sees it)
                moments[key] = round(now - launched, 2)
        if ended:
            return {"peak_rss_mb": round(peak / 1024, 1), **moments}
        time.sleep(0.05)


def _has_rows(db: Path, table: str) -> bool:
    """Whether the log exists and `table` has a row yet (read-only, never waiting on the writer)."""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0) as conn:
            return conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return False  # not created yet, or busy: next time


def flat(figures: dict, prefix: str = "") -> dict[str, float]:
    """{'counter': {'latency_p99_ms': 3}} -> {'counter.latency_p99_ms': 3}; numbers only."""
    out = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def ratios(figures: dict) -> dict[str, float]:
    """M5's figure divided by the default model's, for every figure both have."""
    ours, theirs = flat(figures["default"]), flat(figures["M5"])
    return {k: round(theirs[k] / v, 3) for k, v in ours.items() if k in theirs and v}


def targets(default: dict, program: dict) -> dict[str, dict]:
    """Each figure with a target in TABLE: the default model's, or the program's."""
    values = {**flat(default), **flat(program, "program.")}
    out = {}
    for key, label, target, minimum in TABLE:
        if target is not None and key in values:
            met = values[key] >= target if minimum else values[key] <= target
            out[key] = {"label": label, "target": f"{'>=' if minimum else '<='} {target}", "value": values[key], "met": met}
    return out


def format_table(result: dict) -> str:
    default = {**flat(result["models"]["default"]), **flat(result["program"], "program.")}
    m5 = flat(result["models"]["M5"])
    ratio = result["ratios_m5_over_default"]
    m = result["machine"]
    lines = [
        f"occupancy bench ({'quick' if result['quick'] else 'full'}): {m['cpus']} CPUs, onnxruntime "
        f"{m['onnxruntime']} (torch {m['torch']} beside it) with {m['classify_threads']} threads for classify, "
        f"{m['live_threads']} for the monitor, load average {m['load_average_before'][0]} before, "
        f"{m['load_average_after'][0]} after",
        f"default model: {result['models']['default']['model']}   M5: {result['models']['M5']['model']}"
        + (f" ({result['m5_note']})" if result["m5_note"] else ""),
        "",
        f"{'figure':<44}{'default':>10}{'M5':>10}{'M5/def':>8}  target",
    ]
    for key, label, target, minimum in TABLE:
        verdict = ""
        if key in result["targets"]:
            t = result["targets"][key]
            verdict = f"{t['target']}: {'met' if t['met'] else 'MISSED'}"
        lines.append(f"{label:<44}{_cell(default.get(key)):>10}{_cell(m5.get(key)):>10}"
                     f"{_cell(ratio.get(key)):>8}  {verdict}")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
