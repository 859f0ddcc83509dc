"""Start a wider melconv from a trained narrower one, computing the same function (Net2WiderNet).

Why: a trained counter holds what hours of training taught it; a wider network that starts from it
(Chen, Goodfellow & Shlens 2016, "Net2Net") keeps that and only has to learn what the extra channels
add, where one trained from scratch must relearn everything first.

Each new channel copies an existing one; whatever reads the copies divides their weights by how
many copies there are, so the sum is unchanged. The residual trunk (front conv, every block's
output, the pooled features) shares one channel mapping, because the shortcuts add those channels
together; each block's inner channels get their own. A little noise then tells the copies apart,
or they would get the same gradients and stay copies forever.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.architectures import CountNet

NOISE = 1e-2  # standard deviation of the symmetry-breaking noise, relative to each weight's spread


def _mapping(old: int, new: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel j of the wider layer copies channel mapping[j]; copies[k]: how many copy channel k."""
    extra = torch.randint(old, (new - old,), generator=generator)
    mapping = torch.cat([torch.arange(old), extra])
    return mapping, torch.bincount(mapping, minlength=old).float()


def _batchnorm(wide: nn.BatchNorm1d, narrow: nn.BatchNorm1d, mapping: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(wide, name).copy_(getattr(narrow, name)[mapping])
    wide.num_batches_tracked.copy_(narrow.num_batches_tracked)


def _linear(wide: nn.Linear, narrow: nn.Linear, pooled: torch.Tensor, copies: torch.Tensor) -> None:
    wide.weight.copy_(narrow.weight[:, pooled] / copies[pooled])
    wide.bias.copy_(narrow.bias)


def widen_melconv(narrow: CountNet, wide: CountNet, seed: int = 0) -> None:
    """Fill `wide` (melconv, more channels, same dilations and heads) from the trained `narrow`."""
    generator = torch.Generator().manual_seed(seed)
    small, large = narrow.body, wide.body
    old, new = small[1].out_channels, large[1].out_channels
    if new < old or len(small) != len(large):
        raise ValueError(f"can only widen a melconv to at least its width ({old}) with the same blocks")
    trunk, trunk_copies = _mapping(old, new, generator)
    with torch.no_grad():
        large[0].load_state_dict(small[0].state_dict())  # the fixed log-mel front end
        large[1].weight.copy_(small[1].weight[trunk])
        large[1].bias.copy_(small[1].bias[trunk])
        _batchnorm(large[2], small[2], trunk)
        for block_small, block_large in zip(small[4:-1], large[4:-1]):
            inner, inner_copies = _mapping(old, new, generator)
            block_large.conv1.weight.copy_(
                block_small.conv1.weight[inner][:, trunk] / trunk_copies[trunk][None, :, None])
            _batchnorm(block_large.bn1, block_small.bn1, inner)
            block_large.conv2.weight.copy_(
                block_small.conv2.weight[trunk][:, inner] / inner_copies[inner][None, :, None])
            _batchnorm(block_large.bn2, block_small.bn2, trunk)
        # pooled features: the trunk's means, then its maxima
        pooled = torch.cat([trunk, trunk + old])
        copies = torch.cat([trunk_copies, trunk_copies])
        _linear(wide.head, narrow.head, pooled, copies)
        if narrow.sex is not None and wide.sex is not None:
            _linear(wide.sex, narrow.sex, pooled, copies)
        for module in wide.modules():
            if isinstance(module, nn.Conv1d):
                module.weight.add_(torch.randn(module.weight.shape, generator=generator)
                                   * (NOISE * float(module.weight.std())))
