"""Wide ResNet WRN-d-k for small images (Zagoruyko & Komodakis 2016), registered as ``"wrn"``.

Depth ``d = 6n + 4`` (``cfg.depth``, default 16): a 3×3 stem conv, three stages of ``n``
pre-activation basic blocks with ``(w, 2w, 4w)`` channels, ``w = cfg.width`` (WRN-d-k has
``w = 16k``), stride 2 at the first block of stages 2 and 3, then BN → activation → global
average pool → linear. A basic block (input ``x``)::

    o = act1(norm1(x))
    y = conv2(drop(act2(norm2(conv1(o)))))      conv1 3×3 (stride s), conv2 3×3
    out = y + (shortcut(o) if the shape changes else x)    shortcut: 1×1 conv, stride s

as in the authors' code (the projection takes the pre-activated input). Dropout, if any, sits
between the two convs, as in the paper. Decisions:

- **Stem = w channels** (the original uses 16 for every k). Why: (1) the architecture is then
  the same at every width (stage 1 always has identity shortcuts, stages 2 and 3 always a 1×1
  projection in their first block), so a sparse net and its dense twin have the same layers;
  with a fixed 16-channel stem, WRN-d-1 would lack the stage-1 projection that WRN-d-k (k > 1)
  has, and SC-SDC could not pair them. (2) Every layer shrinks in the narrower dense twin, as
  in the MLP and the CNN. At k = 1 (w = 16) this is exactly the original WRN-d-1; for k > 1
  the stem has 16k channels and stage 1 opens with an identity shortcut instead of a 1×1
  projection (WRN-28-10 on CIFAR-10: 36,688,170 parameters instead of 36,479,194, +0.6%).
- **BatchNorm and skips are part of the family**: ``cfg.batchnorm`` and ``cfg.skip`` default
  to None (= on); an explicit False is a ConfigError naming the fix, so a config always
  describes the network that ran and no two configs (run ids) silently train the same network.
- **Biases**: no conv has a bias (each conv's output reaches a BatchNorm before any
  nonlinearity, so a bias would be redundant); the classifier has one iff ``cfg.bias``.
- Any ``(C, H, W)`` input works; the stride-2 stages halve H and W (ceil), so 32×32 ends at
  8×8 and 8×8 digits at 2×2 before global pooling.

Parameter names (fixed by position, not width; ``s`` stage 0..2, ``j`` block 0..n-1)::

    stem.weight                   (w, C, 3, 3)
    stages.s.j.norm1.weight       (c_in,)           and .bias, running stats
    stages.s.j.conv1.weight       (c, c_in, 3, 3)   c = w·2^s
    stages.s.j.norm2.weight       (c,)
    stages.s.j.conv2.weight       (c, c, 3, 3)
    stages.s.0.shortcut.weight    (c, c_in, 1, 1)   s = 1, 2 only
    stages.s.j.act1.* / act2.*    prelu: .weight; srelu: .t_l .a_l .t_r .a_r
    norm.weight, act.*            (4w,)             final BN and activation
    out.weight                    (K, 4w)           and out.bias if cfg.bias
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

#: Depth when ``cfg.depth`` is None: WRN-16-k.
DEFAULT_DEPTH = 16


def wrn_blocks_per_stage(depth: int | None) -> int:
    """n of depth ``d = 6n + 4`` (None → 16, n = 2); ConfigError for any other depth."""
    d = DEFAULT_DEPTH if depth is None else depth
    if d < 10 or (d - 4) % 6 != 0:
        raise ConfigError(
            f"wrn depth must be d = 6n + 4 with n ≥ 1 blocks per stage (10, 16, 22, 28, 40, "
            f"...): 3 stages × n blocks × 2 convs, plus the stem, the classifier and 2 "
            f"projections; got model.depth={depth}"
        )
    return (d - 4) // 6


class WideBasicBlock(nn.Module):
    """Pre-activation basic block: BN → act → conv3×3 → BN → act → dropout → conv3×3, + skip.

    Input ``(B, in, H, W)``, output ``(B, out, ⌈H/s⌉, ⌈W/s⌉)``. A 1×1 projection (no bias)
    replaces the identity shortcut when ``in != out`` or ``stride != 1``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, *,
                 activation_name: str, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.act1 = activation(activation_name, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1,
                               bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.act2 = activation(activation_name, out_channels)
        self.drop = dropout_or_identity(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut: nn.Conv2d | None = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) → (B, out, H', W')."""
        o = self.act1(self.norm1(x))
        y = self.conv2(self.drop(self.act2(self.norm2(self.conv1(o)))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    """Stem conv → 3 stages of ``n`` :class:`WideBasicBlock` → BN → act → avg pool → linear.

    Input ``(B, C, H, W)``, output ``(B, num_classes)`` logits; stage channels ``(w, 2w, 4w)``.
    """

    def __init__(self, in_channels: int, num_classes: int, *, width: int,
                 blocks_per_stage: int, activation_name: str = "relu", bias: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        stages = []
        c_in = width
        for s in range(3):
            c = width * 2**s
            blocks = [WideBasicBlock(c_in if j == 0 else c, c, 2 if (s > 0 and j == 0) else 1,
                                     activation_name=activation_name, dropout=dropout)
                      for j in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            c_in = c
        self.stages = nn.ModuleList(stages)
        self.norm = nn.BatchNorm2d(c_in)
        self.act = activation(activation_name, c_in)
        self.out = nn.Linear(c_in, num_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, num_classes) logits."""
        h = self.stem(x)  # (B, w, H, W)
        for stage in self.stages:
            h = stage(h)  # (B, w·2^s, H/2^s, W/2^s)
        return self.out(global_avg_pool(self.act(self.norm(h))))  # (B, 4w) → (B, K)


@MODELS.register("wrn")
def build_wrn(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int,
              dropout: float) -> WideResNet:
    """Wide ResNet WRN-d-k: depth 6n+4 (model.depth, default 16), stage widths w,2w,4w (w=16k).

    Pre-activation basic blocks; always with BatchNorm and residual skips.
    """
    shape = image_shape("wrn", input_shape)
    check_head(num_classes, dropout)
    n = wrn_blocks_per_stage(cfg.depth)
    require_residual_bn("wrn", cfg)
    return WideResNet(shape[0], num_classes, width=cfg.width, blocks_per_stage=n,
                      activation_name=cfg.activation, bias=cfg.bias, dropout=dropout)
