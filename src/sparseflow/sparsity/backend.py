"""Sparse execution of masked Linear layers: forward and backward cost the active weights.

A masked Linear layer normally computes ``x Wᵀ`` with the full dense ``W`` (pruned entries are
zero), so a sparse run pays its full width. :func:`install_backend` swaps the class of chosen
``nn.Linear`` modules to :class:`SparseLinear` (a subclass: parameters, ``state_dict`` keys,
``isinstance`` checks, masks, the enforcer, optimizers and checkpoints stay exactly as they
were). Its forward goes through :class:`SparseLinearFunction`:

- forward ``y = x Wᵀ + b`` with a CSR matrix of the active entries (``torch.sparse.mm``);
- ``grad_x = grad_y W`` with the CSR matrix of ``Wᵀ``;
- ``grad_W`` only at the active positions, by ``torch.sparse.sampled_addmm`` (``grad_yᵀ x``
  sampled at the mask), scattered into a dense zero gradient of ``W``'s shape.

Pruned positions of ``grad_W`` are then 0 instead of their raw value. That is all the optimizer
needs (the enforcer masks them anyway), but not what the unmasked measures and RigL's grow score
read. So the partial gradient is taken only inside a training step (between the enforcer's
``before_step`` and ``after_backward``) when the enforcer is not asked to keep the raw
gradient; every other backward (the probe's own measurement, dynamic sparsity's updates, user
code, ``dense_grads=True``) computes the full ``grad_yᵀ x``.

The CSR indices are built from the mask and cached; a mask rewritten in place (dynamic sparse
training, resume) bumps the mask tensor's version counter, and the next forward rebuilds them.

Under ``compact`` (:mod:`sparseflow.sparsity.compact`) the layers on the sparse path also train
their active weights as one vector: the optimizer's update and state, the gradient and the
re-masking then cost the active weights too, not only the products.

Results equal the masked dense layer's up to float32 summation order (not bitwise).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sparseflow.sparsity.compact import CompactLinearFunction, CompactValues
from sparseflow.sparsity.mask import Mask

# torch announces once per process that CSR support is "in beta"; the operations used here
# are tested against masked dense, so the notice would only alarm a user reading a run's log.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state",
                        category=UserWarning)

Backend = Literal["auto", "masked", "sparse", "compact"]

#: ``auto`` picks the sparse path for a Linear layer at or below this density (CPU only).
#: From ``benchmarks/bench_sparse_step.py`` (forward + backward of one 3,076 × 3,076 layer,
#: batch 128, 1 thread as a study worker computes): sparse / masked time 0.29 at 1%, 0.67 at
#: 5%, 0.80 at 10%, 1.47 at 25%; a constant, so that a run's path (and its last bits) never
#: depends on the machine's load.
AUTO_MAX_DENSITY = 0.10
#: ... and only for layers with at least this many weights (smaller ones are cheap dense, and
#: the sparse kernels' fixed costs dominate).
AUTO_MIN_NUMEL = 1 << 16


@dataclass
class Layout:
    """CSR indices of one layer's active weights, for ``W`` (out × in) and for ``Wᵀ``.

    ``flat`` / ``flat_t``: int64 positions in ``W.reshape(-1)`` of the CSR values of ``W`` /
    ``Wᵀ`` (row-major order of each); ``crow``/``col`` and ``crow_t``/``col_t``: the CSR
    row pointers and column indices; :attr:`perm_t` (built on first use): where each value of
    ``Wᵀ`` sits in ``W``'s value order (``values_t = values[perm_t]``, the compact layout's
    transpose).
    """

    shape: tuple[int, int]
    flat: Tensor
    crow: Tensor
    col: Tensor
    flat_t: Tensor
    crow_t: Tensor
    col_t: Tensor

    @cached_property
    def perm_t(self) -> Tensor:
        """Where each value of ``Wᵀ`` sits in ``W``'s value order (int64, nnz).

        Only the compact layout reads it; built on first use, since a dynamic mask rebuilds
        the layout at every update and the sparse path never needs it.
        """
        return torch.searchsorted(self.flat, self.flat_t)

    @classmethod
    def from_mask(cls, active: Tensor, device: torch.device) -> Layout:
        """The layout of a bool ``active`` mask (out × in) on ``device``."""
        out_f, in_f = active.shape
        m = active.to(device=device, dtype=torch.bool)
        flat = m.reshape(-1).nonzero().squeeze(1)
        rows, col = flat // in_f, flat % in_f
        flat_tt = m.t().reshape(-1).nonzero().squeeze(1)  # positions in Wᵀ (in × out)
        rows_t, col_t = flat_tt // out_f, flat_tt % out_f
        # int32 CSR indices when they fit: int64 ones are converted on every product on CPU
        # (measured: the forward product 20x slower).
        idx = torch.int32 if active.numel() < 2**31 else torch.int64
        flat_t = col_t * in_f + rows_t
        return cls(shape=(out_f, in_f), flat=flat, crow=_crow(rows, out_f).to(idx),
                   col=col.to(idx), flat_t=flat_t, crow_t=_crow(rows_t, in_f).to(idx),
                   col_t=col_t.to(idx))

    def csr(self, values: Tensor) -> Tensor:
        """``W`` as a CSR tensor with ``values`` (in ``flat`` order)."""
        return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape,
                                       check_invariants=False)

    def csr_t(self, values: Tensor) -> Tensor:
        """``Wᵀ`` as a CSR tensor with ``values`` (in ``flat_t`` order)."""
        return torch.sparse_csr_tensor(self.crow_t, self.col_t, values,
                                       (self.shape[1], self.shape[0]), check_invariants=False)


def _crow(rows: Tensor, n_rows: int) -> Tensor:
    """CSR row pointers (n_rows + 1) of sorted row indices."""
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return crow


class SparseLinearFunction(torch.autograd.Function):
    """``x Wᵀ + b`` over the active entries of ``W``; see the module doc for the backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, layout: Layout,
                partial: bool, store: _LayerState | None = None) -> Tensor:
        """x: (N, in) → (N, out). ``partial``: compute ``grad_W`` at active positions only;
        with a ``store`` it is written into ``weight.grad`` itself (see :meth:`_grad_in_place`),
        else returned as a fresh dense tensor."""
        a = layout.csr(weight.reshape(-1).index_select(0, layout.flat))
        y = torch.sparse.mm(a, x.t().contiguous()).t()  # (out, N) → (N, out)
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(x, weight)
        ctx.layout, ctx.partial, ctx.has_bias = layout, partial, bias is not None
        ctx.store, ctx.weight = store, weight
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        """Gradients of x, W (dense shape; partial: zero off the mask) and b."""
        x, weight = ctx.saved_tensors
        layout: Layout = ctx.layout
        gy_t = grad_y.t().contiguous()  # (out, N)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            a_t = layout.csr_t(weight.reshape(-1).index_select(0, layout.flat_t))
            grad_x = torch.sparse.mm(a_t, gy_t).t()  # (in, N) → (N, in)
        if ctx.needs_input_grad[1]:
            if ctx.partial:
                # zeros, not empty: sampled_addmm multiplies the input by beta=0 (NaN·0=NaN)
                pattern = layout.csr(torch.zeros(layout.flat.numel(), dtype=weight.dtype,
                                                 device=weight.device))
                values = torch.sparse.sampled_addmm(pattern, gy_t, x, beta=0.0).values()
                if ctx.store is not None:
                    SparseLinearFunction._grad_in_place(ctx.weight, ctx.store, layout, values)
                else:
                    grad_w = torch.zeros_like(weight)
                    grad_w.view(-1).index_copy_(0, layout.flat, values)
            else:
                grad_w = gy_t @ x  # (out, in): the raw gradient, pruned positions too
                if ctx.store is not None:  # it may land in the buffer: no longer masked
                    ctx.store.buffer_clean = ctx.store.grad_masked = False
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(0)
        return grad_x, grad_w, grad_b, None, None, None

    @staticmethod
    def _grad_in_place(weight: Tensor, store: _LayerState, layout: Layout,
                       values: Tensor) -> None:
        """Put the active-position gradient ``values`` into ``weight.grad`` without a fresh
        dense allocation per step (a new (out × in) zero tensor costs page faults, as much as
        the sparse products at 1% density).

        The layer keeps one gradient buffer, known to be 0 at every pruned position while
        ``store.buffer_clean`` (cleared by a mask change or a dense backward; the enforcer
        sets it again when it masks the buffer). When ``weight.grad`` is None (``zero_grad``
        set it so) the buffer becomes the gradient — zeroed in full first unless clean — so
        the gradient is exactly masked already and the enforcer may skip masking it
        (``store.grad_masked``). Otherwise the values are added to the gradient there.
        Autograd gets None for ``W`` (so hooks on the weight's accumulated gradient do not fire
        on these steps).
        """
        grad = weight.grad
        if grad is None:
            buf = store.grad_buffer
            if buf is None or buf.shape != weight.shape or buf.device != weight.device:
                buf = store.grad_buffer = torch.zeros_like(weight)
            elif not store.buffer_clean:
                buf.zero_()
            store.buffer_clean = store.grad_masked = True
            buf.view(-1).index_copy_(0, layout.flat, values)
            weight.grad = buf
        else:
            grad.view(-1).index_add_(0, layout.flat, values)
            store.grad_masked = store.grad_masked and grad is store.grad_buffer


