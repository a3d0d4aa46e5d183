"""Watch gradient flow (EGF and the standard measures) inside your own training loop.

Call :meth:`GradientFlowMonitor.step` after ``loss.backward()`` and before ``optimizer.step()``
(and before any code that masks the gradients, if the unmasked ``gf1``/``gf2`` should see the raw
gradient). It only reads ``.grad``; it changes nothing.

Example::

    import torch
    from sparseflow.gradflow import GradientFlowMonitor
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    mask = {n: torch.rand(p.shape) < 0.3 for n, p in model.named_parameters() if p.dim() > 1}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = GradientFlowMonitor(model, mask=mask)  # mask: name -> bool tensor, True = active
    for _ in range(5):
        x, y = torch.randn(32, 20), torch.randint(0, 3, (32,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        mon.step()  # reads .grad, records gf1, gf2, egf1, egf2, ...
        opt.step()
    print(f"EGF2 last {mon.latest['egf2']:.4f}, average {mon.average('egf2'):.4f}")
    mon.close()

(The example measures a random mask without applying it to the weights; in a real sparse run,
zero the pruned weights and their gradients too, e.g. with ``sparseflow.sparsity``.)

Models pruned with ``torch.nn.utils.prune`` or ``torch.ao.pruning`` need no ``mask``: the monitor
finds their masks itself; ``mon.layers`` lists what it measures (see
:mod:`sparseflow.gradflow.layers`; ``include=``/``exclude=``/``embeddings=`` choose). In a long
run, ``every=10`` or ``measures="cheap"`` keep the cost small; with mixed precision pass
``scaler=`` (your ``GradScaler``); with gradient accumulation call ``step()`` after every
micro-batch with ``accumulation_steps=K``, or only before ``optimizer.step()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sparseflow.errors import SparseflowError
from sparseflow.gradflow.cheap import CHEAP_MEASURES, ActiveIndices, cheap_norms, cheap_record
from sparseflow.gradflow.layers import Layer, LayerFilter, NoLayersError, discover_layers
from sparseflow.gradflow.measures import MEASURES, gradient_flow
from sparseflow.gradflow.scaling import already_unscaled, divide_norms

#: ``measures=`` values.
MEASURE_MODES = ("all", "cheap")


class TensorBoardUnavailableError(SparseflowError, ImportError):
    """``log_dir`` was given but the ``tensorboard`` package is not installed."""


def _make_writer(log_dir: str | Path) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``, or a clear error."""
    try:
        import tensorboard  # noqa: F401  (SummaryWriter needs it; import it first to say so)
    except ImportError as exc:
        raise TensorBoardUnavailableError(
            "GradientFlowMonitor(log_dir=...) writes TensorBoard logs and needs the tensorboard "
            "package: pip install tensorboard (or leave log_dir=None)"
        ) from exc
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class GradientFlowMonitor:
    """Records gradient-flow measures of a model's current gradients, step after step.

    Args:
        model: the model being trained: any ``nn.Module``; the measured layers are found by
            :func:`~sparseflow.gradflow.layers.discover_layers` and listed in :attr:`layers`.
        mask: a :class:`~sparseflow.sparsity.mask.Mask` or any mapping layer name → bool tensor
            (True = active); None = dense, or the masks of ``torch.nn.utils.prune`` /
            ``torch.ao.pruning`` found on the model. A given mask wins over a found one.
            Checked against the model here (names, shapes, dtype).
        include_all: measure every trainable parameter (biases, normalization parameters), not
            only the weights; each then counts as a layer in the EGF means.
        log_dir: if given, also write each measure as a TensorBoard scalar ``gradflow/<key>``
            and each layer's norms as ``gradflow_layer/<layer>/norm2`` (and ``norm1``) (needs
            the ``tensorboard`` package; :class:`TensorBoardUnavailableError` otherwise).
        include, exclude: keep / drop layers by glob on the layer or module name
            (``"encoder.*"``) or by a callable on the module name.
        embeddings: count ``nn.Embedding`` weights as layers.
        every: measure on every ``every``-th optimizer step only (the others return at once).
        accumulation_steps: :meth:`step` is called after every micro-batch's backward; only
            every ``accumulation_steps``-th call (the optimizer step, when the gradient is fully
            accumulated) measures.
        measures: ``"all"`` (every key of :data:`MEASURES`, exact float64 sums) or ``"cheap"``
            (only :data:`CHEAP_MEASURES`, from fused ``torch._foreach_norm`` calls in the
            gradient's dtype, kept on the device until :attr:`history`/:attr:`latest` is read).
        scaler: a ``torch.amp.GradScaler`` whose scale the gradients carry (see :meth:`step`).
        on_measure: called as ``on_measure(scalars, step)`` after each measured step with a flat
            dict ``{"gradflow/egf2": ..., "gradflow_layer/<layer>/norm2": ...}``: fits
            ``wandb.log``/``mlflow.log_metrics``-style loggers.

    **Decision** on layers without a gradient: a trainable weight whose ``.grad`` is None makes
    :meth:`step` raise ValueError naming it (EGF is a mean over *every* layer, so skipping one
    silently would change the value). Frozen layers (``requires_grad=False``) are left out of the
    measures, their masks ignored. With ``include_all``, other parameters without a gradient are
    skipped.

    **Mixed precision**: with a scaler, the monitor measures the scaled gradients and divides
    every norm by ``scaler.get_scale()`` (norms are linear in the gradient, so this equals
    measuring the unscaled gradient, without touching ``.grad``). If ``scaler.unscale_(opt)``
    already ran this step (e.g. to clip), the monitor sees it in the scaler's state and does not
    divide again. A step whose gradients hold inf/NaN is not recorded, as the scaler skips its
    optimizer step; its number goes to :attr:`skipped`.
    """

    def __init__(
        self,
        model: nn.Module,
        mask: Mapping[str, Tensor] | None = None,
        include_all: bool = False,
        log_dir: str | Path | None = None,
        *,
        include: LayerFilter = None,
        exclude: LayerFilter = None,
        embeddings: bool = False,
        every: int = 1,
        accumulation_steps: int = 1,
        measures: str = "all",
        scaler: Any = None,
        on_measure: Callable[[dict[str, float], int], object] | None = None,
    ) -> None:
        if measures not in MEASURE_MODES:
            raise ValueError(f"measures must be one of {MEASURE_MODES}, got {measures!r}")
        self.model = model
        self.include_all = include_all
        self.every = _positive_int("every", every)
        self.accumulation_steps = _positive_int("accumulation_steps", accumulation_steps)
        self.measures = measures
        self.scaler = scaler
        self.on_measure = on_measure
        found = discover_layers(model, include, exclude, embeddings, include_all)
        self.mask = None if mask is None else self._checked_mask(model, found, mask)
        #: The measured layers, in model order (name, parameter, shape, kind, mask source, ...).
        self.layers: list[Layer] = [self._with_user_mask(layer) for layer in found]
        #: Step numbers whose gradients held inf/NaN under a scaler (not recorded).
        self.skipped: list[int] = []
        self._history: list[dict[str, float]] = []
        # Cheap mode, not yet read: (step, layer names, (2, L) norms, scale, scaler).
        self._pending: list[tuple[int, list[str], Tensor, Any, Any]] = []
        self._calls = 0
        self._active = ActiveIndices()
        self._writer = None if log_dir is None else _make_writer(log_dir)

    # -- masks -------------------------------------------------------------------------------

    @staticmethod
    def _checked_mask(
        model: nn.Module, layers: list[Layer], mask: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        """The mask keyed by layer name, on the parameters' devices; ValueError on a mismatch.

        A key may be the layer name, its trained parameter's name (``fc.weight_orig``) or any
        other name of a tied weight.
        """
        by_id = {id(layer.param): layer for layer in layers}
        alias = {layer.parameter: layer for layer in layers} | {x.name: x for x in layers}
        params = dict(model.named_parameters(remove_duplicate=False))
        out: dict[str, Tensor] = {}
        for key, m in mask.items():
            layer = alias.get(key) or (by_id.get(id(params[key])) if key in params else None)
            if layer is None:
                if key in params:
                    raise ValueError(
                        f"mask layer {key!r} is a parameter but not a measured layer; measured: "
                        f"{[x.name for x in layers]}; add it with include_all=True or include=..."
                    )
                raise ValueError(
                    f"mask layer {key!r} is not a parameter of the model; measured layers: "
                    f"{[x.name for x in layers]}"
                )
            if not isinstance(m, Tensor) or m.dtype != torch.bool:
                raise ValueError(f"mask of {key!r} must be a bool tensor, got {_describe(m)}")
            if tuple(m.shape) != layer.shape:
                raise ValueError(
                    f"mask of {key!r} has shape {tuple(m.shape)} but the parameter has "
                    f"{layer.shape}"
                )
            out[layer.name] = m.to(layer.param.device)  # moved once, not at every step
        return out

    def _with_user_mask(self, layer: Layer) -> Layer:
        if self.mask is None or layer.name not in self.mask:
            return layer
        m = self.mask[layer.name]
        return Layer(layer.name, layer.parameter, layer.module, layer.shape, layer.kind, "mask",
                     layer.prunable, layer.param, lambda: m)  # fmt: skip

    # -- measuring ---------------------------------------------------------------------------

    def _due(self) -> int | None:
        """Count this call; the optimizer-step index if this call measures, else None."""
        self._calls += 1
        if self._calls % self.accumulation_steps:
            return None  # mid-accumulation: the gradient is not complete yet
        opt_step = self._calls // self.accumulation_steps - 1
        return opt_step if opt_step % self.every == 0 else None

    def _gradients(self) -> tuple[list[Layer], list[Tensor]]:
        """The trainable layers with a gradient and their gradients; ValueError on a missing one."""
        layers = [layer for layer in self.layers if layer.param.requires_grad]
        missing = [x.name for x in layers if x.prunable and x.param.grad is None]
        if missing:
            raise ValueError(
                f"layers {missing} have no gradient (.grad is None); call loss.backward() first, "
                "or freeze unused layers with requires_grad_(False)"
            )
        layers = [layer for layer in layers if layer.param.grad is not None]
        if not layers:
            raise NoLayersError("no measured layer is trainable (all have requires_grad=False)")
        return layers, [layer.param.grad.detach() for layer in layers]

    def _scale(self, scaler: Any) -> Any:
        """The factor the gradients carry now: 1.0, a float, or (cheap mode) a 0-d tensor."""
        if scaler is None or already_unscaled(scaler):
            return 1.0
        scale = getattr(scaler, "_scale", None)
        if self.measures == "cheap" and isinstance(scale, Tensor):
            return scale.detach().clone()  # no host sync; clone: update() changes it in place
        return scaler.get_scale()

    def step(self, step: int | None = None, scaler: Any = None) -> dict[str, Any] | None:
        """Measure the current ``.grad``s (if this call is due), record them, return them.

        Call after ``loss.backward()`` (``scaler.scale(loss).backward()``) and before
        ``optimizer.step()``; with gradient accumulation, after every micro-batch (with
        ``accumulation_steps=K``) or only before each optimizer step (with the default 1).

        Args:
            step: the step number to record (e.g. your global iteration); by default the index
                of the optimizer step (0, 1, 2, ...: calls counted, divided by
                ``accumulation_steps``).
            scaler: the ``GradScaler`` of this step (overrides the constructor's).

        Returns:
            None when this call does not measure (``every``, ``accumulation_steps``), when the
            step is skipped (inf/NaN under a scaler) and in cheap mode (read :attr:`latest`);
            else :func:`~sparseflow.gradflow.measures.gradient_flow`'s dict (with ``per_layer``,
            unscaled) plus ``step``.
        """
        index = self._due()
        if index is None:
            return None
        number = index if step is None else int(step)
        use_scaler = self.scaler if scaler is None else scaler
        if use_scaler is not None and not use_scaler.is_enabled():
            use_scaler = None  # a disabled scaler neither scales nor skips steps
        layers, grads = self._gradients()
        scale = self._scale(use_scaler)
        if self.measures == "cheap":
            self._measure_cheap(number, layers, grads, scale, use_scaler)
            return None
        return self._measure_all(number, layers, grads, scale, use_scaler)

    def _measure_all(self, number: int, layers: list[Layer], grads: list[Tensor], scale: Any,
                     scaler: Any) -> dict[str, Any] | None:  # fmt: skip
        """Every measure, exact (float64 sums); recorded and returned unless skipped."""
        names = [layer.name for layer in layers]
        masks = {layer.name: m for layer in layers if (m := layer.mask()) is not None}
        result = gradient_flow(dict(zip(names, grads, strict=True)), masks)
        if scaler is not None and not all(math.isfinite(result[k]) for k in ("gf1", "gf2")):
            self.skipped.append(number)  # the scaler skips this optimizer step too
            return None
        if scale != 1.0:
            divide_norms(result, float(scale))
        record: dict[str, float] = {"step": number, **{k: result[k] for k in MEASURES}}
        self._record(record, result["per_layer"])
        return {"step": number, **result}

    def _measure_cheap(self, number: int, layers: list[Layer], grads: list[Tensor], scale: Any,
                       scaler: Any) -> None:  # fmt: skip
        """Per-layer L2 norms, left on the device (read by :attr:`history`, or now if logged)."""
        names = [layer.name for layer in layers]
        norms = cheap_norms(layers, grads, self._active(layers))
        self._pending.append((number, names, norms, scale, scaler))
        if self._writer is not None or self.on_measure is not None:
            self._flush()

    __call__ = step

    def _flush(self) -> None:
        """Bring the cheap mode's pending norms to the host (one transfer each) and record them."""
        pending, self._pending = self._pending, []
        for number, names, norms, scale, scaler in pending:
            raw, masked = norms.to(torch.float64).cpu().tolist()
            if scaler is not None and not all(math.isfinite(v) for v in raw):
                self.skipped.append(number)
                continue
            s = float(scale)
            raw, masked = [v / s for v in raw], [v / s for v in masked]
            record = cheap_record(number, raw, masked)
            self._record(record, {n: {"norm2": v} for n, v in zip(names, masked, strict=True)})

    def _record(self, record: dict[str, float], per_layer: Mapping[str, Mapping[str, Any]]) -> None:
        self._history.append(record)
        if self._writer is None and self.on_measure is None:
            return
        number = int(record["step"])
        scalars = {f"gradflow/{k}": v for k, v in record.items() if k != "step"}
        for name, values in per_layer.items():
            for key in ("norm1", "norm2"):
                if key in values:
                    scalars[f"gradflow_layer/{name}/{key}"] = values[key]
        if self._writer is not None:
            for tag, value in scalars.items():
                self._writer.add_scalar(tag, value, number)
        if self.on_measure is not None:
            self.on_measure(scalars, number)

    # -- reading -----------------------------------------------------------------------------

    @property
    def history(self) -> list[dict[str, float]]:
        """One dict per measured step: ``step`` and every key of :data:`MEASURES` (or of
        :data:`CHEAP_MEASURES` in cheap mode), as floats."""
        if self._pending:
            self._flush()
        return self._history

    @property
    def measured(self) -> int:
        """How many steps were measured so far, without reading any value (no host sync in
        cheap mode): the length :attr:`history` will have."""
        return len(self._history) + len(self._pending)

    @property
    def keys(self) -> tuple[str, ...]:
        """The measure keys this monitor records."""
        return CHEAP_MEASURES if self.measures == "cheap" else MEASURES

    @property
    def latest(self) -> dict[str, float] | None:
        """The last recorded measures (``step`` and :attr:`keys`), or None before any step."""
        history = self.history
        return history[-1] if history else None

    def average(self, key: str) -> float:
        """Mean of measure ``key`` (one of :attr:`keys`) over every recorded step."""
        if key not in self.keys:
            raise ValueError(f"unknown measure {key!r}; measures: {', '.join(self.keys)}")
        history = self.history
        if not history:
            raise ValueError("no step recorded yet: call step() after loss.backward()")
        return sum(r[key] for r in history) / len(history)

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any (the history stays readable)."""
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None

    def __enter__(self) -> GradientFlowMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GradientFlowMonitor({len(self.layers)} layers, {len(self.history)} steps recorded)"


def _describe(value: object) -> str:
    """Type (and dtype for tensors) of ``value``, for error messages."""
    return f"tensor of {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
