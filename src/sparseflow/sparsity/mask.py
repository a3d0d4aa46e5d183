"""The :class:`Mask`: which weights of a model are active.

A mask maps the name of each *prunable* parameter (the weight of every Linear and ConvNd layer,
in model order) to a bool tensor of the same shape; True = active. Biases and normalization
parameters are never pruned. A layer absent from the mask is dense.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from sparseflow.errors import ConfigError
from sparseflow.prunable import PRUNABLE_TYPES, prunable_parameters

__all__ = ["PRUNABLE_TYPES", "Mask", "prunable_parameters"]


class Mask(Mapping[str, Tensor]):
    """Validated mapping from prunable parameter name to a bool tensor (True = active)."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        clean: dict[str, Tensor] = {}
        for name, t in tensors.items():
            if not isinstance(t, Tensor):
                raise TypeError(f"mask of {name!r} is {type(t).__name__}, not a tensor")
            clean[name] = t.detach().to(dtype=torch.bool, device="cpu").clone()
        self._t = clean

    # Mapping protocol -------------------------------------------------------------------
    def __getitem__(self, name: str) -> Tensor:
        return self._t[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def __repr__(self) -> str:
        return f"Mask({len(self)} layers, density={self.density():.4f})"

    # Counts and densities -----------------------------------------------------------------
    def active(self, name: str | None = None) -> int:
        """Active weights of one layer, or of all masked layers."""
        if name is not None:
            return int(self._t[name].sum())
        return sum(int(t.sum()) for t in self._t.values())

    def total(self, name: str | None = None) -> int:
        """Weights (active or not) of one layer, or of all masked layers."""
        if name is not None:
            return self._t[name].numel()
        return sum(t.numel() for t in self._t.values())

    def density(self, name: str | None = None) -> float:
        """Active fraction of one layer, or of all masked layers together."""
        total = self.total(name)
        return self.active(name) / total if total else 1.0

    def densities(self) -> dict[str, float]:
        """Per-layer densities."""
        return {n: self.density(n) for n in self._t}

    # Validation and persistence -----------------------------------------------------------
    def check_model(self, model: nn.Module) -> None:
        """ConfigError unless every masked name is a prunable parameter of matching shape."""
        params = prunable_parameters(model)
        for name, t in self._t.items():
            if name not in params:
                raise ConfigError(
                    f"mask layer {name!r} is not a prunable weight of the model; "
                    f"prunable weights: {', '.join(params)}"
                )
            if tuple(t.shape) != tuple(params[name].shape):
                raise ConfigError(
                    f"mask of {name!r} has shape {tuple(t.shape)} but the weight has "
                    f"{tuple(params[name].shape)}"
                )

    def to_dict(self) -> dict[str, Tensor]:
        """Plain dict of bool tensors (what ``mask.pt`` holds)."""
        return dict(self._t)

    def save(self, path: str | Path) -> None:
        """Write ``{name: bool tensor}`` atomically with torch.save."""
        from sparseflow.utils.atomic import atomic_torch_save

        atomic_torch_save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> Mask:
        """Read a mask written by :meth:`save` (weights_only, safe)."""
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
        return cls(data)

    @classmethod
    def dense_like(cls, model: nn.Module) -> Mask:
        """An all-True mask over every prunable weight of ``model``."""
        return cls({n: torch.ones_like(p, dtype=torch.bool) for n, p in
                    prunable_parameters(model).items()})
