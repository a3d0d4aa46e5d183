"""``run_group``: train K same-shape runs as one batched computation and write K ordinary run
directories — the same files, the same content (to float rounding) as K separate runs.

Each member is built exactly as a separate run builds it (:func:`~sparseflow.train.build_run`:
same init, mask, init policy, generators and probe set), then the K models are stacked. The
group checkpoints after every epoch to ``<root>/_groups/<id>.pt``; an interrupted group resumes
from there when it is run again as the same group (run alone, its members restart). A group
stopped while it wrote its members' results (some finished, some not) finishes the others from
that checkpoint, so they are bitwise what the uninterrupted group gives; the checkpoint is
removed once every member has finished.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sparseflow.config import config_id, dump_config
from sparseflow.config.schema import ExperimentConfig
from sparseflow.data import DataBundle, load_data
from sparseflow.gradflow.measures import trainable_parameters
from sparseflow.optim import decay_targets
from sparseflow.train.build import Built, build_run
from sparseflow.train.determinism import pinned_threads
from sparseflow.train.divergence import diverged
from sparseflow.train.probe import GradFlowProbe
from sparseflow.train.run import (
    CHECKPOINT,
    CONFIG,
    FINAL,
    GRADFLOW,
    MASK,
    METRICS,
    SUMMARY,
    RunResult,
    is_finished,
    read_summary,
    run_dir_for,
    run_experiment,
    summary_record,
)
from sparseflow.train.vectorized import loop
from sparseflow.train.vectorized.functional import mlp_spec, stack_state, unstack_state
from sparseflow.train.vectorized.optim import build_batched_optimizer
from sparseflow.train.vectorized.state import EarlyState, GroupState, Member
from sparseflow.utils.atomic import atomic_torch_save, atomic_write_json


def group_id(cfgs: Sequence[ExperimentConfig]) -> str:
    """Identifies a group by its members (order included)."""
    keys = [f"{config_id(c)}-s{c.seed}" for c in cfgs]
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]


GROUPS_DIR = "_groups"


def group_checkpoint(root: str | Path, cfgs: Sequence[ExperimentConfig]) -> Path:
    """Where the group of ``cfgs`` (in this order) checkpoints under ``root``."""
    return Path(root) / GROUPS_DIR / f"{group_id(cfgs)}.pt"


def shape_key(config: dict[str, Any]) -> str:
    """What must be equal within a group: the resolved config (``dump_config``) without seed,
    name and learning rate."""
    d = {k: v for k, v in config.items() if k not in ("seed", "name")}
    d["optim"] = {k: v for k, v in config["optim"].items() if k != "lr"}
    return json.dumps(d, sort_keys=True)


def _check_same_shape(cfgs: Sequence[ExperimentConfig]) -> None:
    if len({shape_key(dump_config(c)) for c in cfgs}) != 1:
        raise ValueError("a vectorized group needs configs that differ only in seed and lr")
    if cfgs[0].model.name != "mlp":
        raise ValueError(f"model family {cfgs[0].model.name!r} is not vectorized")
    if cfgs[0].gradflow.enabled and cfgs[0].gradflow.probe_set == "batch":
        raise ValueError("gradflow.probe_set 'batch' is not vectorized")


def _member(cfg: ExperimentConfig, b: Built) -> Member:
    probe = next((h for h in b.hooks if isinstance(h, GradFlowProbe)), None)
    masks = dict(b.mask.items()) if b.mask is not None else None
    if masks is not None:
        masks = {n: m.to(b.device) for n, m in masks.items()}
    return Member(cfg, b.state.generators, masks, probe.x if probe else None,
                  probe.y if probe else None)


def _group_state(cfgs: Sequence[ExperimentConfig], built: list[Built]) -> GroupState:
    models = [b.state.model for b in built]
    params, buffers = stack_state(models)
    for p in params.values():
        p.requires_grad_(True)
    members = [_member(c, b) for c, b in zip(cfgs, built, strict=True)]
    masks = {}
    if members[0].masks is not None:
        masks = {n: torch.stack([m.masks[n] for m in members]) for n in members[0].masks}
    k, first = len(cfgs), built[0]
    return GroupState(
        spec=mlp_spec(models[0]), params=params, buffers=buffers, masks=masks,
        optimizer=build_batched_optimizer(params, cfgs[0].optim),
        base_lr=torch.tensor([c.optim.lr for c in cfgs], dtype=torch.float32,
                             device=first.device),
        members=members, epochs=cfgs[0].train.epochs,
        steps_per_epoch=first.state.steps_per_epoch,
        active=torch.ones(k, dtype=torch.bool, device=first.device),
        epochs_done=[0] * k, steps_done=[0] * k, stop_reason=[""] * k,
        history=[[] for _ in range(k)], gradflow=[[] for _ in range(k)],
        early=[EarlyState() for _ in range(k)])


def _probe_fn(state: GroupState, cfg: ExperimentConfig, data: DataBundle, names: list[str]):
    if not cfg.gradflow.enabled:
        return None
    if cfg.gradflow.probe_set == "full":
        xs = data.train.x.unsqueeze(0).expand(state.k, *data.train.x.shape)
        ys = data.train.y.unsqueeze(0).expand(state.k, *data.train.y.shape)
        chunk = cfg.train.eval_batch_size
    else:
        xs = torch.stack([m.probe_x for m in state.members])
        ys = torch.stack([m.probe_y for m in state.members])
        chunk = None
    return lambda st: loop.probe(st, xs, ys, names, chunk)


def _write_start(run_dir: Path, cfg: ExperimentConfig, b: Built) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / CONFIG, {"id": config_id(cfg), "config": dump_config(cfg)})
    if b.mask is not None:
        b.mask.save(run_dir / MASK)


def _finish(state: GroupState, k: int, cfg: ExperimentConfig, b: Built, data: DataBundle,
            run_dir: Path, resumed: bool) -> RunResult:
    """Write member k's final.pt, series and summary (last) into its run directory."""
    e = state.early[k]
    sd = unstack_state(state.params, state.buffers, k)
    es = cfg.train.early_stopping
    if es.enabled and es.restore_best and e.best_state is not None:
        sd = {n: t.clone() for n, t in e.best_state.items()}
    b.state.model.load_state_dict(sd)  # the member's own module, for final evaluation
    atomic_torch_save(b.state.model.state_dict(), run_dir / FINAL)
    atomic_write_json(run_dir / METRICS, state.history[k])
    extra: dict[str, Any] = {}
    if cfg.gradflow.enabled:
        atomic_write_json(run_dir / GRADFLOW, state.gradflow[k])
        probe = next(h for h in b.hooks if isinstance(h, GradFlowProbe))
        b.state.extra["gradflow"] = state.gradflow[k]
        b.state.epoch = state.epochs_done[k]  # the epochs this member trained
        extra = probe.summarize(b.state)
    from sparseflow.train.evaluation import EvalPlan, evaluation_record
    from sparseflow.train.loop import evaluate

    # A split the member's last epoch record evaluated was evaluated on these very weights
    # (nothing moves a member's weights after its last trained epoch) unless the best epoch's
    # were restored: as final_metrics does for a single run, it is not forwarded again.
    restored = es.enabled and es.restore_best and e.best_state is not None
    last = state.history[k][-1] if state.history[k] and not restored else {}
    final = {}
    for split in ("train", "val", "test"):
        # (the record's train_loss is the running train-mode one: never reused)
        if split != "train" and last.get(f"{split}_loss") is not None:
            loss, acc = last[f"{split}_loss"], last[f"{split}_accuracy"]
        else:
            loss, acc = evaluate(b.state.model, getattr(data, split), cfg.train.eval_batch_size)
        final[f"{split}_loss"], final[f"{split}_accuracy"] = loss, acc
    stopped = not bool(state.active[k])
    summary = summary_record(
        cfg, final=final, epochs=state.epochs_done[k], steps=state.steps_done[k],
        stopped=stopped, stop_reason=state.stop_reason[k],
        best_epoch=e.best_epoch if es.enabled else state.epochs_done[k],
        seconds=state.seconds / state.k, resumed=resumed,
        params_total=sum(p.numel() for p in b.state.model.parameters()), mask=b.mask,
        data=data, extra={**extra, "diverged": diverged(state.history[k]),
                          "vectorized_group": state.k},
        evaluation=evaluation_record(EvalPlan.from_config(cfg), state.history[k]))
    atomic_write_json(run_dir / SUMMARY, summary)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)  # a stale single-run checkpoint
    return RunResult(run_dir, "finished", summary)


