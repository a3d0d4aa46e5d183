"""The training loop: one function, read top to bottom. Behaviour is added by hooks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparseflow.data import DataBundle, Split, epoch_batches
from sparseflow.train.evaluation import EvalPlan, fingerprint, skipped
from sparseflow.train.hooks import Hook, call
from sparseflow.train.state import TrainState


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``split`` in eval mode.

    Returns (nan, nan) for an empty split. The model's previous mode is restored.
    """
    n = len(split)
    if n == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=split.x.device)
    correct = torch.zeros((), dtype=torch.int64, device=split.x.device)
    for start in range(0, n, batch_size):
        x, y = split.x[start:start + batch_size], split.y[start:start + batch_size]
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return loss_sum.item() / n, correct.item() / n


def _bound(hooks: Sequence[Any], point: str) -> list[Any]:
    """The ``point`` methods of ``hooks`` in list order, resolved once per epoch rather than
    per step, leaving out hooks without one and :class:`Hook`'s inherited no-ops."""
    noop = getattr(Hook, point)
    return [getattr(h, point) for h in hooks
            if getattr(h, point, None) is not None and getattr(type(h), point, None) is not noop]


def train_epoch(state: TrainState, data: DataBundle, hooks: Sequence[Any], *,
                batch_size: int, drop_last: bool) -> tuple[float, float]:
    """One pass over the training split; returns the running (train-mode) loss and accuracy."""
    model, opt, gens = state.model, state.optimizer, state.generators
    before, backward, after = (_bound(hooks, p) for p in ("before_step", "after_backward",
                                                          "after_step"))
    model.train()
    x_all, y_all = data.train.x, data.train.y
    loss_sum = torch.zeros((), dtype=torch.float64, device=x_all.device)
    correct = torch.zeros((), dtype=torch.int64, device=x_all.device)
    seen = 0
    for idx in epoch_batches(len(data.train), batch_size, gens["data"], drop_last):
        idx = idx.to(x_all.device)
        x, y = x_all[idx], y_all[idx]
        if data.augmenter is not None:
            x = data.augmenter(x, gens["augment"])
        state.batch = (x, y)
        for fn in before:
            fn(state)
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss: Tensor = F.cross_entropy(logits, y)
        loss.backward()
        state.loss = loss
        for fn in backward:
            fn(state)
        if not state.skip_update:  # a hook may skip this batch's step (dynamic sparsity)
            opt.step()
        for fn in after:
            fn(state)
        state.skip_update = False
        state.step += 1
        # Accumulate on-device: no host sync per step.
        loss_sum += loss.detach().double() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    state.batch, state.loss = None, None
    if seen == 0:
        return float("nan"), float("nan")
    return loss_sum.item() / seen, correct.item() / seen


def fit(state: TrainState, data: DataBundle, hooks: Sequence[Any], *, batch_size: int,
        eval_batch_size: int, drop_last: bool = False, until_epoch: int | None = None,
        plan: EvalPlan | None = None) -> None:
    """Train until ``state.epochs`` epochs are done, a hook sets ``state.stop``, or
    ``until_epoch`` (exclusive cap for training in parts) is reached.

    Each completed epoch appends a record to ``state.history`` with the running train
    loss/accuracy, validation and test loss/accuracy (eval mode; ``None`` after an epoch the
    ``plan`` does not evaluate that split; default: every epoch), the lr and the seconds spent.
    """
    plan = plan or EvalPlan()
    call(hooks, "begin", state)
    limit = state.epochs if until_epoch is None else min(until_epoch, state.epochs)
    while state.epoch < limit and not state.stop:
        t0 = time.perf_counter()
        train_loss, train_acc = train_epoch(state, data, hooks, batch_size=batch_size,
                                            drop_last=drop_last)
        epoch = state.epoch + 1
        state.epoch = epoch
        state.history.append({
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            **_evaluated(state.model, data, "val", plan, epoch, eval_batch_size),
            **_evaluated(state.model, data, "test", plan, epoch, eval_batch_size),
            "lr": state.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        })
        call(hooks, "end_epoch", state)
    if state.stop or state.epoch >= state.epochs:
        call(hooks, "end", state)


def _evaluated(model: nn.Module, data: DataBundle, split: str, plan: EvalPlan, epoch: int,
               batch_size: int) -> dict[str, float | None]:
    """``{split}_loss`` and ``{split}_accuracy`` after ``epoch``, or None for both when the
    plan skips it; an evaluation is remembered in ``plan.latest`` (see :func:`final_metrics`)."""
    if not (plan.val_at(epoch) if split == "val" else plan.test_at(epoch)):
        return skipped(split)
    loss, acc = evaluate(model, getattr(data, split), batch_size)
    plan.latest[split] = (fingerprint(model), loss, acc)
    return {f"{split}_loss": loss, f"{split}_accuracy": acc}


def final_metrics(model: nn.Module, data: DataBundle, batch_size: int,
                  plan: EvalPlan | None = None) -> dict[str, float]:
    """Loss and accuracy of the final weights on the train, val and test splits (the
    summary's). A split the loop evaluated on these very weights (same fingerprint: nothing
    changed them since, e.g. no best-epoch restore) is not forwarded again: the same function
    on the same weights and data gives the same numbers."""
    out: dict[str, float] = {}
    now = fingerprint(model) if plan is not None and plan.latest else None
    for split in ("train", "val", "test"):
        seen = plan.latest.get(split) if plan is not None else None
        if seen is not None and seen[0] == now:
            loss, acc = seen[1], seen[2]
        else:
            loss, acc = evaluate(model, getattr(data, split), batch_size)
        out[f"{split}_loss"], out[f"{split}_accuracy"] = loss, acc
    return out
