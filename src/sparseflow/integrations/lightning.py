"""Gradient flow in a Lightning ``Trainer``: :class:`GradientFlowCallback`.

Example::

    import lightning.pytorch as pl
    from sparseflow.integrations.lightning import GradientFlowCallback
    trainer = pl.Trainer(max_epochs=1, callbacks=[GradientFlowCallback(mask=mask)])
    trainer.fit(module, loader)  # logs gradflow/egf2, gradflow/gf2, ... every step

**When it measures**: in ``on_before_optimizer_step``, i.e. once per optimizer step, after
the backward pass of the last accumulated batch (``accumulate_grad_batches``: the accumulated
gradient), after Lightning's AMP plugin has unscaled the gradients (``16-mixed``: its
``optimizer_step`` runs ``scaler.unscale_`` before calling this hook) and before gradient
clipping (``gradient_clip_val`` is applied after this hook). The measures are logged with
``pl_module.log_dict`` under ``gradflow/<measure>`` (per step), so any Lightning logger
(TensorBoard, CSV, W&B, MLflow) receives them; the monitor's history stays readable as
``callback.monitor``.

Works with the ``lightning`` package and, when only it is installed, ``pytorch_lightning``.
"""

from __future__ import annotations

from typing import Any

from sparseflow.gradflow import MEASURES, GradientFlowMonitor
from sparseflow.integrations import missing

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name, same API
    try:
        import pytorch_lightning as pl
    except ImportError as exc:
        raise missing("Lightning (lightning or pytorch_lightning)", "lightning") from exc

#: Prefix of the logged keys.
PREFIX = "gradflow/"


class GradientFlowCallback(pl.Callback):
    """Measures gradient flow at every optimizer step of a Lightning fit and logs it.

    Args:
        prog_bar: also show the measures in the progress bar.
        **monitor_kwargs: passed to :class:`~sparseflow.gradflow.GradientFlowMonitor`
            (``mask``, ``include_all``, ``log_dir``, ...).

    Attributes:
        monitor: the :class:`~sparseflow.gradflow.GradientFlowMonitor` of the current fit
            (None before ``fit``); its ``history`` holds every measurement, its step numbers
            Lightning's ``global_step``.
    """

    def __init__(self, *, prog_bar: bool = False, **monitor_kwargs: Any) -> None:
        super().__init__()
        self.prog_bar = prog_bar
        self.monitor_kwargs = monitor_kwargs
        self.monitor: GradientFlowMonitor | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Build the monitor on the module being fitted (masks are checked against it here)."""
        self.monitor = GradientFlowMonitor(pl_module, **self.monitor_kwargs)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        """Measure the (accumulated, unscaled, unclipped) gradients and log the measures."""
        if self.monitor is None:  # fit started without on_fit_start (e.g. a custom loop)
            self.on_fit_start(trainer, pl_module)
        before = self.monitor.measured
        self.monitor.step(step=trainer.global_step)
        if self.monitor.measured == before:  # not due (every=N) or a skipped inf/NaN step
            return
        record = self.monitor.history[-1]
        values = {f"{PREFIX}{key}": float(record[key]) for key in MEASURES if key in record}
        pl_module.log_dict(values, on_step=True, on_epoch=False, prog_bar=self.prog_bar)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        """Close the monitor's TensorBoard writer, if any (its history stays readable)."""
        if self.monitor is not None:
            self.monitor.close()


__all__ = ["GradientFlowCallback", "PREFIX"]
