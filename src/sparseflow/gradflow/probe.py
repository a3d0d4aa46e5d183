"""Measure gradient flow on a probe batch without perturbing training.

:func:`measure_gradient_flow` runs a forward and a backward pass of its own, so it must undo
every side effect a forward pass can have, or "measuring on" and "measuring off" would train
different networks. It restores:

- every buffer of the model bitwise (BatchNorm ``running_mean``/``running_var``/
  ``num_batches_tracked`` and any other), including a buffer the forward replaced by a new tensor;
- the global torch RNG state (CPU, and the accelerator devices the model or the data live on),
  which ``nn.Dropout`` draws from;
- the state of every ``torch.Generator`` held as a module attribute (e.g. a seeded dropout's
  ``self.generator``) of the model and of ``loss_fn`` when it is a module;
- each module's ``training`` flag (the probe never changes the mode; this guards against a model
  or loss that does).

The gradient comes from :func:`torch.autograd.grad`, so existing ``.grad`` tensors are never read
or written. Other Python-side state a custom forward may mutate is not restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from sparseflow.gradflow.measures import drop_frozen, gradient_flow, trainable_parameters


def _generators(objs: list[object]) -> list[torch.Generator]:
    """Every distinct torch.Generator held as an attribute of a module of ``objs``."""
    found: dict[int, torch.Generator] = {}
    for obj in objs:
        if not isinstance(obj, nn.Module):
            continue
        for mod in obj.modules():
            for value in vars(mod).values():
                if isinstance(value, torch.Generator):
                    found.setdefault(id(value), value)
    return list(found.values())


def _fork_device_rngs(stack: contextlib.ExitStack, tensors: list[Tensor]) -> None:
    """Fork the global RNG of CPU and of each accelerator device that ``tensors`` live on."""
    by_type: dict[str, set[int]] = {}
    for t in tensors:
        if t.device.type not in ("cpu", "meta"):
            mod = torch.get_device_module(t.device.type)
            index = t.device.index if t.device.index is not None else mod.current_device()
            by_type.setdefault(t.device.type, set()).add(index)
    if not by_type:  # CPU only: devices=[] forks just the CPU state, without touching CUDA
        stack.enter_context(torch.random.fork_rng(devices=[]))
    for device_type, indices in by_type.items():  # each fork also covers the CPU state
        stack.enter_context(torch.random.fork_rng(devices=sorted(indices), device_type=device_type))


@contextlib.contextmanager
def leave_no_trace(
    model: nn.Module, *extra: object, tensors: tuple[Tensor, ...] = ()
) -> Iterator[None]:
    """Context manager restoring buffers, RNG states, generator attributes and modes on exit.

    ``extra`` are other objects (e.g. a loss module) whose generator attributes to restore;
    ``tensors`` are data tensors whose accelerator devices' RNGs to fork as well.
    """
    # (module, buffer name, original tensor object, bitwise copy of its values)
    buffers = [
        (mod, name, buf, buf.clone())
        for mod in model.modules()
        for name, buf in mod._buffers.items()
        if buf is not None
    ]
    gens = _generators([model, *extra])
    gen_states = [g.get_state() for g in gens]
    modes = [(mod, mod.training) for mod in model.modules()]
    params = list(model.parameters()) + list(model.buffers())
    with contextlib.ExitStack() as stack:
        _fork_device_rngs(stack, params + list(tensors))
        try:
            yield
        finally:
            with torch.no_grad():
                for mod, name, original, saved in buffers:
                    mod._buffers[name] = original  # undo a replacement, then the values
                    original.copy_(saved)
            for g, state in zip(gens, gen_states, strict=True):
                g.set_state(state)
            for mod, training in modes:
                mod.training = training


def _chunks(n: int, batch_size: int | None) -> list[slice]:
    """Slices covering ``range(n)`` in order, each of at most ``batch_size`` rows."""
    if batch_size is None or batch_size >= n:
        return [slice(0, n)]
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def probe_gradients(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    include_all: bool = False,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """Name → gradient (float64) of the mean loss on ``(x, y)``, with no trace left on the model.

    See :func:`measure_gradient_flow` for the arguments; this is its gradient half, for callers
    who want the tensors themselves.
    """
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("the probe batch is empty: x has 0 rows")
    if int(y.shape[0]) != n:
        raise ValueError(f"x has {n} rows but y has {int(y.shape[0])}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    params = trainable_parameters(model, include_all)
    if not params:
        raise ValueError("the model has no trainable prunable weight (Linear/Conv) to measure")
    names, tensors = list(params), list(params.values())

    total: list[Tensor] | None = None
    with leave_no_trace(model, loss_fn, tensors=(x, y)), torch.enable_grad():
        for part in _chunks(n, batch_size):
            loss = loss_fn(model(x[part]), y[part])
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise ValueError("loss_fn must return a scalar tensor (the mean loss of its batch)")
            # Mean over the whole batch = Σ_chunks (chunk size / n) · mean over the chunk.
            weight = (part.stop - part.start) / n
            # materialize_grads: a weight unused by the forward has gradient 0, not None.
            grads = torch.autograd.grad(loss * weight, tensors, materialize_grads=True)
            # Accumulate in float64, the precision gradient_flow computes in anyway.
            grads64 = [g.detach().to(torch.float64) for g in grads]
            if total is None:
                total = grads64
            else:
                total = [a + b for a, b in zip(total, grads64, strict=True)]
    assert total is not None  # at least one chunk
    return dict(zip(names, total, strict=True))


def measure_gradient_flow(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    masks: Mapping[str, Tensor] | None = None,
    *,
    include_all: bool = False,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Gradient flow of ``loss_fn(model(x), y)`` at the current weights; training is unaffected.

    Args:
        model: the model, in whatever mode it is in (the trainer calls this in training mode so
            that BatchNorm normalizes with batch statistics, as during training; dropout is then
            active too, drawing from RNG states that are restored afterwards).
        loss_fn: returns the *mean* loss of a batch as a scalar (e.g. ``F.cross_entropy``); pass
            the plain loss, without regularization terms (Evci et al. 2020).
        x, y: the probe batch (a fixed set drawn once per run), on the model's device.
        masks: layer name → bool tensor (a :class:`~sparseflow.sparsity.mask.Mask` works);
            None = dense. Masks of frozen layers (``requires_grad=False``) are ignored, as those
            layers are not measured.
        include_all: measure every trainable parameter, not only the prunable weights.
        batch_size: if smaller than ``len(x)``, forward the probe set in chunks of this many
            rows (to bound memory) and sum the chunks' gradients weighted by chunk size. Without
            BatchNorm that equals the full-batch gradient of the mean loss; with BatchNorm in
            training mode each chunk is normalized with its own batch statistics, so the result
            differs from a single full batch (keep ``batch_size`` fixed across a study).

    Returns:
        :func:`~sparseflow.gradflow.measures.gradient_flow` of the probe gradients.
    """
    grads = probe_gradients(model, loss_fn, x, y, include_all=include_all, batch_size=batch_size)
    return gradient_flow(grads, drop_frozen(model, masks))