class _LayerState:
    """What a :class:`SparseLinear` keeps: its mask tensor, the cached layout, who may allow
    partial weight gradients (the enforcer, attached by it) and, under ``compact``, the trained
    vector of its active weights."""

    def __init__(self, active: Tensor, dense_grads: bool) -> None:
        self.active = active  # the Mask's tensor itself: rewritten in place by set_layer
        self.dense_grads = dense_grads
        self.layout: Layout | None = None
        self.version = -1
        self.enforcer: Any = None  # a MaskEnforcer; it attaches itself
        self.grad_buffer: Tensor | None = None  # reused as weight.grad on partial steps
        self.buffer_clean = False  # the buffer is 0 at every pruned position
        self.grad_masked = False  # weight.grad is the clean buffer plus partial gradients only
        self.compact: CompactValues | None = None

    def layout_on(self, device: torch.device) -> Layout:
        """The cached layout, rebuilt when the mask changed (or the device did)."""
        v = self.active._version
        lay = self.layout
        if lay is None or v != self.version or lay.flat.device != device:
            self.layout, self.version = Layout.from_mask(self.active, device), v
            self.buffer_clean = self.grad_masked = False  # positions pruned now may hold values
            if self.compact is not None:
                self.compact.check_layout(self.layout)
        assert self.layout is not None
        return self.layout

    def partial(self) -> bool:
        """Whether this backward may skip the pruned positions of ``grad_W``."""
        enf = self.enforcer
        return (not self.dense_grads and enf is not None and enf.in_step
                and not enf.keep_raw)