def run_group(cfgs: Sequence[ExperimentConfig], root: str | Path = "runs", *,
              data: DataBundle | None = None) -> list[RunResult]:
    """Train the unfinished runs of ``cfgs`` together; one :class:`RunResult` per config.

    Finished members are not retrained ('already_finished'); a group of one unfinished run is
    an ordinary :func:`run_experiment`. Members must differ only in seed and learning rate
    (so they share ``train.threads``, the intra-op threads the group computes with).
    """
    cfgs = list(cfgs)
    _check_same_shape(cfgs)
    with pinned_threads(cfgs[0].train.threads):
        return _run_group(cfgs, root, data)


def _run_group(cfgs: list[ExperimentConfig], root: str | Path,
               data: DataBundle | None) -> list[RunResult]:
    root = Path(root)
    dirs = [run_dir_for(c, root) for c in cfgs]
    results: dict[int, RunResult] = {i: RunResult(d, "already_finished", read_summary(d))
                                     for i, d in enumerate(dirs) if is_finished(d)}
    todo = [i for i in range(len(cfgs)) if i not in results]
    whole = group_checkpoint(root, cfgs)
    if not todo:
        whole.unlink(missing_ok=True)  # stopped after its last result, before removing it
        return [results[i] for i in range(len(cfgs))]
    if data is None:
        data = load_data(cfgs[0].data)
    if len(todo) < len(cfgs) and whole.is_file():
        # Stopped while writing its members' results: the whole group resumes from its
        # checkpoint and only the unfinished members are written (bitwise as uninterrupted).
        results.update(zip(todo, _train(cfgs=cfgs, dirs=dirs, root=root, data=data,
                                        write=todo), strict=True))
    elif len(todo) == 1:
        results[todo[0]] = run_experiment(cfgs[todo[0]], root, data=data)
    else:
        results.update(zip(todo, _train(cfgs=[cfgs[i] for i in todo],
                                        dirs=[dirs[i] for i in todo], root=root, data=data),
                           strict=True))
    return [results[i] for i in range(len(cfgs))]


