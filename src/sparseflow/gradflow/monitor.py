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
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sparseflow.errors import SparseflowError
from sparseflow.gradflow.measures import (
    MEASURES,
    drop_frozen,
    gradient_flow,
    gradients_of,
    trainable_parameters,
)
from sparseflow.prunable import prunable_parameters


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


class GradientFlowMonitor:
    """Records gradient-flow measures of a model's current gradients, step after step.

    Args:
        model: the model being trained.
        mask: a :class:`~sparseflow.sparsity.mask.Mask` or any mapping name → bool tensor
            (True = active); None = dense. Checked against the model here (names, shapes, dtype).
        include_all: measure every trainable parameter (biases, normalization parameters), not
            only the prunable weights; each then counts as a layer in the EGF means.
        log_dir: if given, also write each measure as a TensorBoard scalar ``gradflow/<key>``
            (needs the ``tensorboard`` package; :class:`TensorBoardUnavailableError` otherwise).

    **Decision** on layers without a gradient: a trainable prunable weight whose ``.grad`` is
    None makes :meth:`step` raise ValueError naming it (EGF is a mean over *every* layer, so
    skipping one silently would change the value). Frozen layers (``requires_grad=False``) are
    left out of the measures, their masks ignored. With ``include_all``, non-prunable parameters
    without a gradient are skipped.
    """

    def __init__(
        self,
        model: nn.Module,
        mask: Mapping[str, Tensor] | None = None,
        include_all: bool = False,
        log_dir: str | Path | None = None,
    ) -> None:
        self.model = model
        self.include_all = include_all
        self.mask = None if mask is None else self._checked_mask(model, mask)
        #: One dict per :meth:`step`: ``step`` (int) and every key of :data:`MEASURES` (float).
        self.history: list[dict[str, float]] = []
        self._count = 0
        self._writer = None if log_dir is None else _make_writer(log_dir)

    @staticmethod
    def _checked_mask(model: nn.Module, mask: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The mask as a dict on the parameters' devices; ValueError on a mismatch."""
        params = dict(model.named_parameters())
        params.update(prunable_parameters(model))
        out: dict[str, Tensor] = {}
        for name, m in mask.items():
            if name not in params:
                raise ValueError(
                    f"mask layer {name!r} is not a parameter of the model; prunable weights: "
                    f"{list(prunable_parameters(model))}"
                )
            if not isinstance(m, Tensor) or m.dtype != torch.bool:
                raise ValueError(f"mask of {name!r} must be a bool tensor, got {_describe(m)}")
            if tuple(m.shape) != tuple(params[name].shape):
                raise ValueError(
                    f"mask of {name!r} has shape {tuple(m.shape)} but the parameter has "
                    f"{tuple(params[name].shape)}"
                )
            out[name] = m.to(params[name].device)  # moved once, not at every step
        return out

    def step(self, step: int | None = None) -> dict[str, Any]:
        """Measure the current ``.grad``s, record them, and return the measures.

        Args:
            step: the step number to record (e.g. your global iteration); by default the number
                of previous calls (0, 1, 2, ...).

        Returns:
            :func:`~sparseflow.gradflow.measures.gradient_flow`'s dict (with ``per_layer``) plus
            ``step``.
        """
        grads = gradients_of(self.model, include_all=self.include_all)
        result = gradient_flow(grads, drop_frozen(self.model, self.mask))
        number = self._count if step is None else int(step)
        self._count += 1
        record: dict[str, float] = {"step": number, **{k: result[k] for k in MEASURES}}
        self.history.append(record)
        if self._writer is not None:
            for key in MEASURES:
                self._writer.add_scalar(f"gradflow/{key}", result[key], number)
        return {"step": number, **result}

    __call__ = step

    @property
    def latest(self) -> dict[str, float] | None:
        """The last recorded measures (``step`` and :data:`MEASURES`), or None before any step."""
        return self.history[-1] if self.history else None

    def average(self, key: str) -> float:
        """Mean of measure ``key`` (one of :data:`MEASURES`) over every recorded step."""
        if key not in MEASURES:
            raise ValueError(f"unknown measure {key!r}; measures: {', '.join(MEASURES)}")
        if not self.history:
            raise ValueError("no step recorded yet: call step() after loss.backward()")
        return sum(r[key] for r in self.history) / len(self.history)

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any (the history stays readable)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> GradientFlowMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        n_layers = len(trainable_parameters(self.model, self.include_all))
        return f"GradientFlowMonitor({n_layers} layers, {len(self.history)} steps recorded)"


def _describe(value: object) -> str:
    """Type (and dtype for tensors) of ``value``, for error messages."""
    return f"tensor of {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
