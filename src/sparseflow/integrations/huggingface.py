"""Gradient flow in a Hugging Face ``transformers.Trainer``: :class:`GradientFlowCallback`.

Example::

    from transformers import Trainer
    from sparseflow.integrations.huggingface import GradientFlowCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[GradientFlowCallback(mask=mask)])
    trainer.train()  # logs gradflow/egf2, gradflow/gf2, ... with the Trainer's logs

**When it measures**: once per optimizer step, right after the backward pass of the step's
last accumulated batch (``gradient_accumulation_steps``: the accumulated gradient) and *before*
gradient clipping (``max_grad_norm``). No Trainer event fires there — ``on_pre_optimizer_step``
comes *after* clipping (transformers documents it so) — so the callback registers a
post-accumulate-grad hook on the model's parameters that queues one measurement at the end of
each backward pass and measures when accelerate marks the batch as the one that syncs
gradients (the last of the accumulation). Hence, with clipping on, ``gradflow/gf2`` (with
``include_all=True``) equals the Trainer's own ``grad_norm``, the norm before clipping.

**Logging**: the measures of the optimizer steps since the previous log are averaged and added
to the Trainer's log (``trainer.state.log_history`` and the ``logs`` that callbacks after this
one receive) as ``gradflow/<measure>``. The reporters of ``report_to`` are callbacks added
before user callbacks; to have them receive the measures too, put this callback first:
``trainer.callback_handler.callbacks.insert(0, callback)``.

**fp16 with a gradient scaler**: the gradients are still scaled when the callback measures
(accelerate unscales them inside clipping, later), so it hands the optimizer's scaler to
:meth:`~sparseflow.gradflow.GradientFlowMonitor.step`, which divides every norm by the scale and
skips a step with inf/NaN gradients as the scaler does.
"""

from __future__ import annotations

from typing import Any

import torch

from sparseflow.gradflow import MEASURES, GradientFlowMonitor
from sparseflow.integrations import missing

try:
    import transformers
except ImportError as exc:
    raise missing("transformers", "hf") from exc

#: Prefix of the logged keys.
PREFIX = "gradflow/"


def _syncs_gradients() -> bool:
    """Whether the current backward is the last of its accumulation (accelerate's flag)."""
    try:
        from accelerate.state import GradientState
    except ImportError:  # no accelerate: no accumulation bookkeeping to consult
        return True
    return bool(GradientState().sync_gradients)


class GradientFlowCallback(transformers.TrainerCallback):
    """Measures gradient flow at every optimizer step of a ``Trainer``, before clipping.

    Args:
        **monitor_kwargs: passed to :class:`~sparseflow.gradflow.GradientFlowMonitor`
            (``mask``, ``include_all``, ``log_dir``, ...).

    Attributes:
        monitor: the :class:`~sparseflow.gradflow.GradientFlowMonitor` of the current training
            (None before ``train``); its step numbers are the Trainer's ``global_step`` before
            the update (0 for the first).
    """

    def __init__(self, **monitor_kwargs: Any) -> None:
        self.monitor_kwargs = monitor_kwargs
        self.monitor: GradientFlowMonitor | None = None
        self._state: Any = None
        self._handles: list[Any] = []
        self._queued = False
        self._logged = 0  # monitor records already averaged into a log entry
        self._scaler: Any = None

    # Trainer events ------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Build the monitor on the model and hook its parameters' gradient accumulation."""
        model = kwargs["model"]
        self.monitor = GradientFlowMonitor(model, **self.monitor_kwargs)
        self._logged = 0
        self._state = state
        self._remove_hooks()
        for param in model.parameters():
            if param.requires_grad:
                self._handles.append(param.register_post_accumulate_grad_hook(self._on_grad))
        # accelerate's optimizer wrapper holds the fp16 GradScaler (None without one).
        self._scaler = getattr(kwargs.get("optimizer"), "scaler", None)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        """Add the mean measures since the previous log to the Trainer's log."""
        if self.monitor is None or logs is None or self.monitor.measured == self._logged:
            return
        # Read only here: in cheap mode the values stay on the device until a log needs them.
        records, self._logged = self.monitor.history[self._logged:], self.monitor.measured
        keys = [k for k in MEASURES if all(k in r for r in records)]
        means = {f"{PREFIX}{k}": sum(r[k] for r in records) / len(records) for k in keys}
        logs.update(means)
        if state.log_history:
            state.log_history[-1].update(means)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Remove the gradient hooks and close the monitor (its history stays readable)."""
        self._remove_hooks()
        if self.monitor is not None:
            self.monitor.close()

    # Measuring ---------------------------------------------------------------------------
    def _on_grad(self, param: torch.Tensor) -> None:
        """A parameter's gradient is accumulated: measure once this backward pass ends."""
        if not self._queued:
            self._queued = True
            # Runs when the whole backward pass is done, every gradient accumulated.
            torch.autograd.Variable._execution_engine.queue_callback(self._after_backward)

    def _after_backward(self) -> None:
        self._queued = False
        if self.monitor is None or not _syncs_gradients():
            return  # a micro-batch in the middle of an accumulation: the gradient is partial
        step = self._state.global_step if self._state is not None else None
        # Not every call records (every=N, a skipped inf/NaN step); on_log reads what did.
        self.monitor.step(step=step, scaler=self._scaler)

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


__all__ = ["GradientFlowCallback", "PREFIX"]
