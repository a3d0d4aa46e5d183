"""When the mask changes and by how much: the rigl reference schedule, as pure functions.

The step counter ``t`` is the reference's ``global_step``: the number of optimizer steps taken
before the current batch. With ``skip_update`` (the reference's RigL) a mask-update batch takes
no optimizer step, so ``t`` does not advance on it and the next batch sees the same ``t``.

The reference (google-research/rigl, ``SparseSETOptimizerBase.is_mask_update_iter``)::

    is_mask_update_iter = (t >= begin_step) & (t <= end_step) & (last_update + frequency <= t)

with ``last_update`` starting at ``-frequency`` ("so that last_update_step + freq = 0. This
enables early mask updates"): the first update is at ``t = begin_step``, then every
``frequency`` steps. The drop fraction (``get_drop_fraction``), ``d0`` the initial value:

- ``constant``: ``d0``;
- ``cosine`` (TF ``cosine_decay`` with alpha 0 over ``decay_steps = end − begin``; note that it
  decays over ``t``, not ``t − begin``):
  ``d0 · 0.5 · (1 + cos(π · min(t, end − begin) / (end − begin)))``;
- ``linear`` (the reference's ``exponential_1``):
  ``d0 · (1 − (t − begin) / (end − begin))``, clipped to ``[0, d0]``.

Everything is computed in float32, as the reference computes it, so that the number dropped,
``int(float32(n_active) · float32(fraction))`` (truncation, TF's cast), is the reference's.
"""

from __future__ import annotations

import math

import torch

from sparseflow.errors import ConfigError

SCHEDULES = ("cosine", "constant", "linear")


def end_step_of(end_fraction: float, total_steps: int) -> int:
    """The last step at which the mask may change: ``floor(end_fraction · total_steps)``."""
    return math.floor(end_fraction * total_steps)


def check_window(start_step: int, end_step: int) -> None:
    """ConfigError when no update could ever happen (the start is past the end step)."""
    if start_step > end_step:
        raise ConfigError(
            f"sparsity.dst.start_step ({start_step}) is past the last update step ({end_step} "
            "= floor(end_fraction × epochs × steps per epoch)); lower start_step or raise "
            "sparsity.dst.end_fraction or train.epochs"
        )


def is_update_step(t: int, last_update: int, *, start_step: int, end_step: int,
                   update_every: int) -> bool:
    """Whether the batch at optimizer step ``t`` updates the mask (the reference's rule).

    ``last_update`` is ``t`` of the previous update, or ``−update_every`` before the first
    one (:func:`first_last_update`).
    """
    return start_step <= t <= end_step and last_update + update_every <= t


def first_last_update(update_every: int) -> int:
    """The initial ``last_update`` of the reference: ``−update_every``."""
    return -update_every


def drop_fraction_at(t: int, *, drop_fraction: float, schedule: str, start_step: int,
                     end_step: int) -> float:
    """The drop fraction at step ``t`` (float32 arithmetic, see the module doc).

    With ``end_step == start_step`` (a single possible update) the decay has no length and the
    fraction is ``drop_fraction``.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown sparsity.dst.drop_schedule {schedule!r}; valid: "
                          f"{', '.join(SCHEDULES)}")
    d0 = torch.tensor(drop_fraction, dtype=torch.float32)
    span = end_step - start_step
    if schedule == "constant" or span <= 0:
        return float(d0)
    decay = torch.tensor(float(span), dtype=torch.float32)
    if schedule == "cosine":
        done = torch.minimum(torch.tensor(float(t), dtype=torch.float32), decay) / decay
        pi = torch.tensor(math.pi, dtype=torch.float32)
        return float(d0 * (0.5 * (1.0 + torch.cos(pi * done))))
    done = torch.tensor(float(t - start_step), dtype=torch.float32) / decay
    return float(d0 * torch.clamp(1.0 - done, 0.0, 1.0))


def drop_count(n_active: int, fraction: float) -> int:
    """How many of ``n_active`` weights to drop: ``int(float32(n) · float32(fraction))``."""
    prod = torch.tensor(float(n_active), dtype=torch.float32) * torch.tensor(
        fraction, dtype=torch.float32)
    return int(prod.to(torch.int64))


def applied_steps(batches: int, *, start_step: int, end_step: int, update_every: int,
                  skip_update: bool = True) -> list[tuple[int, bool, bool]]:
    """Simulate the schedule over ``batches`` batches: for each, ``(t, updates, steps)``.

    ``t`` is the optimizer step count before the batch, ``updates`` whether the mask changes,
    ``steps`` whether the optimizer steps (False on an update batch with ``skip_update``).
    The rigl reference's test vectors (``testApplyGradients``) are the ``steps`` column.
    """
    out = []
    t, last = 0, first_last_update(update_every)
    for _ in range(batches):
        update = is_update_step(t, last, start_step=start_step, end_step=end_step,
                                update_every=update_every)
        if update:
            last = t
        steps = not (update and skip_update)
        out.append((t, update, steps))
        t += int(steps)
    return out
