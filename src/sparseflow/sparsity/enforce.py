"""Mask enforcement, in one place.

The three rules, applied by :class:`MaskEnforcer` (a training hook):
1. weights are masked at creation (:meth:`MaskEnforcer.apply_to_weights` before training);
2. right after backward the raw gradient is kept (``raw_grads``, for probes that want the
   unmasked measures) and then masked, so the optimizer only ever sees masked gradients;
3. weights are re-masked after every optimizer step (guards against anything that moves a
   pruned weight: decoupled weight decay of a non-zero value, numerical drift, user code).

With masked gradients and zero weights, every registered optimizer keeps its state at pruned
positions at exactly zero (momentum buffers, Adam moments, Adagrad sums), which the tests check.

The mask may change during training (dynamic sparse training): :meth:`MaskEnforcer.set_layer`
rewrites one layer's mask *in place*, so every holder of the :class:`Mask` (the probe, the run)
sees the new mask and the enforcer masks with it from then on.

How a tensor is masked (:func:`zero_pruned_`): on the CPU, ``t.mul_(keep)`` with a 0/1 mask
of ``t``'s dtype (torch's bool ``masked_fill_`` is a scalar loop there, ~12× slower than the
vectorized multiply on a 256×784 weight), then a sum of the result: ``x·1 = x`` and ``x·0 =
±0`` for every finite ``x``, so a finite sum proves the result equals ``masked_fill_``'s (a
pruned zero may be ``-0.0``, which compares and computes as ``0.0``); a non-finite sum — a
pruned ``inf``/``NaN`` became ``NaN`` under ``0·x``, or the run diverged — takes the exact
``masked_fill_`` pass on top. Reading the sum is no host sync on the CPU; on other devices,
where ``masked_fill_`` is a vectorized kernel too, it is used directly.

Layers on the sparse backend (:mod:`sparseflow.sparsity.backend`) ask the enforcer whether a
backward may skip the pruned positions of the weight gradient: only inside a training step
(``before_step`` → ``after_backward``) and only when no one asked for the raw gradient.

Layers in the compact layout (:mod:`sparseflow.sparsity.compact`) are trained through their
vector of active values: after the step the enforcer writes it into the dense weight instead of
re-masking it (pruned entries are never written), and a full weight gradient taken inside a step
is masked as usual and its active entries added to the values' gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from sparseflow.sparsity.backend import SparseLinear
from sparseflow.sparsity.mask import Mask, prunable_parameters


@torch.no_grad()
def zero_pruned_(t: Tensor, keep: Tensor, pruned: Tensor) -> Tensor:
    """Set the pruned positions of ``t`` to zero in place, exactly as
    ``t.masked_fill_(pruned, 0.0)`` (up to the sign of a pruned zero); ``keep`` is the 0/1
    mask in ``t``'s dtype, ``pruned`` the bool complement (see the module doc)."""
    if t.device.type != "cpu":
        return t.masked_fill_(pruned, 0.0)
    t.mul_(keep)
    if not math.isfinite(t.sum().item()):  # a pruned inf/NaN is NaN now: the exact pass
        t.masked_fill_(pruned, 0.0)
    return t


