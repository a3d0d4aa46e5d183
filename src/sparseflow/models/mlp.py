"""The width-parametrized multilayer perceptron (registered as ``"mlp"``).

Parameter names are fixed by position, not by width, so a sparse net of width W_S and its dense
twin of width W_D have the same names (SC-SDC matches layers by name), in input → output order::

    hidden.0.linear.weight   (W, d)        d = prod(input_shape)
    hidden.0.linear.bias     (W,)          if cfg.bias
    hidden.0.norm.weight     (W,)          if cfg.batchnorm (and .bias, running stats)
    hidden.0.act.*           (W,)          prelu: .weight; srelu: .t_l .a_l .t_r .a_r
    hidden.i.linear.weight   (W, W)        i = 1 .. hidden_layers - 1
    ...
    out.weight               (C, W)        C = num_classes
    out.bias                 (C,)          if cfg.bias
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import Tensor, nn

from sparseflow.errors import ConfigError
from sparseflow.models.dropout import SeededDropout
from sparseflow.registry import ACTIVATIONS, MODELS

if TYPE_CHECKING:
    from sparseflow.config.schema import ModelConfig


class MLPBlock(nn.Module):
    """One hidden block: Linear → BatchNorm1d? → activation → SeededDropout?.

    ``residual`` (set when skips are on, for every block but the first) tells the MLP to add the
    block's input to its output: h ← h + block(h).
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        *,
        activation: str,
        batchnorm: bool,
        bias: bool,
        dropout: float,
        residual: bool,
    ) -> None:
        super().__init__()
        # A bias right before BatchNorm is redundant (BN subtracts the batch mean): its exact
        # gradient is 0, and adaptive optimizers would turn rounding noise there into
        # full-size random steps. BN's own shift takes its place.
        self.linear = nn.Linear(in_features, width, bias=bias and not batchnorm)
        # Identity placeholders keep the module layout identical with or without BN/dropout.
        self.norm: nn.Module = nn.BatchNorm1d(width) if batchnorm else nn.Identity()
        self.act: nn.Module = ACTIVATIONS.get(activation)(width)
        self.drop: nn.Module = SeededDropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual

    def forward(self, h: Tensor) -> Tensor:
        """(B, in_features) → (B, width), without the residual addition."""
        return self.drop(self.act(self.norm(self.linear(h))))


class MLP(nn.Module):
    """Flatten → ``hidden_layers`` blocks of ``width`` units → Linear classifier.

    Input ``(B, *input_shape)`` is flattened to ``(B, d)``; output is ``(B, num_classes)``
    logits. With ``skip``, every hidden block whose input width equals its output width, i.e.
    all but the first (which maps d → width), is residual: h ← h + block(h).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        width: int,
        hidden_layers: int,
        activation: str = "relu",
        batchnorm: bool = False,
        skip: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        blocks = []
        for i in range(hidden_layers):
            fan_in = in_features if i == 0 else width
            blocks.append(
                MLPBlock(
                    fan_in,
                    width,
                    activation=activation,
                    batchnorm=batchnorm,
                    bias=bias,
                    dropout=dropout,
                    # Never the first block, even if d == width: the architecture must not hinge
                    # on that coincidence (a sparse/dense pair would then differ in structure).
                    residual=skip and i > 0,
                )
            )
        self.hidden = nn.ModuleList(blocks)
        self.out = nn.Linear(width, num_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, *input_shape) → (B, num_classes) logits."""
        h = x.flatten(1)  # (B, d)
        for block in self.hidden:
            y = block(h)  # (B, width)
            h = h + y if block.residual else y
        return self.out(h)


@MODELS.register("mlp")
def build_mlp(
    cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, dropout: float
) -> MLP:
    """Multilayer perceptron: `hidden_layers` blocks of `width` units, optional BN and skips."""
    if not input_shape or any(s < 1 for s in input_shape):
        raise ConfigError(f"mlp needs a non-empty input shape of positive sizes; got {input_shape}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be ≥ 1; got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1); got {dropout}")
    return MLP(
        math.prod(input_shape),
        num_classes,
        width=cfg.width,
        hidden_layers=cfg.hidden_layers,
        activation=cfg.activation,
        batchnorm=bool(cfg.batchnorm),
        skip=bool(cfg.skip),
        bias=cfg.bias,
        dropout=dropout,
    )
