"""What is prunable: the weight of every Linear and ConvNd layer, in model order.

Biases and normalization parameters are never pruned. This definition sits at the bottom of the
package so that models, optimizers, sparsity and gradient flow all share it.
"""

from __future__ import annotations

from torch import nn

#: Module types whose ``weight`` is prunable.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Name → weight parameter of every Linear/Conv layer, in model (input → output) order."""
    out: dict[str, nn.Parameter] = {}
    for mod_name, mod in model.named_modules():
        if isinstance(mod, PRUNABLE_TYPES) and isinstance(mod.weight, nn.Parameter):
            out[f"{mod_name}.weight" if mod_name else "weight"] = mod.weight
    return out
