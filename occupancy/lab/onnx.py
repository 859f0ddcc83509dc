"""`occupancy export --onnx`: a model's ONNX companion for the CPU runtime, checked against PyTorch.

It writes `<model>.onnx` beside the weights, one file with the weights inside. For a log-mel network
(melconv) that is the network after its front end (input 'features' [B, n_mels, frames], which
models/onnx_runtime.py computes in numpy; the front end's settings are in the file's metadata); for
the others the whole network (input 'windows' [B, 16000]). Outputs: 'logits' [B, classes] and, with a
sex-composition head, 'sex_logits' [B, 2, max_speakers + 1]. The metadata also records the sha256
of the weights, so the runtime refuses the file once the weights change.

The check counts the bundled sample and the test split's mixtures (where ../shared/data is) with
both runtimes, speech gate included: every window of the sample must get the same count, at least
99.5 % of the mixtures, and every network and gate probability must agree within
PROBABILITY_TOLERANCE. Otherwise the file is removed and the export fails.

The graph is written without the onnxscript optimizer: its no-op rule takes the 1e-8 of
log(mel + 1e-8) for zero and drops it, which made digital silence NaN. ONNX Runtime optimises the
graph itself when it loads it.

`--install` then copies the weights, JSON and ONNX companion into the package's shipped models and
rebuilds the speech gate's ONNX model there from silero-vad's own, with silero-vad's licence: what
a `pip install .` counts with.
"""

from __future__ import annotations

import copy
import json
import importlib.metadata
import logging
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..engine.loading import gate_rule
from ..errors import ModelError, OccupancyError
from ..models import load_counter
from ..models.architectures import LogMel
from ..models.files import metadata_path, onnx_path, weights_sha256
from ..models.io import load_model
from ..models.onnx_runtime import FRONT_END_KEY, WEIGHTS_KEY
from ..paths import GATE_MODEL, SHIPPED_DIR, WINDOW
from ..sample import sample_windows

log = logging.getLogger(__name__)

PROBABILITY_TOLERANCE = 1e-3  # largest difference allowed between the runtimes' probabilities
MIXTURES_SAME = 0.995  # share of test mixtures that must get the same count in both runtimes
CHECK_MIXTURES = 1000  # mixtures per test set in the check
GATE_LICENSE = SHIPPED_DIR / "SILERO_VAD_LICENSE"


class ExportError(ModelError):
    """The model cannot be exported, or the exported file does not count like the original."""


def export_onnx(weights: str | Path) -> Path:
    """Write the ONNX companion of the model file `weights` beside it, without checking it."""
    weights = Path(weights)
    out = onnx_path(weights)
    model, metadata = load_model(weights)
    network, example, front_end = _without_front_end(model)
    outputs = ["logits", "sex_logits"] if metadata.get("sex_head") else ["logits"]
    # The exporter's progress notes and its "torchvision is not installed" warnings are not the user's concern.
    for noisy, level in (("torch.onnx", logging.ERROR), ("onnxscript", logging.WARNING), ("onnx_ir", logging.WARNING)):
        logging.getLogger(noisy).setLevel(level)
    try:
        program = torch.onnx.export(
            network, (example,), input_names=["features" if front_end else "windows"], output_names=outputs,
            dynamic_shapes=({0: torch.export.Dim("batch", max=4096)},), dynamo=True, optimize=False, verbose=False,
        )
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; the user gets one line
        raise ExportError(f"cannot export the network to ONNX: {str(exc).splitlines()[0]}") from None
    program.model.metadata_props[WEIGHTS_KEY] = weights_sha256(weights)
    if front_end:
        program.model.metadata_props[FRONT_END_KEY] = front_end
    program.save(str(out), external_data=False)
    return out


def _without_front_end(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor, str | None]:
    """What the ONNX file computes, an example input, and the log-mel settings (JSON) it leaves to numpy.

    A network that starts with LogMel loses it; the others are exported whole."""
    first = model.body[0]
    if not isinstance(first, LogMel):
        return model.cpu().eval(), torch.zeros(2, WINDOW), None
    mel = first.mel
    settings = dict(n_fft=mel.n_fft, win_length=mel.win_length, hop_length=mel.hop_length, n_mels=mel.n_mels,
                    f_min=mel.f_min, f_max=mel.f_max)
    network = copy.deepcopy(model).cpu().eval()
    network.body[0] = torch.nn.Identity()
    with torch.inference_mode():
        example = first(torch.zeros(2, WINDOW))
    return network, example, json.dumps(settings)


