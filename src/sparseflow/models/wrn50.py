"""Wide ResNet-50 (bottleneck) with a CIFAR stem, width-parametrized (registered as ``"wrn50"``).

The layout of torchvision's ``wide_resnet50_2`` (ResNet v1.5 bottlenecks, stride on the 3×3
conv): four stages of ``(3, 4, 6, 3)`` bottleneck blocks with inner widths ``(w, 2w, 4w, 8w)``
and outputs ``(2w, 4w, 8w, 16w)``, ``w = cfg.width``, stride 2 at the first block of stages
2–4, global average pool and a linear classifier. The ImageNet stem (7×7 stride 2 + max-pool)
is replaced by a CIFAR stem: conv3×3 stride 1 → BN → act, ``⌈w/2⌉`` channels. A bottleneck
(input ``x``)::

    y = norm3(conv3(drop(act2(norm2(conv2(act1(norm1(conv1(x)))))))))
    out = act3(y + shortcut(x))     conv1 1×1, conv2 3×3 (stride s), conv3 1×1
                                    shortcut: 1×1 conv (stride s) → BN in each stage's first
                                    block, identity elsewhere

Decisions:

- **Everything scales with the width**: at ``w = 128`` the channels are exactly
  wide_resnet50_2's (stem 64, inner 128…1024, outputs 256…2048); the dense twin of SC-SDC is
  narrower in every layer (residual stream, stem and shortcuts included), like the MLP and the
  CNN. The price: ResNet-50 (inner 64, outputs 256…2048) is not a member of the family; a
  family with fixed outputs would contain it but leave the stem, the shortcuts and the
  classifier dense (density 1) in every sparse/dense pair. Tiny widths are genuinely tiny
  (w = 4 has about 0.1M parameters), so the family is testable on CPU.
- The first block of every stage has a projection shortcut at every width (stage 1 maps
  ``⌈w/2⌉ → 2w``), so sparse and dense nets have the same layers.
- **BatchNorm and skips are part of the family**: ``cfg.batchnorm`` and ``cfg.skip`` default
  to None (= on); an explicit False is a ConfigError; ``cfg.depth`` must be None or 50.
- **Biases**: none in convs (each is followed by BN); the classifier has one iff ``cfg.bias``.
  BN weights start at 1 everywhere (torchvision's default; no zero-init of ``norm3``).
- Dropout, if any, sits after the 3×3 conv's activation (as in the WRN basic block).

Parameter names (``s`` stage 0..3, ``j`` block)::

    stem.conv.weight               (⌈w/2⌉, C, 3, 3)   stem.norm.*, stem.act.*
    stages.s.j.conv1.weight        (i, c_in, 1, 1)    i = w·2^s inner width
    stages.s.j.conv2.weight        (i, i, 3, 3)
    stages.s.j.conv3.weight        (o, i, 1, 1)       o = 2i block output
    stages.s.j.norm{1,2,3}.*, act{1,2,3}.*
    stages.s.0.shortcut.conv.weight  (o, c_in, 1, 1)  stages.s.0.shortcut.norm.*
    out.weight                     (K, 16w)           and out.bias if cfg.bias
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from sparseflow.errors import ConfigError
from sparseflow.models.convbase import (
    activation,
    check_head,
    dropout_or_identity,
    global_avg_pool,
    image_shape,
    require_residual_bn,
)
from sparseflow.registry import MODELS

if TYPE_CHECKING:
    from sparseflow.config.schema import ModelConfig

#: Bottleneck blocks per stage of ResNet-50.
WRN50_BLOCKS: tuple[int, ...] = (3, 4, 6, 3)
#: Block output = EXPANSION × inner width (wide_resnet50_2: 256 = 2 × 128).
EXPANSION = 2


def wrn50_stem_channels(width: int) -> int:
    """Stem channels ``⌈w/2⌉`` (64 at w = 128, wide_resnet50_2's stem width)."""
    return (width + 1) // 2


class Projection(nn.Module):
    """The shortcut of a stage's first block: 1×1 conv (stride s, no bias) → BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) → (B, out, ⌈H/s⌉, ⌈W/s⌉)."""
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 bottleneck with BN, post-activation (ResNet v1.5).

    Input ``(B, in, H, W)``, output ``(B, out, ⌈H/s⌉, ⌈W/s⌉)``; ``project`` selects the
    :class:`Projection` shortcut (else identity, which needs ``in == out`` and stride 1).
    """

    def __init__(self, in_channels: int, inner: int, out_channels: int, stride: int, *,
                 project: bool, activation_name: str, dropout: float) -> None:
        super().__init__()
        if not project and (in_channels != out_channels or stride != 1):
            raise ValueError("an identity shortcut needs in == out channels and stride 1")
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(inner)
        self.act1 = activation(activation_name, inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(inner)
        self.act2 = activation(activation_name, inner)
        self.drop = dropout_or_identity(dropout)
        self.conv3 = nn.Conv2d(inner, out_channels, 1, bias=False)
        self.norm3 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = (Projection(in_channels, out_channels, stride) if project
                                    else nn.Identity())
        self.act3 = activation(activation_name, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) → (B, out, H', W')."""
        y = self.drop(self.act2(self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))))
        return self.act3(self.norm3(self.conv3(y)) + self.shortcut(x))


class Stem(nn.Module):
    """CIFAR stem: conv3×3 stride 1 (no bias) → BN → act; ``(B, C, H, W) → (B, c, H, W)``."""

    def __init__(self, in_channels: int, channels: int, activation_name: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.act = activation(activation_name, channels)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, c, H, W)."""
        return self.act(self.norm(self.conv(x)))


class WideResNet50(nn.Module):
    """CIFAR stem → 4 stages of bottlenecks ``(3, 4, 6, 3)`` → global avg pool → linear.

    Input ``(B, C, H, W)``, output ``(B, num_classes)`` logits; stage inner widths
    ``(w, 2w, 4w, 8w)``, outputs ``(2w, 4w, 8w, 16w)``.
    """

    def __init__(self, in_channels: int, num_classes: int, *, width: int,
                 activation_name: str = "relu", bias: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        c_in = wrn50_stem_channels(width)
        self.stem = Stem(in_channels, c_in, activation_name)
        stages = []
        for s, n in enumerate(WRN50_BLOCKS):
            inner = width * 2**s
            out = EXPANSION * inner
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(c_in, inner, out, 2 if (s > 0 and j == 0) else 1,
                                         project=j == 0, activation_name=activation_name,
                                         dropout=dropout))
                c_in = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out = nn.Linear(c_in, num_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, num_classes) logits."""
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.out(global_avg_pool(h))  # (B, 16w) → (B, K)


@MODELS.register("wrn50")
def build_wrn50(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int,
                dropout: float) -> WideResNet50:
    """Wide ResNet-50 (bottleneck, CIFAR stem); width = first-stage inner width (128 = WRN-50-2).

    Every channel count scales with the width; always with BatchNorm and residual skips.
    """
    shape = image_shape("wrn50", input_shape)
    check_head(num_classes, dropout)
    if cfg.depth not in (None, 50):
        raise ConfigError(f"model 'wrn50' has a fixed depth of 50; got model.depth={cfg.depth}: "
                          "leave it unset, or use model.name=wrn for other depths")
    require_residual_bn("wrn50", cfg)
    return WideResNet50(shape[0], num_classes, width=cfg.width, activation_name=cfg.activation,
                        bias=cfg.bias, dropout=dropout)
