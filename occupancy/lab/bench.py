"""`occupancy bench`: is this machine fast enough, and how does our model compare to the seed paper's M5?

Everything is measured through the code the monitor runs: accuracy with occupancy.lab.evaluate on the
test split's mixtures; classify speed and single-window latency with the counter's own `predict`
(VAD gate + network, as live) and with the network alone, in PyTorch and in onnxruntime; replay
speed with a real Pipeline writing a real SQLite log; capture-to-count and capture-to-log latency
from a replay paced in real time (the live path: blocks stamped when they arrive, counted, and
committed); the monitor's peak memory from `occupancy monitor` in a child process reading a real
PortAudio device (ALSA's file plugin playing the sample; its peak is the kernel's VmHWM). Each figure is taken for the default
model and for M5 in the same run and given as a ratio (M5 / default).

Timings depend on the machine's load: the JSON records the load average before and after.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from ..engine.audio import read_audio
from ..engine.capture import FileSource
from ..config import Config, override
from ..errors import OccupancyError
from ..paths import RUNS_DIR, SAMPLE_RATE
from ..engine.loading import load_counter_from_config
from ..engine.pipeline import Pipeline
from ..sample import SAMPLE_AUDIO, load_truth, sample_windows
from ..engine.store import open_store

log = logging.getLogger(__name__)

ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
ALSA_DEVICE = "occfile"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # replays are logged at a fixed, recognisable time

# How much work each figure gets: --quick only proves that every part runs.
SIZES = {
    False: dict(seconds=3.0, accuracy_windows=400, replay_copies=10, latency_s=20.0, monitor_s=60.0),
    True: dict(seconds=0.3, accuracy_windows=8, replay_copies=1, latency_s=2.0, monitor_s=3.0),
}
LOW_FLUSH_S = 0.05  # a flush interval that keeps capture-to-log latency within the target

# (key, label, target, is the target a minimum) for the table; keys index a model's flat figures.
TABLE = [
    ("accuracy.realistic dry", "accuracy, realistic dry (test split)", None, True),
    ("accuracy.realistic reverberant", "accuracy, realistic reverberant", None, True),
    ("accuracy.paper recipe", "accuracy, paper recipe", None, True),
    ("accuracy.bundled sample", "accuracy, bundled sample (replayed)", None, True),
    ("counter.batch1_windows_per_s", "classify windows/s, batch 1", None, True),
    ("counter.batched_windows_per_s", "classify windows/s, batched", 1000, True),
    ("counter.batched_windows_per_cpu_s", "classify windows per CPU-second, batched", None, True),
    ("counter.latency_p50_ms", "single-window latency p50 (ms)", None, False),
    ("counter.latency_p99_ms", "single-window latency p99 (ms)", 5, False),
    ("network.batched_windows_per_s", "network alone windows/s, batched", None, True),
    ("network.latency_p99_ms", "network alone latency p99 (ms)", None, False),
    ("onnx.batched_windows_per_s", "ONNX network windows/s, batched", None, True),
    ("onnx.latency_p99_ms", "ONNX network latency p99 (ms)", None, False),
    ("replay.x_realtime", "replay with SQLite log (x real time)", 500, True),
    ("replay.x_realtime_per_cpu_s", "replay, audio seconds per CPU-second", None, True),
    ("latency.count_p99_ms", "capture-to-count p99 (ms)", None, False),
    ("latency.log_p50_ms", "capture-to-log p50 (ms), configured flush", None, False),
    ("latency.log_p99_ms", "capture-to-log p99 (ms), configured flush", None, False),
    ("latency_low_flush.log_p99_ms", f"capture-to-log p99 (ms), flush {LOW_FLUSH_S} s", 100, False),
    ("monitor.peak_rss_mb", "monitor peak memory (MB)", 600, False),
    ("load_s", "model load time (s)", None, False),
]


def run_bench(config: Config, *, quick: bool, output: str | Path, m5: str | None) -> None:
    """Measure everything, print the table and write the JSON to `output`."""
    sizes = SIZES[quick]
    load_before = os.getloadavg()
    classify_threads = torch.get_num_threads()  # torch's default, as `classify` runs; the monitor keeps a core free
    with tempfile.TemporaryDirectory(prefix="occupancy-bench-") as tmp:
        folder = Path(tmp)
        m5_path, m5_trained = find_m5(m5, config, folder)
        models = {"default": config, "M5": override(config, "model", path=str(m5_path))}
        counters = {}
        _load(models["default"])  # warm-up: the first load also imports silero-vad
        figures: dict[str, dict] = {}
        for name, model_config in models.items():
            started = time.perf_counter()
            counters[name] = _load(model_config)
            figures[name] = {"model": counters[name].name, "file": str(counters[name].path),
                             "load_s": round(time.perf_counter() - started, 3)}
        figures["M5"]["trained"] = m5_trained
        log.info("bench: accuracy on the test split")
        for name, acc in accuracy(config, counters, sizes["accuracy_windows"]).items():
            figures[name]["accuracy"] = acc
        windows = speech_first_windows(config.model.batch_size)
        for name, counter in counters.items():
            log.info("bench: %s", name)
            fig = figures[name]
            fig["counter"] = speed(counter.predict, windows, sizes["seconds"], classify_threads)
            fig["network"] = speed(counter.count_probabilities, windows, sizes["seconds"], classify_threads)
            fig["onnx"] = onnx_speed(counter, windows, sizes["seconds"], folder, classify_threads)
            fig["replay"] = replay_speed(models[name], counter, sizes["replay_copies"], folder)
            fig["accuracy"]["bundled sample"] = fig["replay"].pop("sample_accuracy")
            fig["latency"] = capture_latency(models[name], counter, sizes["latency_s"], folder)
            low = override(models[name], "storage", flush_interval_s=LOW_FLUSH_S)
            fig["latency_low_flush"] = capture_latency(low, counter, sizes["latency_s"], folder)
            fig["monitor"] = monitor_memory(counter.path, sizes["monitor_s"], folder)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": {
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "classify_threads": classify_threads,
            "torch": torch.__version__,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "m5_note": None if m5_trained else "no trained M5 found: an untrained M5 (same architecture, same speed); "
                                           "its accuracy figures mean nothing",
        "models": figures,
        "ratios_m5_over_default": ratios(figures),
        "targets": targets(figures["default"]),
    }
    print(format_table(result))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten: {output}")


def _load(config: Config):
    """The counter exactly as `monitor` loads it (same threads, VAD gate, device)."""
    return load_counter_from_config(config.model, live=True)


def find_m5(given: str | None, config: Config, folder: Path) -> tuple[Path, bool]:
    """A trained M5 (given, or from the zoo's runs), else an untrained one saved in `folder`."""
    from ..models import build_model, read_metadata, save_model

    if given:
        return Path(given), True
    trained = sorted((RUNS_DIR / "zoo").glob("M5-*/M5.safetensors"),
                     key=lambda path: path.parent.name != "M5-realistic")  # trained like ours first
    if trained:
        return trained[0], True
    classes = read_metadata(_default_weights(config))["classes"]
    torch.manual_seed(0)
    meta = {"architecture": "M5", "arch_kwargs": {}, "classes": classes, "sample_rate": SAMPLE_RATE, "window_s": 1.0}
    return save_model(build_model("M5", n_classes=len(classes)).eval(), folder / "M5-untrained.safetensors", meta), False


def _default_weights(config: Config) -> Path:
    from ..models import default_model_path

    return Path(config.model.path) if config.model.path else default_model_path()


def accuracy(config: Config, counters: dict, length: int) -> dict[str, dict]:
    """Each model's accuracy (VAD-gated counter) on the evaluation's test sets, same mixtures for all."""
    from .evaluate import TEST_SETS, evaluate_windows, mixture_windows

    out: dict[str, dict] = {name: {} for name in counters}
    top = counters["default"].classes[-1]
    try:
        for set_name, kwargs in TEST_SETS.items():
            windows, counts = mixture_windows(config, length=length, seed=1234, max_speakers=top, **kwargs)
            for name, counter in counters.items():
                scores = evaluate_windows(counter, windows, counts)
                out[name][set_name] = round(scores["counter"]["accuracy"], 4)
                out[name][f"{set_name} (network alone)"] = round(scores["network"]["accuracy"], 4)
    except OccupancyError as exc:  # no corpus in a user's clone: the other figures still stand
        log.warning("bench: no test-split accuracy (%s)", exc)
        for name in counters:
            out[name]["skipped"] = str(exc)
    return out


@contextmanager
def torch_threads(n: int):
    """Run a block with `n` torch threads, then restore the count the monitor uses."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def speech_first_windows(n: int) -> np.ndarray:
    """Up to `n` 1-s windows of real speech and silence: the bundled sample's, starting at its first
    speech (the one-window warm-up then runs the voice-activity stage too)."""
    windows = sample_windows()
    first_speech = next(second for second, count in enumerate(load_truth()) if count > 0)
    return np.roll(windows, -first_speech, axis=0)[:n]


def speed(predict, windows: np.ndarray, seconds: float, batched_threads: int) -> dict:
    """Windows/s one at a time (with its latency percentiles) and in batches of len(windows).

    One at a time is the live monitor's case, so it runs with the monitor's threads, over every
    window in turn (speech, silence, and speech the gate must listen to longer); batches are
    classify's and replay's, with `batched_threads`. Per CPU-second too: on a shared machine that is
    what the figure would be with a core to itself.
    """
    single, _ = _timed(predict, [w[None] for w in windows], seconds)
    with torch_threads(batched_threads):
        batched, cpu = _timed(predict, [windows], seconds)
    ms = np.array(single) * 1000
    done = len(windows) * len(batched)
    return {
        "batch1_windows_per_s": round(len(single) / sum(single), 1),
        "latency_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "latency_p99_ms": round(float(np.percentile(ms, 99)), 2),
        "batch": len(windows),
        "batched_windows_per_s": round(done / sum(batched), 1),
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


def onnx_speed(counter, windows: np.ndarray, seconds: float, folder: Path, threads: int) -> dict:
    """The network exported to ONNX, run by onnxruntime with `threads` (classify's)."""
    from .onnx import ExportError, OnnxNetwork, export_onnx

    started = time.perf_counter()
    try:
        path = export_onnx(counter.model, folder / f"{counter.name}.onnx")
        network = OnnxNetwork(path, threads=threads)
    except ExportError as exc:  # onnx/onnxruntime not installed: the other figures still stand
        log.warning("bench: no ONNX figures (%s)", exc)
        return {"skipped": str(exc)}
    exported = time.perf_counter() - started
    return {"export_s": round(exported, 2), **speed(network.count_probabilities, windows, seconds, threads)}


def replay_speed(config: Config, counter, copies: int, folder: Path) -> dict:
    """`replay --speed max` of the sample `copies` times into a fresh SQLite log, timed end to end."""
    db = folder / f"replay-{counter.name}.db"
    source = FileSource([SAMPLE_AUDIO] * copies, start=T0, block_size=config.audio.block_size)
    pipeline = Pipeline(config, source, counter, db_path=db)
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


def alsa_file_device(folder: Path, samples: np.ndarray) -> dict[str, str]:
    """Environment in which PortAudio sees an input device 'occfile' playing `samples` (16 kHz s16le)."""
    raw = folder / "in.raw"
    np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tofile(raw)
    conf = folder / "asound.conf"
    conf.write_text(
        f'pcm.{ALSA_DEVICE} {{ type file; slave.pcm "null"; file "/dev/null"; infile "{raw}"; format "raw" }}\n'
    )
    return {**os.environ, "ALSA_CONFIG_PATH": f"{ALSA_CONF}:{conf}"}


def monitor_memory(weights: Path, seconds: float, folder: Path, timeout: float = 600.0) -> dict:
    """Peak resident memory of `occupancy monitor --headless` in a child process (its own rusage).

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
        env = alsa_file_device(folder, audio)
        command += ["monitor", "--device", ALSA_DEVICE, "--duration", str(seconds)]
        how = "monitor --headless on the ALSA file device"
    else:
        env = {**os.environ}
        command += ["replay", "--speed", "max", str(SAMPLE_AUDIO)]
        how = "replay --headless --speed max (no ALSA configuration here)"
    command += ["--headless", "--db", str(db)]
    package_parent = str(Path(__file__).resolve().parents[1])  # the child imports this very code
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    with open(folder / "monitor.err", "w+") as errors:
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors, cwd=folder)
        peak_kb = _peak_memory_kb(child, timeout)
        errors.seek(0)
        tail = errors.read().strip().splitlines()[-1:]
    if child.returncode != 0:
        raise OccupancyError(f"bench: the monitor failed (exit {child.returncode}): {' '.join(tail)}")
    store = open_store(db, readonly=True)
    windows = store["events"].count
    store.close()
    return {"how": how, "peak_rss_mb": round(peak_kb / 1024, 1), "windows_logged": windows}


def _peak_memory_kb(child: subprocess.Popen, timeout: float) -> int:
    """The child's VmHWM (the kernel's peak-RSS counter for its program), read every 50 ms until it ends.

    Not the child's ru_maxrss: Linux carries the peak across the fork and exec that start it, so it
    would report this (larger) benchmark process instead.
    """
    peak, deadline = 0, time.monotonic() + timeout
    while child.poll() is None:
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            raise OccupancyError(f"bench: the monitor did not finish within {timeout:.0f} s")
        try:
            with open(f"/proc/{child.pid}/status") as fh:
                peak = max([peak] + [int(line.split()[1]) for line in fh if line.startswith("VmHWM:")])
        except OSError:
            pass  # it has just ended
        time.sleep(0.05)
    return peak


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


def targets(default: dict) -> dict[str, dict]:
    values = flat(default)
    out = {}
    for key, label, target, minimum in TABLE:
        if target is not None and key in values:
            met = values[key] >= target if minimum else values[key] <= target
            out[key] = {"label": label, "target": f"{'>=' if minimum else '<='} {target}", "value": values[key], "met": met}
    return out


def format_table(result: dict) -> str:
    default, m5 = (flat(result["models"][k]) for k in ("default", "M5"))
    ratio = result["ratios_m5_over_default"]
    m = result["machine"]
    lines = [
        f"occupancy bench ({'quick' if result['quick'] else 'full'}): {m['cpus']} CPUs, torch {m['torch']} with "
        f"{m['classify_threads']} threads for classify, {m['torch_threads']} for the monitor, "
        f"load average {m['load_average_before'][0]} before, "
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
