"""The compact layout of a sparse Linear layer: training touches the active weights only.

The ``sparse`` backend computes a layer's products over its active weights, but a training step
still passes over every entry of the dense ``weight``: the optimizer's update of weight and
state, the enforcer's re-masking, the gradient buffer (about 60% of a step at 1% density).
Under ``sparsity.backend: compact`` a layer on the sparse path also holds its active weights as
one vector, :attr:`CompactValues.values` (nnz, in the CSR order of ``W``), and that vector — not
the dense ``weight`` — is what the optimizer, coupled L2 and decoupled decay update
(:func:`~sparseflow.sparsity.backend.trained_parameters` swaps it in). A training step's
forward, backward, gradient, optimizer state and update then cost O(nnz).

The dense ``weight`` stays the layer's parameter for everything that reads a model —
``state_dict`` and checkpoints, probes and gradient-flow measures, evaluation, ``pair`` — as a
mirror kept in step by :meth:`CompactValues.sync` (called by the enforcer after each optimizer
step and by every forward):

- ``values`` changed (the optimizer, decay): they are written into ``weight``'s active
  positions (``index_copy_``, O(nnz)); its pruned entries are never written, so they stay
  exactly 0, which is what the enforcer's re-masking guarantees for the other layouts;
- ``weight`` changed from outside (``load_state_dict`` on resume, the best epoch's restore,
  user code between steps): it is re-masked (one O(numel) pass) and ``values`` read back;
- both changed since the last sync: refused, since one of the two writes would be lost.

Changes are seen by the tensors' version counters, so nothing is compared entry by entry.

A backward that takes the full gradient (the probe's own measurement, a batch-mode probe's
every step, a raw gradient the enforcer is asked to keep) writes ``weight.grad`` as under
``sparse``; inside a training step the enforcer adds its active entries to ``values.grad``.

Limits: the active positions are fixed when the layer is installed — a mask that changes
(dynamic sparse training) is refused by the config and by :meth:`CompactValues.check_layout`
— and the optimizer's state is kept per active weight, so a checkpoint's optimizer state
resumes only into the same mask (which a resumed run rebuilds from its seed and saves).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class CompactLinearFunction(torch.autograd.Function):
    """``x Wᵀ + b`` with ``W`` given by its active ``values`` (CSR order of ``layout``).

    Backward: ``grad_x = grad_y W`` (CSR of ``Wᵀ``, its values ``values[layout.perm_t]``),
    ``grad_values`` = ``grad_yᵀ x`` sampled at the active positions (``sampled_addmm``),
    ``grad_b = Σ grad_y``; nothing of the dense shape is allocated.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, values: Tensor, bias: Tensor | None,
                layout: Any) -> Tensor:
        """x: (N, in), values: (nnz,) → (N, out)."""
        y = torch.sparse.mm(layout.csr(values), x.t().contiguous()).t()  # (out, N) → (N, out)
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(x, values)
        ctx.layout, ctx.has_bias = layout, bias is not None
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        """Gradients of x, values (nnz) and b."""
        x, values = ctx.saved_tensors
        layout = ctx.layout
        gy_t = grad_y.t().contiguous()  # (out, N)
        grad_x = grad_v = grad_b = None
        if ctx.needs_input_grad[0]:
            a_t = layout.csr_t(values.index_select(0, layout.perm_t))
            grad_x = torch.sparse.mm(a_t, gy_t).t()  # (in, N) → (N, in)
        if ctx.needs_input_grad[1]:
            # zeros, not empty: sampled_addmm multiplies the input by beta=0 (NaN·0=NaN)
            pattern = layout.csr(torch.zeros_like(values))
            grad_v = torch.sparse.sampled_addmm(pattern, gy_t, x, beta=0.0).values()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(0)
        return grad_x, grad_v, grad_b, None


class CompactValues:
    """The trained vector of one layer's active weights and its dense mirror (module doc).

    ``values`` is an ``nn.Parameter`` that no module registers (so ``state_dict``, parameter
    counts and ``named_parameters`` see only the dense ``weight``); the optimizer is built over
    it instead of ``weight``.
    """

    def __init__(self, weight: Tensor, active: Tensor, layout: Any) -> None:
        self.layout = layout
        self.active = active  # the Mask's tensor (bool, weight's shape)
        with torch.no_grad():
            weight.masked_fill_(~active.to(weight.device, torch.bool), 0.0)
            self.values = nn.Parameter(weight.reshape(-1).index_select(0, layout.flat).clone())
        self._seen = (weight._version, self.values._version)

    def check_layout(self, layout: Any) -> None:
        """Accept a rebuilt layout only with the same active positions (a resume loads the mask
        in place); a mask whose positions changed cannot keep the optimizer's per-entry state."""
        if not torch.equal(layout.flat.to(self.layout.flat.device), self.layout.flat):
            raise RuntimeError(
                "the mask of a layer under sparsity.backend: compact changed its active "
                "positions; compact keeps them fixed (use sparsity.backend: sparse for masks "
                "that change)")
        self.layout = layout

    @torch.no_grad()
    def sync(self, weight: Tensor) -> None:
        """Bring ``weight`` and ``values`` into agreement after whichever of them changed."""
        w_ver, v_ver = weight._version, self.values._version
        w_changed, v_changed = w_ver != self._seen[0], v_ver != self._seen[1]
        if not (w_changed or v_changed):
            return
        if self.values.device != weight.device:
            raise RuntimeError("a layer under sparsity.backend: compact moved to another "
                               "device after its optimizer was built; build the run on the "
                               "device it trains on")
        if w_changed and v_changed:
            raise RuntimeError(
                "both the dense weight of a layer under sparsity.backend: compact and its "
                "active values changed since they were last in step; under compact the "
                "optimizer trains the values: write the weight only between steps")
        if w_changed:  # from outside: re-mask (rule 3 of the enforcer), read the values back
            weight.masked_fill_(~self.active.to(weight.device, torch.bool), 0.0)
            self.values.copy_(weight.reshape(-1).index_select(0, self.layout.flat))
        else:
            weight.view(-1).index_copy_(0, self.layout.flat, self.values)
        self._seen = (weight._version, self.values._version)

    @torch.no_grad()
    def add_dense_grad(self, grad: Tensor) -> None:
        """Add the active entries of a full (out × in) weight gradient to ``values.grad``."""
        part = grad.reshape(-1).index_select(0, self.layout.flat)
        if self.values.grad is None:
            self.values.grad = part
        else:
            self.values.grad.add_(part)
