"""The paper's simple CNN, width-parametrized (registered as ``"cnn"``).

Five 3×3 convolutions (padding 1) with channels ``(w, 2w, 2w, 4w, 4w)``, ``w = cfg.width``:
width 32 is the paper's CNN (32-64-64-128-128) and every layer scales with the width, so the
SC-SDC dense twin is narrower everywhere. Each conv block is::

    conv3×3 → BatchNorm2d (cfg.batchnorm) → activation → SeededDropout (dropout > 0)
            → [+ block input (cfg.skip, blocks 2 and 4)] → 2×2 max-pool (while H, W ≥ 2)

then a head, ``cfg.head``:

- ``gap`` (default): global average pooling and a linear classifier ``Linear(4w, K)``. The
  classifier is then the *smallest* layer (0.5% of the weights at w=32 on 28×28).
- ``flatten``: the classic head the paper's CNN example has in mind, where one big linear layer
  holds most weights (the case that motivates EGF: such a layer dominates a concatenated
  gradient norm). Only blocks 0 and 1 pool, the map is flattened and fed to one hidden linear
  layer of ``8w`` units (an MLP block: Linear → BatchNorm1d? → activation → dropout?) and then
  the classifier ``Linear(8w, K)``. At w=32 on 28×28 (map 128×7×7) the head holds 85% of the
  weights. **Decision**: the paper says only "conv 32-64-64-128-128, ReLU+pool, skips, then
  linear"; a single ``Linear(6272, K)`` on that map would hold only 18% of the weights, so the
  head has one hidden layer, as the VGG-style classifiers of the time had. The flattened size
  depends on the input resolution: the model is built for one.

Decisions common to both heads:

- **Skips**: a block is residual when its input and output channels are equal *by
  construction* (blocks 2: 2w → 2w and 4: 4w → 4w), never block 0 even if C == w, so the
  architecture does not depend on the width (a sparse/dense pair has the same structure). The
  block input is added after dropout and *before* pooling, where the shapes match:
  ``h ← pool(h + block(h))``, the MLP's ``h ← h + block(h)`` followed by the pool.
- **Pooling**: a block pools (``gap``: every block; ``flatten``: blocks 0 and 1) only while
  both spatial sizes are ≥ 2 (floor halving), so the family works on 8×8 digits (gap:
  8→4→2→1, then no pool), 28×28 (28→14→7→3→1; flatten: 28→14→7) and 32×32 (32→…→1; flatten:
  32→16→8). Global average pooling keeps the classifier's size independent of the input
  resolution; on these three inputs the map is 1×1 by then, so it equals flattening.
- **Biases**: a conv has a bias iff ``cfg.bias`` and not ``cfg.batchnorm`` (BatchNorm subtracts
  the batch mean, so a bias before it would get zero gradient; its shift replaces it). The
  classifier has a bias iff ``cfg.bias``.
- ``cfg.hidden_layers`` (MLP only) is not used; ``cfg.depth`` must be None (the depth is 5).

Parameter names are fixed by position, not width (SC-SDC pairs layers by name), in order::

    convs.i.conv.weight   (c_i, c_{i-1}, 3, 3)   i = 0..4, c_{-1} = C input channels
    convs.i.conv.bias     (c_i,)                 if cfg.bias and not cfg.batchnorm
    convs.i.norm.weight   (c_i,)                 if cfg.batchnorm (and .bias, running stats)
    convs.i.act.*         (c_i,)                 prelu: .weight; srelu: .t_l .a_l .t_r .a_r
    head.linear.weight    (8w, 4w·H·W)           head=flatten only (H, W = spatial_out)
    head.linear.bias      (8w,)                  head=flatten, cfg.bias and not cfg.batchnorm
    head.norm.*           (8w,)                  head=flatten and cfg.batchnorm
    head.act.*            (8w,)                  head=flatten; prelu/srelu parameters
    out.weight            (K, 4w) or (K, 8w)     K = num_classes; gap or flatten
    out.bias              (K,)                   if cfg.bias
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
)
from sparseflow.models.mlp import MLPBlock
from sparseflow.registry import MODELS

if TYPE_CHECKING:
    from sparseflow.config.schema import ModelConfig

#: Channel multipliers of the five conv layers relative to the width (the paper's CNN at w=32).
CNN_MULTIPLIERS: tuple[int, ...] = (1, 2, 2, 4, 4)
#: The paper's CNN has width 32: channels 32-64-64-128-128.
PAPER_WIDTH = 32
#: head=flatten: the blocks that pool (the others keep the map, so the head sees 7×7 on 28×28).
FLATTEN_POOLED_BLOCKS: tuple[int, ...] = (0, 1)
#: head=flatten: units of the hidden linear layer relative to the width (256 at w=32).
FLATTEN_HIDDEN_MULTIPLIER = 8


def cnn_channels(width: int) -> tuple[int, ...]:
    """Output channels of the five conv layers at ``width``: ``(w, 2w, 2w, 4w, 4w)``."""
    return tuple(m * width for m in CNN_MULTIPLIERS)


def residual_blocks() -> tuple[int, ...]:
    """Indices of the blocks that are residual with skips on: equal multipliers, never 0."""
    return tuple(i for i in range(1, len(CNN_MULTIPLIERS))
                 if CNN_MULTIPLIERS[i] == CNN_MULTIPLIERS[i - 1])


class ConvBlock(nn.Module):
    """conv3×3 (padding 1) → BN? → activation → dropout? → [+ input] → 2×2 max-pool?

    ``residual`` adds the block input before the pool (needs ``in_channels == out_channels``);
    ``pool`` halves H and W (floor). Input ``(B, in, H, W)``, output ``(B, out, H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, activation_name: str,
                 batchnorm: bool, bias: bool, dropout: float, residual: bool,
                 pool: bool) -> None:
        super().__init__()
        if residual and in_channels != out_channels:
            raise ValueError(f"a residual block needs equal channels; got {in_channels} → "
                             f"{out_channels}")
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1,
                              bias=bias and not batchnorm)
        # Identity placeholders keep the module layout identical with or without BN/dropout.
        self.norm: nn.Module = nn.BatchNorm2d(out_channels) if batchnorm else nn.Identity()
        self.act = activation(activation_name, out_channels)
        self.drop = dropout_or_identity(dropout)
        self.pool: nn.Module = nn.MaxPool2d(2) if pool else nn.Identity()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) → (B, out, H', W'), H' = H // 2 if pooling else H."""
        y = self.drop(self.act(self.norm(self.conv(x))))
        if self.residual:
            y = x + y
        return self.pool(y)


