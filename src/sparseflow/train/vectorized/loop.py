"""The batched training loop: the same steps, in the same order, as
:func:`sparseflow.train.loop.fit` with the standard hooks — for K models at once.

Per step: lr from the schedule (per-model base lr), forward, per-model mean cross-entropy,
backward of their sum (models are independent, so each gets its own gradient), mask the
gradients, coupled L2, decoupled weight decay, optimizer step, re-mask the weights. A model
whose early stopping fired is *inactive*: its learning rate is 0 (so its weights, and with them
its decoupled decay, stay put) and its BatchNorm running statistics are not updated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sparseflow.data import DataBundle, Split, epoch_batches
from sparseflow.gradflow import MEASURES, gradient_flow
from sparseflow.optim import lr_factor
from sparseflow.sparsity.enforce import keep_and_pruned, zero_pruned_
from sparseflow.train.divergence import diverged_epoch
from sparseflow.train.divergence import stop_reason as divergence_reason
from sparseflow.train.evaluation import EvalPlan
from sparseflow.train.probe import is_probe_epoch
from sparseflow.train.vectorized.functional import mlp_forward
from sparseflow.train.vectorized.state import GroupState


def _masked(state: GroupState, grads: bool) -> None:
    """Zero the pruned positions of the masked weights (or of their gradients), as the
    single-run enforcer does (:func:`~sparseflow.sparsity.enforce.zero_pruned_`)."""
    if not state.mask_pairs:
        state.mask_pairs = {n: keep_and_pruned(m, state.params[n])
                            for n, m in state.masks.items()}
    for name, (keep, pruned) in state.mask_pairs.items():
        t = state.params[name].grad if grads else state.params[name]
        if t is not None:
            zero_pruned_(t, keep, pruned)


def _regularize(state: GroupState, lr: Tensor, decay_names: list[str]) -> None:
    """Coupled L2 into the gradient, then decoupled decay of the weights (as the hooks do)."""
    reg = state.members[0].cfg.regularization
    with torch.no_grad():
        for name in decay_names:
            p = state.params[name]
            if reg.l2 > 0 and p.grad is not None:
                p.grad.add_(p, alpha=reg.l2)
            if reg.weight_decay > 0:
                scale = lr if reg.decay_scaling == "lr" else lr / state.base_lr
                p.mul_(1.0 - (scale * reg.weight_decay).view(-1, *([1] * (p.dim() - 1))))


def _batch(state: GroupState, data: DataBundle, lists: list[list[Tensor]],
           i: int) -> tuple[Tensor, Tensor]:
    idx = torch.stack([lst[i] for lst in lists]).to(data.train.x.device)  # (K, B)
    x, y = data.train.x[idx], data.train.y[idx]  # (K, B, *shape), (K, B)
    if data.augmenter is not None:
        x = torch.stack([data.augmenter(x[k], m.generators["augment"])
                         for k, m in enumerate(state.members)])
    return x, y


def train_epoch(state: GroupState, data: DataBundle, decay_names: list[str]) -> list[tuple]:
    """One epoch for every model; returns each model's running (loss, accuracy)."""
    cfg = state.members[0].cfg
    lists = [epoch_batches(len(data.train), cfg.train.batch_size, m.generators["data"],
                           cfg.train.drop_last) for m in state.members]
    gens = [m.generators["dropout"] for m in state.members]
    # Accumulated on the data's device: no host sync per step.
    device = data.train.x.device
    loss_sum = torch.zeros(state.k, dtype=torch.float64, device=device)
    correct = torch.zeros(state.k, dtype=torch.int64, device=device)
    seen = 0
    for i in range(len(lists[0])):
        x, y = _batch(state, data, lists, i)
        factor = lr_factor(state.step, state.steps_per_epoch, state.epochs,
                           cfg.optim.schedule)
        lr = state.base_lr * factor * state.active  # (K,), 0 for stopped models
        for p in state.params.values():
            p.grad = None
        logits = mlp_forward(state.spec, state.params, state.buffers, x, training=True,
                             active=state.active, dropout_gens=gens)
        per = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        loss = per.view(state.k, -1).mean(1)  # (K,) each model's batch mean
        loss.sum().backward()
        _masked(state, grads=True)
        _regularize(state, lr, decay_names)
        state.optimizer.step(lr)
        _masked(state, grads=False)
        state.step += 1
        with torch.no_grad():
            loss_sum += loss.detach().double() * y.shape[1]
            correct += (logits.argmax(-1) == y).sum(1)
        seen += y.shape[1]
    sums, hits = loss_sum.tolist(), correct.tolist()  # one transfer per epoch
    return [(sums[k] / seen, hits[k] / seen) for k in range(state.k)]