class SparseLinear(nn.Linear):
    """An ``nn.Linear`` whose forward/backward go through :class:`SparseLinearFunction`.

    Never constructed directly: :func:`install_backend` swaps the class of an existing
    module (its parameters stay where they are); :func:`uninstall_backend` swaps it back.
    """

    _sparse: _LayerState

    def forward(self, x: Tensor) -> Tensor:
        """``x Wᵀ + b`` for ``x`` of shape (..., in). Under ``compact`` a training step's
        backward reaches the trained values, any other the dense weight (its mirror)."""
        state = self._sparse
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        layout = state.layout_on(self.weight.device)
        partial = state.partial()
        compact = state.compact
        if compact is not None:
            compact.sync(self.weight)
            if partial:
                y = CompactLinearFunction.apply(x2, compact.values, self.bias, layout)
                return y.reshape(*lead, self.out_features)
            partial = False  # the full gradient lands in weight.grad (the enforcer adds it)
        y = SparseLinearFunction.apply(x2, self.weight, self.bias, layout, partial, state)
        return y.reshape(*lead, self.out_features)


def choose_layers(model: nn.Module, mask: Mask, backend: Backend,
                  device: torch.device) -> list[str]:
    """The masked Linear layers (weight names) that ``backend`` runs sparse.

    ``masked``: none. ``sparse``, ``compact``: every masked Linear. ``auto``: on CPU, the
    masked Linear layers of density ≤ :data:`AUTO_MAX_DENSITY` with ≥ :data:`AUTO_MIN_NUMEL`
    weights; on any other device none, since the crossover was measured on CPU only (cuBLAS
    dense matmuls are far faster relative to cuSPARSE, so the CPU rule would mislead).
    Convolutions stay masked.
    """
    if backend == "masked":
        return []
    names = [f"{n}.weight" if n else "weight" for n, mod in model.named_modules()
             if type(mod) in (nn.Linear, SparseLinear)]
    names = [n for n in names if n in mask]
    if backend in ("sparse", "compact"):
        return names
    if device.type != "cpu":
        return []
    return [n for n in names
            if mask.density(n) <= AUTO_MAX_DENSITY and mask.total(n) >= AUTO_MIN_NUMEL]


