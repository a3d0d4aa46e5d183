"""Shared checks and pieces of the convolutional families (``cnn``, ``wrn``, ``wrn50``).

Builders call these at construction time, so a bad config fails before any training starts,
with one line naming the bad value and the fix. Everything here works on the ``meta`` device
(the dense twin of SC-SDC is built there): only shapes are computed, never data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from sparseflow.errors import ConfigError
from sparseflow.models.dropout import SeededDropout
from sparseflow.registry import ACTIVATIONS

if TYPE_CHECKING:
    from sparseflow.config.schema import ModelConfig

#: Image datasets a user can switch to when a conv family gets a flat input.
IMAGE_DATASETS = "digits, fashion_mnist, cifar10, cifar100"


def image_shape(family: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``input_shape`` as ``(C, H, W)``; ConfigError for anything that is not an image shape."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ConfigError(
            f"model {family!r} needs image inputs of shape (C, H, W) with positive sizes; got "
            f"{shape}. Use an image dataset ({IMAGE_DATASETS}) or model.name=mlp for flat inputs"
        )
    return shape[0], shape[1], shape[2]


def check_head(num_classes: int, dropout: float) -> None:
    """ConfigError unless ``num_classes ≥ 1`` and ``dropout ∈ [0, 1)``."""
    if num_classes < 1:
        raise ConfigError(f"num_classes must be ≥ 1; got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1); got {dropout}")


def require_residual_bn(family: str, cfg: ModelConfig) -> None:
    """ConfigError if ``cfg.batchnorm`` or ``cfg.skip`` is explicitly False.

    The wide ResNets are *defined* with BatchNorm and residual additions: None (the default)
    means "the family's default", i.e. on. An explicit False would describe a network that does
    not run, and ignoring it would give two configs (two run ids, two cells of a study) that
    train the same network, so it is refused.
    """
    missing = [f"model.{f}=true" for f in ("batchnorm", "skip") if getattr(cfg, f) is False]
    if missing:
        raise ConfigError(
            f"model {family!r} always has BatchNorm and residual connections; remove "
            f"the explicit false or set {' and '.join(missing)}"
        )


def activation(name: str, channels: int) -> nn.Module:
    """The registered activation ``name`` for ``channels`` channels (PReLU: one per channel)."""
    return ACTIVATIONS.get(name)(channels)


def dropout_or_identity(p: float) -> nn.Module:
    """SeededDropout(p) if ``p > 0`` else Identity (same module layout either way)."""
    return SeededDropout(p) if p > 0 else nn.Identity()


def global_avg_pool(h: Tensor) -> Tensor:
    """(B, C, H, W) → (B, C): the mean over all spatial positions."""
    return h.mean(dim=(2, 3))