@torch.no_grad()
def evaluate(state: GroupState, split: Split, batch_size: int) -> list[tuple[float, float]]:
    """Each model's mean loss and accuracy on ``split`` in eval mode."""
    n = len(split)
    if n == 0:
        return [(math.nan, math.nan)] * state.k
    loss_sum = torch.zeros(state.k, dtype=torch.float64, device=split.x.device)
    correct = torch.zeros(state.k, dtype=torch.int64, device=split.x.device)
    for start in range(0, n, batch_size):
        x, y = split.x[start:start + batch_size], split.y[start:start + batch_size]
        xs = x.unsqueeze(0).expand(state.k, *x.shape)
        logits = mlp_forward(state.spec, state.params, state.buffers, xs, training=False,
                             active=state.active)
        per = F.cross_entropy(logits.flatten(0, 1), y.repeat(state.k), reduction="none")
        loss_sum += per.view(state.k, -1).double().sum(1)
        correct += (logits.argmax(-1) == y).sum(1)
    sums, hits = loss_sum.tolist(), correct.tolist()  # one transfer per evaluation
    return [(sums[k] / n, hits[k] / n) for k in range(state.k)]


def _evaluated(state: GroupState, split: Split, now: bool,
               batch_size: int) -> list[tuple[float | None, float | None]]:
    """:func:`evaluate`, or (None, None) per model when the plan skips this epoch."""
    return evaluate(state, split, batch_size) if now else [(None, None)] * state.k


def probe(state: GroupState, xs: Tensor, ys: Tensor, names: list[str],
          chunk: int | None) -> list[dict[str, Any]]:
    """Gradient flow of every model on its probe set xs (K, P, …), ys (K, P), leaving no trace:
    BatchNorm buffers and dropout generators are restored (as measure_gradient_flow does)."""
    saved = {n: b.clone() for n, b in state.buffers.items()}
    gens = [m.generators["dropout"] for m in state.members]
    gen_states = [g.get_state() for g in gens]
    n = xs.shape[1]
    step = chunk if chunk and chunk < n else n
    total: list[Tensor] | None = None
    weights = [state.params[nm] for nm in names]
    with torch.enable_grad():
        for s in range(0, n, step):
            xc, yc = xs[:, s:s + step], ys[:, s:s + step]
            logits = mlp_forward(state.spec, state.params, state.buffers, xc, training=True,
                                 active=state.active, dropout_gens=gens)
            per = F.cross_entropy(logits.flatten(0, 1), yc.flatten(), reduction="none")
            loss = per.view(state.k, -1).mean(1) * (yc.shape[1] / n)
            grads = torch.autograd.grad(loss.sum(), weights, materialize_grads=True)
            g64 = [g.detach().double() for g in grads]
            total = g64 if total is None else [a + b for a, b in zip(total, g64, strict=True)]
    with torch.no_grad():
        for name, b in state.buffers.items():
            b.copy_(saved[name])
    for g, st in zip(gens, gen_states, strict=True):
        g.set_state(st)
    assert total is not None
    out = []
    for k, m in enumerate(state.members):
        grads_k = {nm: t[k] for nm, t in zip(names, total, strict=True)}
        masks_k = ({nm: mk for nm, mk in m.masks.items() if nm in grads_k}
                   if m.masks is not None else None)
        out.append(gradient_flow(grads_k, masks_k))
    return out


