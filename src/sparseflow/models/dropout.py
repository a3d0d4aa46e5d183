"""Dropout whose masks come from an explicit generator (models never use ``nn.Dropout``).

The training loop owns one dropout generator per run and hands it to every
:class:`SeededDropout` of the model with :func:`set_dropout_generator`; the draws then depend on
that generator alone, never on the global RNG, so runs are reproducible and a gradient-flow probe
can save/restore the generator's state around its measurements.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SeededDropout(nn.Module):
    """Inverted dropout (keep with prob. 1 - p, scale kept values by 1/(1 - p)), seeded.

    The Bernoulli keep-mask, of the input's full shape, is drawn from ``self.generator`` on the
    generator's device and moved to the input's device when they differ, so a CPU generator
    drives CUDA inputs (and the mask does not depend on the input's device or dtype: it is drawn
    in float32). Identity in eval mode and when ``p == 0``. With ``generator=None`` the mask uses
    the global RNG of the input's device, like ``nn.Dropout``: set a generator for reproducibility.
    The generator is not part of ``state_dict``; its owner saves its state.
    """

    def __init__(self, p: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1); got {p}")
        self.p = float(p)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        """Apply dropout to ``x`` (any shape) in train mode; identity in eval mode."""
        if not self.training or self.p == 0.0:
            return x
        if self.generator is None:
            u = torch.rand(x.shape, device=x.device)
        else:
            u = torch.rand(x.shape, generator=self.generator, device=self.generator.device)
        keep = (u >= self.p).to(device=x.device, dtype=x.dtype)  # P(keep) = 1 - p
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        seeded = "seeded" if self.generator is not None else "global RNG"
        return f"p={self.p}, {seeded}"


def set_dropout_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Give every :class:`SeededDropout` of ``model`` this generator (None = global RNG).

    All dropout layers share the one generator; they draw from it in forward order.
    """
    for mod in model.modules():
        if isinstance(mod, SeededDropout):
            mod.generator = generator