def compare_runtimes(pytorch, onnx, windows: np.ndarray) -> dict:
    """How many of `windows` the two runtimes' counters count alike (gate included; and the same women
    and men, for a sex-head model), and their largest difference in network or gate probability."""
    difference = float(np.abs(pytorch.count_probabilities(windows) - onnx.count_probabilities(windows)).max())
    if pytorch.vad:
        gate = np.abs(pytorch.speech_probability(windows) - onnx.speech_probability(windows)).max()
        difference = max(difference, float(gate))
    if pytorch.has_sex_head:
        (ours, our_sexes), (theirs, their_sexes) = pytorch.predict_with_sex(windows), onnx.predict_with_sex(windows)
        same = (ours.argmax(1) == theirs.argmax(1)) & (our_sexes == their_sexes).all(axis=1)
    else:
        same = pytorch.predict(windows).argmax(1) == onnx.predict(windows).argmax(1)
    return {"windows": len(windows), "same_count": int(same.sum()), "max_probability_difference": difference}


def check_sets(config: Config, classes: list[int], mixtures: int = CHECK_MIXTURES) -> dict[str, np.ndarray]:
    """The bundled sample and, where the corpus is, `mixtures` test mixtures of each test set."""
    from .evaluate import TEST_SETS, mixture_windows

    sets = {"bundled sample": sample_windows()}
    try:
        for name, kwargs in TEST_SETS.items():
            sets[name] = mixture_windows(config, length=mixtures, seed=1234, max_speakers=classes[-1], **kwargs)[0]
    except OccupancyError as exc:  # no corpus in a user's clone: the sample still decides
        log.warning("export: checked on the bundled sample only (%s)", exc)
    return sets


def check_onnx(config: Config, weights: Path) -> dict[str, dict]:
    """Compare the ONNX companion of `weights` with PyTorch on check_sets(); ExportError if they differ."""
    model = config.model
    pytorch = load_counter(weights, device="cpu", vad=model.vad, gate_rule=gate_rule(model), runtime="torch")
    onnx = load_counter(weights, vad=model.vad, gate_rule=gate_rule(model), runtime="onnx")
    results = {}
    for name, windows in check_sets(config, onnx.classes).items():
        result = results[name] = compare_runtimes(pytorch, onnx, windows)
        print(f"check, {name}: {result['same_count']}/{result['windows']} windows give the same count "
              f"(largest probability difference {result['max_probability_difference']:.1e})")
        needed = result["windows"] if name == "bundled sample" else MIXTURES_SAME * result["windows"]
        if result["same_count"] < needed or result["max_probability_difference"] > PROBABILITY_TOLERANCE:
            raise ExportError(
                f"{onnx_path(weights)}: ONNX Runtime does not count like PyTorch on the {name} "
                f"({result['same_count']}/{result['windows']} counts equal, largest probability difference "
                f"{result['max_probability_difference']:.1e}, allowed {PROBABILITY_TOLERANCE:.0e})")
    return results


def export_and_check(config: Config, weights: str | Path) -> Path:
    """Write the ONNX companion of `weights` beside it and check it; a failing file is removed."""
    weights = Path(weights)
    out = export_onnx(weights)
    print(f"written: {out} ({out.stat().st_size / 1e6:.1f} MB)")
    try:
        check_onnx(config, weights)
    except ExportError:
        out.unlink()
        raise
    return out


def install_model(weights: str | Path, folder: str | Path = SHIPPED_DIR) -> list[Path]:
    """Copy a model's weights, JSON and ONNX companion into `folder` (default: the package's shipped models)."""
    weights, folder = Path(weights), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for file in (weights, metadata_path(weights), onnx_path(weights)):
        target = folder / file.name
        if file.resolve() != target.resolve():
            shutil.copyfile(file, target)
        copied.append(target)
    return copied


