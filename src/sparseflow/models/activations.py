"""Activation functions, registered as factories ``(num_features) -> nn.Module``.

``num_features`` is the number of units of a ``(B, F)`` input or channels of a
``(B, C, *spatial)`` input; learnable activations (PReLU, SReLU) hold one value per unit/channel
and broadcast it over dim 1. Parameter-free factories ignore it.

Learnable activations have a deterministic ``reset_parameters()`` (no random draws), which
:func:`sparseflow.models.init_model_` calls; their types are listed in
:data:`PARAMETRIC_ACTIVATIONS`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sparseflow.registry import ACTIVATIONS

#: PReLU's initial slope (He et al. 2015's choice, and torch's default).
PRELU_INIT = 0.25


class SReLU(nn.Module):
    """S-shaped ReLU (Jin et al. 2016) with learnable per-unit thresholds and slopes.

    With per-unit parameters ``t_l, a_l, t_r, a_r`` (each of shape ``(num_features,)``)::

        f(x) = t_r + a_r (x - t_r)   if x >= t_r
               x                     if t_l < x < t_r
               t_l + a_l (x - t_l)   if x <= t_l

    If training moves ``t_l`` above ``t_r``, the right piece takes precedence where both apply.

    Deterministic init ``t_l = 0, a_l = 0.2, t_r = 1, a_r = 1``. Why: at init SReLU is exactly a
    leaky ReLU of slope 0.2 (the right piece has slope 1, so it coincides with the identity), a
    well-understood starting nonlinearity. The left slope is 0.2 (near PReLU's 0.25) rather than
    0.01 so negative pre-activations still pass gradient and the left piece can learn; the right
    knee sits at 1, about one standard deviation of a He-scaled or batch-normalized
    pre-activation, so ``a_r`` can bend the top of the distribution once it moves from 1 (while
    ``a_r = 1`` the gradient w.r.t. ``t_r``, which is ``1 - a_r``, is zero).
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.t_l = nn.Parameter(torch.empty(num_features))
        self.a_l = nn.Parameter(torch.empty(num_features))
        self.t_r = nn.Parameter(torch.empty(num_features))
        self.a_r = nn.Parameter(torch.empty(num_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set the documented deterministic init (t_l = 0, a_l = 0.2, t_r = 1, a_r = 1)."""
        with torch.no_grad():
            self.t_l.fill_(0.0)
            self.a_l.fill_(0.2)
            self.t_r.fill_(1.0)
            self.a_r.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        """Apply SReLU elementwise; ``x`` is ``(B, F)`` or ``(B, F, *spatial)``."""
        t_l, a_l, t_r, a_r = (_per_unit(p, x) for p in (self.t_l, self.a_l, self.t_r, self.a_r))
        right = t_r + a_r * (x - t_r)
        left = t_l + a_l * (x - t_l)
        # torch.where routes each element's gradient to exactly one piece, so autograd gives
        # d/dx ∈ {a_r, 1, a_l} and the right partials for all four parameters.
        return torch.where(x >= t_r, right, torch.where(x <= t_l, left, x))

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}"


def _per_unit(p: Tensor, x: Tensor) -> Tensor:
    """View a ``(F,)`` parameter so it broadcasts over dim 1 of ``x`` ((B, F, *spatial))."""
    if x.dim() < 2:
        return p
    return p.view(1, -1, *([1] * (x.dim() - 2)))


#: Activation module types with learnable parameters and a deterministic ``reset_parameters``.
PARAMETRIC_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.PReLU, SReLU)


@ACTIVATIONS.register("relu")
def relu(num_features: int) -> nn.Module:
    """ReLU: max(0, x)."""
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(num_features: int) -> nn.Module:
    """Leaky ReLU with negative slope 0.01."""
    return nn.LeakyReLU(negative_slope=0.01)


@ACTIVATIONS.register("prelu")
def prelu(num_features: int) -> nn.Module:
    """PReLU: leaky ReLU with a learnable slope per unit/channel (init 0.25)."""
    return nn.PReLU(num_parameters=num_features, init=PRELU_INIT)


@ACTIVATIONS.register("elu")
def elu(num_features: int) -> nn.Module:
    """ELU with alpha = 1: x if x > 0 else exp(x) - 1."""
    return nn.ELU(alpha=1.0)


@ACTIVATIONS.register("selu")
def selu(num_features: int) -> nn.Module:
    """SELU: scaled ELU with the self-normalizing constants of Klambauer et al. 2017."""
    return nn.SELU()


@ACTIVATIONS.register("swish")
def swish(num_features: int) -> nn.Module:
    """Swish / SiLU: x · sigmoid(x)."""
    return nn.SiLU()


@ACTIVATIONS.register("srelu")
def srelu(num_features: int) -> nn.Module:
    """SReLU: S-shaped ReLU with learnable per-unit thresholds and slopes (Jin et al. 2016)."""
    return SReLU(num_features)


@ACTIVATIONS.register("sigmoid")
def sigmoid(num_features: int) -> nn.Module:
    """Logistic sigmoid: 1 / (1 + exp(-x))."""
    return nn.Sigmoid()


@ACTIVATIONS.register("tanh")
def tanh(num_features: int) -> nn.Module:
    """Hyperbolic tangent."""
    return nn.Tanh()


@ACTIVATIONS.register("gelu")
def gelu(num_features: int) -> nn.Module:
    """GELU (exact, erf form): x · Φ(x)."""
    return nn.GELU()