def _train(*, cfgs: list[ExperimentConfig], dirs: list[Path], root: Path,
           data: DataBundle, write: list[int] | None = None) -> list[RunResult]:
    """Train the group ``cfgs``; write the results of members ``write`` (default: all)."""
    write = list(range(len(cfgs))) if write is None else write
    built = [build_run(c, data) for c in cfgs]
    data = built[0].data  # on the run's device
    state = _group_state(cfgs, built)
    for k in write:
        _write_start(dirs[k], cfgs[k], built[k])
    ckpt = group_checkpoint(root, cfgs)
    resumed = ckpt.is_file()
    if resumed:
        try:
            sd = torch.load(ckpt, map_location=built[0].device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torn by an OS crash: start the group over
            warnings.warn(f"ignoring unreadable group checkpoint {ckpt} "
                          f"({type(exc).__name__})", RuntimeWarning, stacklevel=2)
            resumed = False
        else:
            state.load_state_dict(sd)
    model0 = built[0].state.model
    names = list(trainable_parameters(model0, cfgs[0].gradflow.include_all))
    decay = [n for n, p in model0.named_parameters()
             if any(p is t for t in decay_targets(model0, cfgs[0].regularization.l2_on_all))]

    every = cfgs[0].train.checkpoint_every

    def on_epoch(st: GroupState) -> None:
        # One checkpoint for the group (it holds every member's series too).
        if every and st.epoch % every == 0:
            t0 = time.perf_counter()
            atomic_torch_save(st.state_dict(), ckpt, durable=False)
            st.seconds += time.perf_counter() - t0

    loop.fit(state, data, decay_names=decay,
             probe_fn=_probe_fn(state, cfgs[0], data, names), on_epoch=on_epoch)
    results = [_finish(state, k, cfgs[k], built[k], data, dirs[k], resumed) for k in write]
    ckpt.unlink(missing_ok=True)
    return results
