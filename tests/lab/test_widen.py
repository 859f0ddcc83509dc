"""Widening a trained melconv (Net2WiderNet): same function, copies told apart, a clear refusal otherwise."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch: the train extra (pip install .[train])")

from occupancy.engine.audio import read_audio  # noqa: E402
from occupancy.models.architectures import build_model  # noqa: E402
from occupancy.lab import widen as widen_module  # noqa: E402
from occupancy.lab.widen import widen_melconv  # noqa: E402
from occupancy.sample import SAMPLE_AUDIO  # noqa: E402

SMALL = dict(width=16, dilations=(1, 2))


@pytest.fixture(scope="module")
def windows() -> torch.Tensor:
    """Twelve 1-s windows of the bundled real recording."""
    return torch.from_numpy(read_audio(SAMPLE_AUDIO)[: 12 * 16000].reshape(12, 16000))


def _trained_like(seed: int = 0, **kwargs):
    """A small melconv with random weights and non-trivial batch-norm statistics, as training leaves them."""
    torch.manual_seed(seed)
    model = build_model("melconv", **{**SMALL, **kwargs})
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("sex_head", [False, True])
def test_widened_network_computes_what_the_narrow_one_did(windows, monkeypatch, sex_head):
    monkeypatch.setattr(widen_module, "NOISE", 0.0)
    narrow = _trained_like(sex_head=sex_head)
    wide = build_model("melconv", width=27, dilations=(1, 2), sex_head=sex_head).eval()
    widen_melconv(narrow, wide)
    with torch.no_grad():
        before, after = narrow(windows), wide(windows)
    for a, b in zip(before if sex_head else [before], after if sex_head else [after]):
        assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


def test_noise_tells_the_copies_apart_and_barely_changes_the_counts(windows):
    narrow = _trained_like()
    wide = build_model("melconv", width=32, dilations=(1, 2)).eval()
    widen_melconv(narrow, wide)
    w = wide.body[1].weight
    copied = [j for j in range(16, 32)]
    assert all(not torch.equal(w[j], w[k]) for j in copied for k in range(16))  # no channel is an exact copy
    with torch.no_grad():
        p, q = torch.softmax(narrow(windows), 1), torch.softmax(wide(windows), 1)
    assert float((p - q).abs().max()) < 0.05


def test_only_a_wider_melconv_with_the_same_blocks_can_be_filled():
    narrow = _trained_like()
    for other in (build_model("melconv", width=8, dilations=(1, 2)), build_model("melconv", width=32, dilations=(1,))):
        with pytest.raises(ValueError, match="widen"):
            widen_melconv(narrow, other)
