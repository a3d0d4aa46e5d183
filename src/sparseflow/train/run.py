"""One run from config to a finished run directory.

Run directory layout (``<root>/<config id>-s<seed>/``):

- ``config.json``   the full resolved config, plus its id (written first);
- ``mask.pt``       name → bool tensor (sparse runs only; the initial mask of a dynamic run);
- ``mask_final.pt`` the mask at the end of training (dynamic sparse training only);
- ``dst.json``      dynamic sparse training: the schedule and one record per mask update
  (rewritten atomically with every checkpoint);
- ``checkpoint.pt`` everything needed to resume, rewritten atomically after every epoch but the
  last and removed once the run has finished;
- ``metrics.json``  the per-epoch series (rewritten atomically after every epoch);
- ``final.pt``      the final ``state_dict`` (loadable with ``torch.load(weights_only=True)``);
- ``summary.json``  written last and atomically: its presence means the run finished.
"""

from __future__ import annotations

import json
import math
import platform
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparseflow._version import __version__
from sparseflow.config import config_id, dump_config, run_name
from sparseflow.config.schema import ExperimentConfig
from sparseflow.data import DataBundle, load_data
from sparseflow.errors import ConfigError, RunError
from sparseflow.sparsity import Mask
from sparseflow.train.build import Built, build_run
from sparseflow.train.determinism import pinned_threads, reproducibility
from sparseflow.train.divergence import STOP_REASON
from sparseflow.train.evaluation import EvalPlan, evaluation_record
from sparseflow.train.hooks import stateful
from sparseflow.train.loop import final_metrics, fit
from sparseflow.train.seeding import generator_states, load_generator_states
from sparseflow.train.tblog import tensorboard_hooks
from sparseflow.utils.atomic import atomic_torch_save, atomic_write_json, read_json

CONFIG, MASK, CHECKPOINT, METRICS, GRADFLOW, FINAL, SUMMARY = (
    "config.json", "mask.pt", "checkpoint.pt", "metrics.json", "gradflow.json", "final.pt",
    "summary.json")
MASK_FINAL, DST = "mask_final.pt", "dst.json"


@dataclass
class RunResult:
    """What :func:`run_experiment` did: ``status`` is 'finished' or 'already_finished'."""

    run_dir: Path
    status: str
    summary: dict[str, Any]


def run_dir_for(cfg: ExperimentConfig, root: str | Path) -> Path:
    """Where the run of ``cfg`` lives under ``root``."""
    return Path(root) / run_name(cfg)


def is_finished(run_dir: Path) -> bool:
    """A run is finished iff its summary.json exists."""
    return (run_dir / SUMMARY).is_file()


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The summary of a finished run."""
    return read_json(run_dir / SUMMARY)


def _check_same_config(run_dir: Path, cfg: ExperimentConfig) -> None:
    path = run_dir / CONFIG
    if not path.is_file():
        return
    stored = json.loads(path.read_text())
    if stored.get("id") != config_id(cfg) or stored.get("config", {}).get("seed") != cfg.seed:
        raise RunError(f"{run_dir} holds a different run (id {stored.get('id')}); "
                       "use another --out folder or remove it")


def save_checkpoint(run_dir: Path, built: Built) -> None:
    """Write everything a bitwise-exact resume needs, atomically."""
    st = built.state
    atomic_torch_save({
        **_identity(built),
        "epoch": st.epoch,
        "step": st.step,
        "history": st.history,
        "stop": st.stop,
        "stop_reason": st.stop_reason,
        "extra": st.extra,
        "model": st.model.state_dict(),
        "optimizer": st.optimizer.state_dict(),
        "generators": generator_states(st.generators),
        "hooks": {k: h.state_dict() for k, h in stateful(built.hooks).items()},
    }, run_dir / CHECKPOINT, durable=False)
    # Rewritten every epoch and again (durably) before the summary: no fsync here either.
    _write_series(run_dir, built, durable=False)


def _write_series(run_dir: Path, built: Built, *, durable: bool = True) -> None:
    """The per-epoch metrics, the gradient-flow series (when measured) and the mask-update
    series (dynamic sparse training) as JSON."""
    st = built.state
    atomic_write_json(run_dir / METRICS, st.history, durable=durable)
    if "gradflow" in st.extra:
        atomic_write_json(run_dir / GRADFLOW, st.extra["gradflow"], durable=durable)
    dst = _dst_hook(built)
    if dst is not None:
        atomic_write_json(run_dir / DST, dst.series(), durable=durable)


def _dst_hook(built: Built) -> Any:
    """The run's dynamic-sparsity hook, or None."""
    return next((h for h in built.hooks if getattr(h, "name", "") == "dst"), None)