def record_probe(state: GroupState, results: list[dict[str, Any]], epoch: int,
                 which: list[int]) -> None:
    """Append the probe point of ``epoch`` to the series of the models in ``which``."""
    for k in which:
        r = results[k]
        state.gradflow[k].append({"epoch": epoch, "step": state.steps_done[k],
                                  **{key: r[key] for key in MEASURES},
                                  "per_layer": r["per_layer"]})


def fit(state: GroupState, data: DataBundle, *, decay_names: list[str],
        probe_fn: Callable[[GroupState], list[dict[str, Any]]] | None,
        on_epoch: Callable[[GroupState], None]) -> None:
    """Train every model to its epoch cap or early stop, probing and checkpointing."""
    cfg = state.members[0].cfg
    es = cfg.train.early_stopping
    plan = EvalPlan.from_config(cfg)
    if probe_fn and state.epoch == 0 and not any(state.gradflow):
        record_probe(state, probe_fn(state), 0, list(range(state.k)))
    while state.epoch < state.epochs and bool(state.active.any()):
        t0 = time.perf_counter()
        running = train_epoch(state, data, decay_names)
        state.epoch += 1
        val = _evaluated(state, data.val, plan.val_at(state.epoch), cfg.train.eval_batch_size)
        test = _evaluated(state, data.test, plan.test_at(state.epoch),
                          cfg.train.eval_batch_size)
        trained = [k for k in range(state.k) if bool(state.active[k])]
        seconds = (time.perf_counter() - t0) / max(len(trained), 1)
        for k in trained:
            state.epochs_done[k] = state.epoch
            state.steps_done[k] = state.step
            state.history[k].append({
                "epoch": state.epoch, "train_loss": running[k][0],
                "train_accuracy": running[k][1], "val_loss": val[k][0],
                "val_accuracy": val[k][1], "test_loss": test[k][0],
                "test_accuracy": test[k][1],
                "lr": float(state.base_lr[k]) * lr_factor(
                    state.step - 1, state.steps_per_epoch, state.epochs, cfg.optim.schedule),
                "seconds": seconds})
        results = None
        if probe_fn and is_probe_epoch(state.epoch, state.epochs, cfg.gradflow.points,
                                       es.enabled):
            results = probe_fn(state)
            record_probe(state, results, state.epoch, trained)
        if es.enabled:
            _early_stopping(state, trained, [val[k][0] for k in range(state.k)])
        _stop_diverged(state, trained)
        if probe_fn and es.enabled and results is None:  # as GradFlowProbe.end: the stop epoch
            ended = [k for k in trained
                     if not bool(state.active[k]) or state.epoch >= state.epochs]
            if ended:
                record_probe(state, probe_fn(state), state.epoch, ended)
        state.seconds += time.perf_counter() - t0
        on_epoch(state)


def _early_stopping(state: GroupState, trained: list[int], val_loss: list[float]) -> None:
    es = state.members[0].cfg.train.early_stopping
    for k in trained:
        e, loss = state.early[k], val_loss[k]
        if math.isfinite(loss) and loss < e.best_loss - es.min_delta:
            e.best_loss, e.best_epoch, e.bad_epochs = loss, state.epoch, 0
            if es.restore_best:
                e.best_state = {n: t[k].detach().clone()
                                for n, t in {**state.params, **state.buffers}.items()}
        else:
            e.bad_epochs += 1
            if e.bad_epochs >= es.patience:
                state.active[k] = False
                state.stop_reason[k] = (f"early stop: no val_loss improvement for "
                                        f"{es.patience} epochs")


def _stop_diverged(state: GroupState, trained: list[int]) -> None:
    """Per member, what the StopOnDivergence hook does for a single run (after early stopping:
    its stop reason wins)."""
    for k in trained:
        if diverged_epoch(state.history[k][-1]):
            state.active[k] = False
            state.stop_reason[k] = divergence_reason(state.history[k][-1])