def keep_and_pruned(active: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """The (0/1 mask in ``like``'s dtype, bool pruned mask) pair of a bool ``active`` mask on
    ``like``'s device: what :func:`zero_pruned_` takes."""
    active = active.to(like.device, torch.bool)
    return active.to(like.dtype), ~active


class MaskEnforcer:
    """Keeps the pruned weights of ``model`` at exactly zero throughout training."""

    def __init__(self, model: nn.Module, mask: Mask) -> None:
        mask.check_model(model)
        params = prunable_parameters(model)
        self.mask = mask
        # (name, param, 0/1 keep mask, bool pruned mask) on the param's device, resolved once:
        # the hot path is a loop of in-place multiplies, no dictionary lookups.
        self._pairs: list[tuple[str, nn.Parameter, Tensor, Tensor]] = [
            (n, params[n], *keep_and_pruned(mask[n], params[n])) for n in mask
        ]
        #: The masked parameters by name (what dynamic sparse training updates).
        self.params: dict[str, nn.Parameter] = {n: params[n] for n in mask}
        self.keep_raw = False
        self.raw_grads: dict[str, Tensor] = {}
        #: True between ``before_step`` and ``after_backward`` (the training step's backward).
        self.in_step = False
        #: id(weight) → the sparse-backend state of its layer (it reads in_step and keep_raw).
        self._sparse: dict[int, Any] = {}
        for mod in model.modules():
            if isinstance(mod, SparseLinear):
                mod._sparse.enforcer = self
                self._sparse[id(mod.weight)] = mod._sparse
        #: (weight, its CompactValues) of the layers in the compact layout; the other pairs are
        #: masked in place.
        self._compact = [(p, self._sparse[id(p)].compact) for _, p, _, _ in self._pairs
                         if id(p) in self._sparse and self._sparse[id(p)].compact is not None]
        compact_ids = {id(p) for p, _ in self._compact}
        self._masked = [pair for pair in self._pairs if id(pair[1]) not in compact_ids]

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        """Set every pruned weight to exactly 0 (a compact layer: bring its weight in step with
        its trained values, whose pruned entries are 0 by construction)."""
        for _, p, keep, pruned in self._masked:
            zero_pruned_(p, keep, pruned)
        for p, compact in self._compact:
            compact.sync(p)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        """Keep a copy of the raw gradients if asked, then zero the pruned positions."""
        if self.keep_raw:
            self.raw_grads = {n: p.grad.detach().clone() for n, p, _, _ in self._pairs
                              if p.grad is not None}
        for _, p, keep, pruned in self._pairs:
            if p.grad is not None and not self._masked_already(p):
                zero_pruned_(p.grad, keep, pruned)
                self._note_masked(p)
        if self.in_step:  # a full gradient of a compact layer's weight, taken in this step
            for p, compact in self._compact:
                if p.grad is not None:
                    compact.add_dense_grad(p.grad)

    def _masked_already(self, p: nn.Parameter) -> bool:
        """A sparse-backend gradient built only at active positions (skips a dense pass)."""
        state = self._sparse.get(id(p))
        return state is not None and state.grad_masked and p.grad is state.grad_buffer

    def _note_masked(self, p: nn.Parameter) -> None:
        state = self._sparse.get(id(p))
        if state is not None and p.grad is state.grad_buffer:
            state.buffer_clean = True

    @torch.no_grad()
    def set_layer(self, name: str, active: Tensor) -> None:
        """Replace the mask of layer ``name`` in place (same shape, bool, True = active).

        Weights and optimizer state are not touched: the caller zeroes what it drops.
        """
        current = self.mask[name]
        if tuple(active.shape) != tuple(current.shape):
            raise ValueError(f"new mask of {name!r} has shape {tuple(active.shape)}, the layer "
                             f"{tuple(current.shape)}")
        current.copy_(active.to(current.device, torch.bool))
        for n, _, keep, pruned in self._pairs:
            if n == name:
                pruned.copy_(~current.to(pruned.device))
                keep.copy_(current.to(keep.device, keep.dtype))

    # Hook interface (see sparseflow.train.hooks) ----------------------------------------------
    def before_step(self, state: object) -> None:
        """The training step's backward may take partial weight gradients (sparse backend); a
        compact layer's weight gradient is cleared (the optimizer does not zero it)."""
        self.in_step = True
        for p, _ in self._compact:
            p.grad = None

    def after_backward(self, state: object) -> None:
        """Mask gradients before anything else sees them."""
        self.apply_to_grads()
        self.in_step = False

    def after_step(self, state: object) -> None:
        """Re-mask weights after the optimizer step."""
        self.apply_to_weights()