class CNN(nn.Module):
    """Five conv blocks ``(w, 2w, 2w, 4w, 4w)`` → head → logits.

    ``head="gap"``: global average pool → Linear(4w, K). ``head="flatten"``: blocks 0 and 1
    pool, then flatten → MLP block of 8w units → Linear(8w, K). Input ``(B, C, H, W)``, output
    ``(B, K)`` logits. ``spatial_out`` is the ``(H, W)`` of the last conv block's output (after
    the pools that applied).
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, *, width: int,
                 activation_name: str = "relu", batchnorm: bool = False, skip: bool = False,
                 bias: bool = True, dropout: float = 0.0, head: str = "gap") -> None:
        super().__init__()
        if head not in ("gap", "flatten"):
            raise ValueError(f"head must be 'gap' or 'flatten'; got {head!r}")
        channels, h, w = in_shape
        residual = set(residual_blocks()) if skip else set()
        blocks = []
        for i, out_ch in enumerate(cnn_channels(width)):
            # A 2×2 pool on a size-1 axis would give size 0.
            pool = h >= 2 and w >= 2 and (head == "gap" or i in FLATTEN_POOLED_BLOCKS)
            blocks.append(ConvBlock(channels, out_ch, activation_name=activation_name,
                                    batchnorm=batchnorm, bias=bias, dropout=dropout,
                                    residual=i in residual, pool=pool))
            if pool:
                h, w = h // 2, w // 2
            channels = out_ch
        self.convs = nn.ModuleList(blocks)
        self.spatial_out = (h, w)
        self.head_kind = head
        features = channels
        if head == "flatten":
            features = FLATTEN_HIDDEN_MULTIPLIER * width
            self.head = MLPBlock(channels * h * w, features, activation=activation_name,
                                 batchnorm=batchnorm, bias=bias, dropout=dropout,
                                 residual=False)
        self.out = nn.Linear(features, num_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, num_classes) logits."""
        h = x
        for block in self.convs:
            h = block(h)
        if self.head_kind == "flatten":
            return self.out(self.head(h.flatten(1)))  # (B, 4w·H·W) → (B, 8w) → (B, K)
        return self.out(global_avg_pool(h))  # (B, 4w) → (B, K)


@MODELS.register("cnn")
def build_cnn(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int,
              dropout: float) -> CNN:
    """The paper's simple CNN: 5 conv3×3 layers (w,2w,2w,4w,4w; w=32 is the paper's), then a head.

    Optional BatchNorm (cfg.batchnorm) and residual skips (cfg.skip) around the equal-channel
    blocks; ``cfg.head`` is ``gap`` (global average pool → linear) or ``flatten`` (flatten →
    hidden linear of 8w units → linear, most weights in the head); input must be an image
    ``(C, H, W)``.
    """
    shape = image_shape("cnn", input_shape)
    check_head(num_classes, dropout)
    if cfg.depth is not None:
        raise ConfigError(f"model 'cnn' has a fixed depth (5 conv layers + a linear layer); "
                          f"got model.depth={cfg.depth}: leave it unset (it applies to wrn)")
    return CNN(shape, num_classes, width=cfg.width, activation_name=cfg.activation,
               batchnorm=bool(cfg.batchnorm), skip=bool(cfg.skip), bias=cfg.bias, dropout=dropout,
               head=cfg.head)