def install_backend(model: nn.Module, mask: Mask | None, backend: Backend,
                    device: torch.device, *, dense_grads: bool = False,
                    static: bool = False) -> list[str]:
    """Run the layers :func:`choose_layers` picks on the sparse path; returns their names.

    Call after the mask is final and before the :class:`~sparseflow.sparsity.MaskEnforcer`
    and the optimizer are built (the enforcer attaches itself to these layers; the optimizer
    must be built over :func:`trained_parameters`). ``dense_grads``: always compute the full
    weight gradient (a probe that reads every step's raw gradient). ``static``: the mask never
    changes its positions, so ``auto`` puts its layers in the compact layout (``compact``
    always does; ``sparse`` never).
    """
    if mask is None:
        return []
    chosen = choose_layers(model, mask, backend, device)
    modules = dict(model.named_modules())
    for name in chosen:
        mod = modules[name.removesuffix(".weight") if name != "weight" else ""]
        mod.__class__ = SparseLinear
        mod._sparse = state = _LayerState(mask[name], dense_grads)
        if backend == "compact" or (backend == "auto" and static):
            state.compact = CompactValues(mod.weight, mask[name], state.layout_on(device))
    if chosen:
        # CSR tensors are 'beta' in torch; the warning says nothing a user can act on.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    return chosen


def trained_parameters(model: nn.Module, params: Iterable[Tensor] | None = None) -> list[Tensor]:
    """``params`` (default: the model's parameters) as the optimizer and the regularizers must
    see them: the dense weight of each compact layer replaced by its trained values vector."""
    swap = {id(m.weight): m._sparse.compact.values for m in model.modules()
            if type(m) is SparseLinear and m._sparse.compact is not None}
    return [swap.get(id(p), p) for p in (model.parameters() if params is None else params)]


def uninstall_backend(model: nn.Module) -> None:
    """Back to plain ``nn.Linear`` everywhere (same parameters; a compact layer's trained
    values are written into its weight first)."""
    for mod in model.modules():
        if type(mod) is SparseLinear:
            if mod._sparse.compact is not None:
                mod._sparse.compact.sync(mod.weight)
            mod.__class__ = nn.Linear
            del mod._sparse


def sparse_layers(model: nn.Module) -> dict[str, SparseLinear]:
    """Weight name → :class:`SparseLinear` module, for the layers on the sparse path."""
    return {f"{n}.weight" if n else "weight": m for n, m in model.named_modules()
            if type(m) is SparseLinear}