def build_gate_model(out: str | Path = GATE_MODEL) -> Path:
    """The speech gate for ONNX Runtime, from silero-vad's 16 kHz sequence model (one stream, T frames
    per call): the same weights, taking a batch of B windows' frames at once.

    Input 'input' [T * B, 576] frame-major (every window's frame 0, then every frame 1, ...), 'h' and
    'c' [1, B, 128] zeros -> 'speech_probs' [B, T]. Its spectrogram conv and four encoder convs become
    matrix products over [N, L, C] (their signals are at most 5 steps long, where ONNX Runtime's Conv
    works one image at a time): 725 -> 374 ms for 256 windows on one core. silero-vad's licence (MIT)
    is copied beside it.
    """
    import onnx
    from onnx import helper, numpy_helper

    source = resources.files("silero_vad") / "data" / "silero_vad_16k_sequence.onnx"
    model = onnx.load_from_string(source.read_bytes())
    graph = model.graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = list(graph.node)
    names = [n.output[0] for n in nodes]
    head = nodes[:names.index("/stft/Unsqueeze_output_0")]  # up to the reflect padding of each frame
    tail = nodes[names.index("/recurrent/LSTM_output_0"):]  # the LSTM and the decoder
    new_nodes, constants = [], []

    def const(name: str, value) -> str:
        constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attributes) -> str:
        new_nodes.append(helper.make_node(op, inputs, [out], **attributes))
        return out

    def cut(x: str, start: int, end: int, axis: int, tag: str, step: int = 1) -> str:
        return node("Slice", [x, const(f"{tag}/s", [start]), const(f"{tag}/e", [end]), const(f"{tag}/a", [axis]),
                              const(f"{tag}/t", [step])], f"{tag}/out")

    # The spectrogram: conv k=256 stride 128 over the padded 832 samples, positions 1..4 = blocks 1..5 of 128.
    x = node("Reshape", [cut("/stft/padding/Pad_output_0", 128, 768, 1, "/mm/crop"), const("/mm/blocks", [0, 5, 128])],
             "/mm/framed")
    x = node("Concat", [cut(x, 0, 4, 1, "/mm/a"), cut(x, 1, 5, 1, "/mm/b")], "/mm/frames", axis=2)  # [N, 4, 256]
    basis = weights["stft.forward_basis_buffer"][:, 0, :].T.copy()  # [256, 258]: real then imaginary parts
    x = node("MatMul", [x, const("/mm/basis", basis)], "/mm/spectrum")
    re, im = cut(x, 0, 129, 2, "/mm/re"), cut(x, 129, 258, 2, "/mm/im")
    power = node("Add", [node("Mul", [re, re], "/mm/re2"), node("Mul", [im, im], "/mm/im2")], "/mm/power")
    x, length = node("Sqrt", [power], "/mm/magnitude"), 4
    for i, stride in enumerate((1, 2, 2, 1)):  # the encoder: conv k=3 pad 1 + ReLU, as im2col and a matrix product
        w, bias = weights[f"encoder.{i}.weight"], weights[f"encoder.{i}.bias"]  # [out, in, 3]
        padded = node("Pad", [x, const(f"/mm/e{i}/pads", [0, 1, 0, 0, 1, 0])], f"/mm/e{i}/padded")
        out_length = (length + 2 - 3) // stride + 1
        taps = [cut(padded, k, k + stride * (out_length - 1) + 1, 1, f"/mm/e{i}/tap{k}", stride) for k in range(3)]
        columns = node("Concat", taps, f"/mm/e{i}/columns", axis=2)
        matrix = w.transpose(2, 1, 0).reshape(-1, w.shape[0]).copy()
        x = node("MatMul", [columns, const(f"/mm/e{i}/w", matrix)], f"/mm/e{i}/product")
        x = node("Relu", [node("Add", [x, const(f"/mm/e{i}/b", bias)], f"/mm/e{i}/biased")], f"/mm/e{i}/relu")
        length = out_length
    # [T * B, 1, 128] -> [T, B, 128] for the LSTM, B read from h's shape; its output reshaped to [B, T].
    batch = node("Gather", [node("Shape", ["h"], "/mm/h_shape"), const("/mm/one", [1])], "/mm/batch", axis=0)
    shape = node("Concat", [const("/mm/any", [-1]), batch, const("/mm/hidden", [128])], "/mm/lstm_shape", axis=0)
    node("Reshape", [x, shape], "/Transpose_output_0")
    for n in tail:
        if n.output[0] == "/Constant_output_0":
            n.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([0, -1], np.int64), n.attribute[0].t.name))
    del graph.node[:]
    graph.node.extend(head + new_nodes + tail)
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + constants)
    for value, dims in (("input", ["frames", 576]), ("h", [1, "batch", 128]), ("c", [1, "batch", 128]),
                        ("speech_probs", ["batch", "T"]), ("hn", [1, "batch", 128]), ("cn", [1, "batch", 128])):
        info = next(v for v in [*graph.input, *graph.output] if v.name == value)
        info.type.tensor_type.shape.CopyFrom(onnx.TensorShapeProto(dim=[
            onnx.TensorShapeProto.Dimension(dim_param=d) if isinstance(d, str) else
            onnx.TensorShapeProto.Dimension(dim_value=d) for d in dims]))
    del graph.value_info[:]
    version = importlib.metadata.version("silero-vad")
    model.doc_string = (f"silero-vad {version}'s silero_vad_16k_sequence.onnx (MIT License, Copyright (c) 2020-present "
                        "Silero Team), batched by occupancy: input [T*B, 576] frame-major, h/c [1, B, 128] -> "
                        "speech_probs [B, T]")
    onnx.checker.check_model(model, full_check=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    licence = next(f for f in importlib.metadata.distribution("silero-vad").files if f.name == "LICENSE")
    shutil.copyfile(licence.locate(), out.parent / GATE_LICENSE.name)
    return out