def _identity(built: Built) -> dict[str, Any]:
    """Whose checkpoint it is: the run id and seed (checked on resume)."""
    cfg = built.cfg
    return {"run_id": config_id(cfg), "seed": cfg.seed} if cfg is not None else {}


def load_checkpoint(run_dir: Path, built: Built) -> bool:
    """Restore a checkpoint if one exists and is this run's (run id and seed); returns whether
    it did. An unreadable or foreign checkpoint is removed with a warning."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return False
    try:
        ck = torch.load(path, map_location=built.device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torn by an OS crash: train from the start
        warnings.warn(f"ignoring unreadable checkpoint {path} ({type(exc).__name__}); the run "
                      "starts from its first epoch", RuntimeWarning, stacklevel=2)
        path.unlink()
        return False
    if built.cfg is not None and {k: ck.get(k) for k in ("run_id", "seed")} != _identity(built):
        warnings.warn(f"ignoring {path}: it is the checkpoint of run {ck.get('run_id')} seed "
                      f"{ck.get('seed')}, not of this run; the run starts from its first epoch",
                      RuntimeWarning, stacklevel=2)
        path.unlink()
        return False
    st = built.state
    st.model.load_state_dict(ck["model"])
    st.optimizer.load_state_dict(ck["optimizer"])
    load_generator_states(st.generators, ck["generators"])
    st.epoch, st.step, st.history = ck["epoch"], ck["step"], ck["history"]
    st.stop, st.stop_reason, st.extra = ck["stop"], ck["stop_reason"], ck["extra"]
    for name, hook in stateful(built.hooks).items():
        hook.load_state_dict(ck["hooks"][name])
    return True


def summary_record(cfg: ExperimentConfig, *, final: dict[str, float], epochs: int, steps: int,
                   stopped: bool, stop_reason: str, best_epoch: int, seconds: float,
                   resumed: bool, params_total: int, mask: Mask | None, data: DataBundle,
                   extra: dict[str, Any], evaluation: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The content of ``summary.json`` (shared by single and vectorized runs).

    ``evaluation`` (:func:`~sparseflow.train.evaluation.evaluation_record`): when the series
    evaluated the validation and test splits.

    ``diverged`` (see :mod:`sparseflow.train.divergence`): ``extra["diverged"]`` (from the
    series) or a non-finite final training loss.
    """
    loss = final.get("train_loss")
    diverged = bool(extra.get("diverged")) or (loss is not None and not math.isfinite(loss))
    return {
        "run_id": config_id(cfg),
        "seed": cfg.seed,
        "name": cfg.name,
        "kind": cfg.kind,
        "width": cfg.model.width,
        "dense_width": cfg.sparsity.dense_width,
        **final,
        "epochs": epochs,
        "steps": steps,
        "stopped_early": stopped and not stop_reason.startswith(STOP_REASON),
        "stop_reason": stop_reason,
        "diverged": diverged,
        "best_epoch": best_epoch,
        "evaluation": evaluation,
        "duration_s": seconds,
        "resumed": resumed,
        "params_total": params_total,
        "prunable_weights": mask.total() if mask is not None else None,
        "active_weights": mask.active() if mask is not None else None,
        "density": mask.density() if mask is not None else 1.0,
        # The profile of the mask training started with (what a PaI method chose); layers
        # with no active weight are listed (sparsity.pai.collapse: warn lets them train).
        "layer_densities": mask.densities() if mask is not None else None,
        "collapsed_layers": ([n for n in mask if mask.active(n) == 0]
                             if mask is not None else None),
        "dataset": {"name": data.name, "source": data.source, "train": len(data.train),
                    "val": len(data.val), "test": len(data.test)},
        "versions": {"sparseflow": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "reproducibility": reproducibility(cfg.train.threads, str(data.train.x.device)),
    } | {k: v for k, v in extra.items() if k != "diverged"}


def _summary(cfg: ExperimentConfig, built: Built, seconds: float, resumed: bool,
             plan: EvalPlan) -> dict[str, Any]:
    st, data = built.state, built.data
    final = final_metrics(st.model, data, cfg.train.eval_batch_size, plan)
    return summary_record(
        cfg, final=final, epochs=st.epoch, steps=st.step, stopped=bool(st.stop),
        stop_reason=st.stop_reason,
        best_epoch=built.early.best_epoch if built.early else st.epoch, seconds=seconds,
        resumed=resumed, params_total=sum(p.numel() for p in st.model.parameters()),
        mask=built.mask, data=data, extra=_hook_summaries(built),
        evaluation=evaluation_record(plan, st.history))


def _hook_summaries(built: Built) -> dict[str, Any]:
    """What hooks with a ``summarize(state)`` method add to the summary (e.g. average EGF)."""
    out: dict[str, Any] = {}
    for hook in built.hooks:
        if hasattr(hook, "summarize"):
            out.update(hook.summarize(built.state))
    return out


def _initial_mask(run_dir: Path, built: Built) -> None:
    """Write ``mask.pt``, or, when resuming, train on with the mask it holds.

    A resumed run rebuilds its mask (a score masker scores again); on a device whose kernels
    are not deterministic that could flip a tie, and the checkpointed weights belong to the
    stored mask. So with a checkpoint present, a readable ``mask.pt`` of the same layers and
    shapes wins over the rebuilt mask (a dynamic run's hook then restores its current mask).
    """
    assert built.mask is not None and built.enforcer is not None
    path = run_dir / MASK
    if (run_dir / CHECKPOINT).is_file() and path.is_file():
        try:
            stored = Mask.load(path)
        except Exception:  # noqa: BLE001 - torn: rewrite it from the rebuilt mask
            stored = None
        mask = built.mask
        if stored is not None and set(stored) == set(mask) and all(
                stored[n].shape == mask[n].shape for n in mask):
            for name in mask:
                if not torch.equal(stored[name], mask[name]):
                    built.enforcer.set_layer(name, stored[name])
            built.enforcer.apply_to_weights()
            return
    built.mask.save(path)


def run_experiment(cfg: ExperimentConfig, root: str | Path = "runs", *,
                   hooks: Sequence[Any] = (), data: DataBundle | None = None,
                   until_epoch: int | None = None) -> RunResult:
    """Train ``cfg`` into its run directory under ``root``, resuming if a checkpoint exists.

    A finished run is not trained again (status 'already_finished'). Bad input raises before
    any directory is created. ``until_epoch`` stops after that many epochs without finishing
    the run (training in parts; the next call resumes). The run computes with
    ``cfg.train.threads`` intra-op threads (see :mod:`sparseflow.train.determinism`).
    """
    with pinned_threads(cfg.train.threads):
        return _run(cfg, root, hooks=hooks, data=data, until_epoch=until_epoch)


def _run(cfg: ExperimentConfig, root: str | Path, *, hooks: Sequence[Any],
         data: DataBundle | None, until_epoch: int | None) -> RunResult:
    run_dir = run_dir_for(cfg, root)
    if is_finished(run_dir):
        return RunResult(run_dir, "already_finished", read_summary(run_dir))
    if data is None:
        data = load_data(cfg.data)
    built = build_run(cfg, data)
    if built.early is not None and len(built.data.val) == 0:
        raise ConfigError("train.early_stopping needs a validation split; set "
                          "data.val_fraction > 0")
    built.hooks.extend(hooks)
    # After the probe (which the TensorBoard log reads) and the caller's hooks.
    logs = tensorboard_hooks(cfg.train.log, run_dir)
    _check_same_config(run_dir, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / CONFIG, {"id": config_id(cfg), "config": dump_config(cfg)})
    if built.mask is not None:
        _initial_mask(run_dir, built)
    resumed = load_checkpoint(run_dir, built)
    prior = sum(r["seconds"] for r in built.state.history)
    t0 = time.perf_counter()
    plan = EvalPlan.from_config(cfg)
    try:
        fit(built.state, built.data, [*built.hooks, *logs, _Checkpointer(run_dir, built)],
            batch_size=cfg.train.batch_size, eval_batch_size=cfg.train.eval_batch_size,
            drop_last=cfg.train.drop_last, until_epoch=until_epoch, plan=plan)
    finally:
        for log in logs:
            log.close()  # also after a partial call or an interruption: keep what was written
    st = built.state
    if not st.stop and st.epoch < st.epochs:
        return RunResult(run_dir, "partial", {})
    if built.early is not None:
        built.early.finish(st)
    atomic_torch_save(st.model.state_dict(), run_dir / FINAL)
    dst = _dst_hook(built)
    if dst is not None:  # the mask of final.pt's weights (the best epoch's with restore_best)
        Mask(dst.final_mask()).save(run_dir / MASK_FINAL)
    _write_series(run_dir, built)
    summary = _summary(cfg, built, prior + time.perf_counter() - t0, resumed, plan)
    atomic_write_json(run_dir / SUMMARY, summary)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    return RunResult(run_dir, "finished", summary)


class _Checkpointer:
    """Saves a checkpoint after every ``checkpoint_every``-th epoch (last in the hook list),
    except after the epoch that ends training: the run's final files follow at once and the
    checkpoint is deleted with them (a run killed in between trains that epoch again from the
    previous checkpoint, bitwise the same)."""

    def __init__(self, run_dir: Path, built: Built) -> None:
        self.run_dir, self.built = run_dir, built

    def end_epoch(self, state: Any) -> None:
        every = self.built.cfg.train.checkpoint_every if self.built.cfg else 1
        if state.stop or state.epoch >= state.epochs:
            return
        if every and state.epoch % every == 0:
            save_checkpoint(self.run_dir, self.built)
