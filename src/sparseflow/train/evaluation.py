"""When the per-epoch series evaluates the validation and test splits.

Evaluating is observation only (eval mode, no random draw), so *when* it happens never changes
the weights; it costs a forward pass over each split it touches. ``train.eval_val`` and
``train.eval_test`` choose (see :class:`EvalPlan`); an epoch without an evaluation records
``None`` for that split's loss and accuracy. The summary's final train/val/test evaluation is
made whatever the plan says.

"The end" is the epoch cap: with early stopping or a divergence stop the run's real end is
known only after the epoch's hooks ran, so there the summary's final evaluation is the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from sparseflow.train.probe import is_probe_epoch

#: Keys of an epoch record that a skipped evaluation leaves ``None``.
SPLIT_KEYS = {"val": ("val_loss", "val_accuracy"), "test": ("test_loss", "test_accuracy")}


def resolve_modes(eval_val: str, eval_test: str, *, early_stopping: bool,
                  gradflow: bool) -> tuple[str, str]:
    """The concrete (val, test) modes of the configured ones: ``auto`` resolved, and
    ``probes`` without gradient flow (no probe epochs) is ``end``."""
    val = ("epoch" if early_stopping else "end") if eval_val == "auto" else eval_val
    test = "probes" if eval_test == "auto" else eval_test
    if test == "probes" and not gradflow:
        test = "end"
    return val, test


@dataclass(frozen=True)
class EvalPlan:
    """Which splits to evaluate after an epoch.

    ``val``: 'epoch' | 'end' | 'never'; ``test``: 'epoch' | 'probes' | 'end' (resolved modes,
    see :func:`resolve_modes`). ``epochs`` is the cap; ``probe`` tells whether an epoch is a
    gradient-flow probe epoch (used by ``probes``).
    """

    val: str = "epoch"
    test: str = "epoch"
    epochs: int = 0
    probe: Callable[[int], bool] | None = None
    #: split → (weights fingerprint, loss, accuracy) of its latest evaluation in the loop, so
    #: the final evaluation can reuse it when the weights did not change since (see
    #: :func:`fingerprint`). Not checkpointed: a resumed run evaluates again.
    latest: dict[str, tuple[Any, float, float]] = field(default_factory=dict, compare=False)

    @classmethod
    def from_config(cls, cfg: Any) -> EvalPlan:
        """The plan of an :class:`~sparseflow.config.schema.ExperimentConfig`."""
        es, gf = cfg.train.early_stopping.enabled, cfg.gradflow
        val, test = resolve_modes(cfg.train.eval_val, cfg.train.eval_test,
                                  early_stopping=es, gradflow=gf.enabled)
        epochs = cfg.train.epochs

        def probe(epoch: int) -> bool:
            return is_probe_epoch(epoch, epochs, gf.points, es)

        return cls(val, test, epochs, probe)

    def _at(self, mode: str, epoch: int) -> bool:
        if mode == "epoch":
            return True
        if mode == "never":
            return False
        end = epoch >= self.epochs
        if mode == "end":
            return end
        return end or (self.probe is not None and self.probe(epoch))  # probes

    def val_at(self, epoch: int) -> bool:
        """Whether to evaluate the validation split after ``epoch`` (1 = the first)."""
        return self._at(self.val, epoch)

    def test_at(self, epoch: int) -> bool:
        """Whether to evaluate the test split after ``epoch``."""
        return self._at(self.test, epoch)

    def epochs_of(self, split: str, last: int) -> list[int]:
        """The epochs 1 … ``last`` after which ``split`` ('val' | 'test') is evaluated."""
        at = self.val_at if split == "val" else self.test_at
        return [e for e in range(1, last + 1) if at(e)]

    def passes(self, split: str) -> int:
        """Evaluations of ``split`` in the series of a run that trains to the cap."""
        return len(self.epochs_of(split, self.epochs))

    def record(self) -> dict[str, str]:
        """What the summary states: the resolved modes."""
        return {"val": self.val, "test": self.test}


def fingerprint(model: nn.Module) -> tuple[tuple[int, int, int], ...]:
    """Identity of the model's current weights and buffers: every tensor's (id, storage
    address, version counter). Any in-place change (an optimizer step, re-masking,
    ``load_state_dict``) bumps a version; an evaluation (no grad, eval mode) changes none."""
    return tuple((id(t), t.data_ptr(), t._version)
                 for t in model.state_dict(keep_vars=True).values())


def skipped(split: str) -> dict[str, None]:
    """The epoch-record entries of a split that was not evaluated."""
    return dict.fromkeys(SPLIT_KEYS[split])


def evaluation_record(plan: EvalPlan, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary's ``evaluation``: the resolved modes and the epochs whose record holds a
    validation / test evaluation (the final evaluation of the summary comes on top)."""
    return {**plan.record(),
            "val_epochs": [r["epoch"] for r in history if r.get("val_loss") is not None],
            "test_epochs": [r["epoch"] for r in history if r.get("test_loss") is not None]}
