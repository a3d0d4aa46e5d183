"""A timed probe of one run group's real pieces on this machine, for the study estimate.

The members are built exactly as ``study run`` builds them (:func:`~sparseflow.train.build_run`
per member, then the vectorized group's stacked state when K > 1), and timed with the project's
own code: a few training steps of :func:`sparseflow.train.loop.train_epoch` (or the vectorized
loop's ``train_epoch``) on one batch each, one evaluation pass, one gradient-flow point, one
epoch checkpoint and one member's final files. The data are slices of the study's own dataset,
so tensors have the real shapes (and augmentation its real cost); evaluation and probe passes
run on at most :data:`SAMPLE` examples (fewer for a model whose steps are slow) and are scaled
to the real sizes per example.

:func:`group_pays` times one step of a group batched against one step of a member alone: the
measured rule by which a study worker batches a group or trains its members one by one.

Nothing global moves: the CPU (and initialized CUDA) RNGs, Python's and NumPy's RNGs and the grad
mode are restored, and the work runs at the run's own ``train.threads`` (as the run will; see
:mod:`sparseflow.train.determinism`), after which torch's thread setting is restored.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from sparseflow.config.schema import ExperimentConfig
from sparseflow.data import DataBundle, Split

#: Most examples one evaluation or probe measurement runs on (scaled per example beyond) …
SAMPLE = 1024
#: … fewer when a pass over them would take longer than this (judged from the step time) …
PASS_TIME_S = 0.1
#: … but never fewer than this.
MIN_SAMPLE = 32
#: A timed step is repeated until this many seconds are spent (at least MIN_STEPS times).
STEP_TIME_S = 0.03
MIN_STEPS, MAX_STEPS = 3, 10


@dataclass(frozen=True)
class Throughput:
    """Measured seconds of one run group's pieces (K runs trained together; K = 1 is a run
    alone), at the group's ``train.threads``."""

    build_s: float  #: building the K members (and their stacked state)
    step_s: float  #: one training step of all K models
    eval_s_per_example: float  #: per-epoch evaluation (val, test), per example, all K
    probe_s: float  #: one gradient-flow point of all K (0 when not measured or 'batch')
    final_s_per_example: float  #: a member's final evaluation (one model), per example
    checkpoint_s: float  #: one epoch checkpoint
    write_s: float  #: one member's final files (final.pt, summary.json)

    def as_dict(self) -> dict[str, float]:
        """Component name → seconds."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def for_members(self, factor: float) -> Throughput:
        """The group's pieces with ``factor`` times the members (the per-member final
        evaluation and files stay): for a group timed with fewer members than it has."""
        return replace(self, build_s=self.build_s * factor, step_s=self.step_s * factor,
                       eval_s_per_example=self.eval_s_per_example * factor,
                       probe_s=self.probe_s * factor, checkpoint_s=self.checkpoint_s * factor)


COMPONENTS: tuple[str, ...] = tuple(f.name for f in fields(Throughput))


@contextlib.contextmanager
def untouched_global_state() -> Iterator[None]:
    """Restore every global RNG and the grad mode on exit (threads: see pinned_threads)."""
    py, np_state, grad = random.getstate(), np.random.get_state(), torch.is_grad_enabled()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_grad_enabled(grad)


def warm_up() -> float:
    """Pay this process's one-time set-up and return its seconds: the first torch optimizer
    imports ``torch._dynamo`` (about a second on a quiet machine), the first backward starts
    autograd's engine. Every study worker pays it before its first run; a later call costs
    next to nothing."""
    with untouched_global_state():
        t0 = time.perf_counter()
        w = torch.zeros(2, requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.1)
        (w * 2.0).sum().backward()
        opt.step()
        return time.perf_counter() - t0


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _median_call(fn: Callable[[], object]) -> float:
    """Median seconds of ``fn`` after one warm-up call (first-call allocations, optimizer
    state), repeated for about :data:`STEP_TIME_S`."""
    first = _timed(fn)
    times: list[float] = []
    spent = 0.0
    while len(times) < MAX_STEPS and (len(times) < MIN_STEPS or spent < STEP_TIME_S):
        times.append(_timed(fn))
        spent += times[-1]
        if first > 10 * STEP_TIME_S and times:  # a slow model: one timed step is enough
            break
    return statistics.median(times)


def _probe_point(seconds: float, n: int, real: int, step_s: float, batch: int) -> float:
    """One gradient-flow point on ``real`` examples from one timed on ``n``: what it costs
    beyond its examples (gradients to float64, the norms of every layer) is in ``seconds``;
    each further example costs a forward and backward pass, as in a training step."""
    return seconds + max(real - n, 0) * step_s / max(batch, 1)


def _slice(split: Split, n: int) -> Split:
    return Split(split.x[:n], split.y[:n])


def _pass_examples(step_s: float, batch: int, available: int) -> int:
    """Examples to time one evaluation or probe pass on: a forward pass costs about a third
    of a training step per example, so this many take about :data:`PASS_TIME_S`."""
    per_example = step_s / (3 * max(batch, 1))
    n = int(PASS_TIME_S / per_example) if per_example > 0 else SAMPLE
    return max(1, min(available, SAMPLE, max(n, MIN_SAMPLE)))


def _probe_examples(cfg: ExperimentConfig, n_train: int) -> int:
    """Examples in one gradient-flow point of the real run (0: no separate probe pass)."""
    gf = cfg.gradflow
    if not gf.enabled or gf.probe_set == "batch":
        return 0
    return min(gf.probe_size, n_train) if gf.probe_set == "fixed" else n_train


@dataclass(frozen=True)
class _Data:
    build: DataBundle  # the members are built on this (its train split sizes the probe set)
    one_step: DataBundle  # its train split is one batch: train_epoch runs one step
    sample: Split  # the largest evaluation sample
    real_probe: int  # examples of the real run's gradient-flow pass (0: none)


def _data(cfg: ExperimentConfig, data: DataBundle) -> _Data:
    n_train = len(data.train)
    real_probe = _probe_examples(cfg, n_train)
    batch = max(1, min(cfg.train.batch_size, n_train))
    evals = max((data.test, data.val, data.train), key=len)
    sample = _slice(evals, min(len(evals), cfg.train.eval_batch_size, SAMPLE))
    build = replace(data, train=_slice(data.train, max(min(real_probe, SAMPLE), batch)),
                    val=sample, test=sample)
    return _Data(build, replace(build, train=_slice(data.train, batch)), sample, real_probe)


def measure(cfgs: Sequence[ExperimentConfig], data: DataBundle,
            scratch: str | Path | None = None) -> Throughput:
    """Time the pieces of training ``cfgs`` as one group (one config: a run alone) on
    ``data`` (the study's dataset for them, loaded). Files are timed in a temporary folder
    under ``scratch`` (default: the system's), on the file system the study will write.
    Leaves no file and no global state behind."""
    from sparseflow.train.determinism import pinned_threads

    cfgs = list(cfgs)
    with untouched_global_state(), pinned_threads(cfgs[0].train.threads), \
            tempfile.TemporaryDirectory(prefix=".sparseflow-probe-", dir=scratch) as tmp:
        parts = _data(cfgs[0], data)
        if len(cfgs) == 1:
            return _measure_single(cfgs[0], parts, Path(tmp))
        return _measure_group(cfgs, parts, Path(tmp))


def _per_example(seconds: float, split: Split) -> float:
    return seconds / max(len(split), 1)


def _write_s(model: torch.nn.Module, mask: object, gradflow: bool, tmp: Path) -> float:
    """A member's own files, as the run writes them (durable atomic writes, one fsync each):
    config.json and mask.pt at the start; final.pt, metrics.json, gradflow.json and
    summary.json at the end. Small placeholders stand in for the JSON: the fsyncs dominate."""
    from sparseflow.utils.atomic import atomic_torch_save, atomic_write_json

    def write() -> None:
        atomic_write_json(tmp / "config.json", {"probe": True})
        if mask is not None:
            mask.save(tmp / "mask.pt")  # type: ignore[attr-defined]
        atomic_torch_save(model.state_dict(), tmp / "final.pt")
        for name in ("metrics", "gradflow", "summary") if gradflow else ("metrics", "summary"):
            atomic_write_json(tmp / f"{name}.json", [{"epoch": 0}])

    return _timed(write)


def _measure_single(cfg: ExperimentConfig, d: _Data, tmp: Path) -> Throughput:
    import torch.nn.functional as F

    from sparseflow.gradflow import measure_gradient_flow
    from sparseflow.train.build import build_run
    from sparseflow.train.loop import evaluate, train_epoch
    from sparseflow.train.probe import GradFlowProbe
    from sparseflow.train.run import save_checkpoint

    built = None

    def build() -> None:
        nonlocal built
        built = build_run(cfg, d.build)

    build_s = _timed(build)
    assert built is not None
    st, bs = built.state, cfg.train.batch_size
    step_s = _median_call(lambda: train_epoch(st, d.one_step, built.hooks, batch_size=bs,
                                              drop_last=False))
    sample = _slice(d.sample, _pass_examples(step_s, bs, len(d.sample)))
    eval_s = _per_example(_timed(lambda: evaluate(st.model, sample,
                                                  cfg.train.eval_batch_size)), sample)
    probe_s = 0.0
    hook = next((h for h in built.hooks if isinstance(h, GradFlowProbe)), None)
    if hook is not None and d.real_probe and hook.x is not None and hook.y is not None:
        n = _pass_examples(step_s, bs, len(hook.x))
        x, y = hook.x[:n], hook.y[:n]

        def point() -> None:  # what the hook's measurement does, on n of its examples
            st.model.train()
            measure_gradient_flow(st.model, F.cross_entropy, x, y, hook.mask,
                                  include_all=cfg.gradflow.include_all, batch_size=hook.chunk)

        probe_s = _probe_point(_timed(point), n, d.real_probe, step_s, bs)
    (tmp / "run").mkdir()
    return Throughput(build_s=build_s, step_s=step_s, eval_s_per_example=eval_s,
                      probe_s=probe_s, final_s_per_example=eval_s,
                      checkpoint_s=_timed(lambda: save_checkpoint(tmp / "run", built)),
                      write_s=_write_s(st.model, built.mask, cfg.gradflow.enabled, tmp))


def _measure_group(cfgs: list[ExperimentConfig], d: _Data, tmp: Path) -> Throughput:
    from sparseflow.gradflow.measures import trainable_parameters
    from sparseflow.optim import decay_targets
    from sparseflow.train.build import build_run
    from sparseflow.train.loop import evaluate as evaluate_one
    from sparseflow.train.vectorized import loop
    from sparseflow.train.vectorized.group import _group_state
    from sparseflow.utils.atomic import atomic_torch_save

    cfg = cfgs[0]
    built: list = []
    state = None

    def build() -> None:
        nonlocal built, state
        built = [build_run(c, d.build) for c in cfgs]
        state = _group_state(cfgs, built)

    build_s = _timed(build)
    assert state is not None
    model0 = built[0].state.model
    # the names the vectorized run uses (as sparseflow.train.vectorized.group._train)
    names = list(trainable_parameters(model0, cfg.gradflow.include_all))
    decay = [n for n, p in model0.named_parameters()
             if any(p is t for t in decay_targets(model0, cfg.regularization.l2_on_all))]
    step_s = _median_call(lambda: loop.train_epoch(state, d.one_step, decay))
    bs = cfg.train.batch_size
    sample = _slice(d.sample, _pass_examples(step_s, bs, len(d.sample)))
    eval_s = _per_example(_timed(lambda: loop.evaluate(state, sample,
                                                       cfg.train.eval_batch_size)), sample)
    probe_s = 0.0
    if d.real_probe:
        # the probe sets as the vectorized run stacks them (group._probe_fn), n examples each
        if cfg.gradflow.probe_set == "full":
            xs, ys = d.build.train.x.unsqueeze(0), d.build.train.y.unsqueeze(0)
            xs = xs.expand(state.k, *xs.shape[1:])
            ys = ys.expand(state.k, *ys.shape[1:])
            chunk = cfg.train.eval_batch_size
        else:
            xs = torch.stack([m.probe_x for m in state.members])
            ys = torch.stack([m.probe_y for m in state.members])
            chunk = None
        n = _pass_examples(step_s, bs, xs.shape[1])
        probe_s = _probe_point(_timed(lambda: loop.probe(state, xs[:, :n], ys[:, :n], names,
                                                         chunk)), n, d.real_probe, step_s, bs)
    one = _slice(d.sample, _pass_examples(step_s / state.k, bs, len(d.sample)))
    final_s = _per_example(_timed(lambda: evaluate_one(model0, one,
                                                       cfg.train.eval_batch_size)), one)
    ckpt_s = _timed(lambda: atomic_torch_save(state.state_dict(), tmp / "group.pt",
                                              durable=False))
    return Throughput(build_s=build_s, step_s=step_s, eval_s_per_example=eval_s,
                      probe_s=probe_s, final_s_per_example=final_s, checkpoint_s=ckpt_s,
                      write_s=_write_s(model0, built[0].mask, cfg.gradflow.enabled, tmp))


#: A process older than this at a command's start is no fresh one (the command was called
#: in-process, e.g. from Python): its age says nothing about a worker's start-up.
FRESH_PROCESS_MAX_S = 60.0


def startup_s() -> float | None:
    """Seconds since this process started when that is a fresh process's start-up (Linux;
    None elsewhere or when older than :data:`FRESH_PROCESS_MAX_S`): called first thing in a
    command, the cost of an interpreter with sparseflow imported — what a study worker pays
    before its first run."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            # the command name (field 2) may hold spaces: fields after its closing ')'
            stat = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        age = uptime - int(stat[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return age if 0.0 <= age <= FRESH_PROCESS_MAX_S else None


#: A group is trained as one batched computation only when its measured step takes less than
#: this fraction of its members' steps taken one by one: it must save a tenth, as the group's
#: other costs (stacking, per-member final files) and the measurement's noise are not in it.
GROUP_PAYOFF = 0.9


@dataclass(frozen=True)
class GroupDecision:
    """Whether batching a group pays, from one measured step of each way of training it."""

    batched: bool
    single_step_s: float  #: one training step of one member, alone
    group_step_s: float  #: one training step of all K members, batched
    k: int

    @property
    def ratio(self) -> float:
        """Batched step / K single steps (< :data:`GROUP_PAYOFF`: batch)."""
        return self.group_step_s / max(self.k * self.single_step_s, 1e-12)


def group_pays(cfgs: Sequence[ExperimentConfig], data: DataBundle) -> GroupDecision:
    """Time one training step of ``cfgs[0]`` alone and of all ``cfgs`` batched (the project's
    own loops, on one batch of the study's data, at the runs' ``train.threads``) and say
    whether the group is worth batching (see :data:`GROUP_PAYOFF`). Batching pays where a
    step is mostly per-step overhead (small models, small batches) and not where it is
    compute bound (the batched matmuls cost what the separate ones do). Leaves no global
    state behind."""
    from sparseflow.optim import decay_targets
    from sparseflow.train.build import build_run
    from sparseflow.train.determinism import pinned_threads
    from sparseflow.train.loop import train_epoch
    from sparseflow.train.vectorized import loop
    from sparseflow.train.vectorized.group import _group_state

    cfgs = list(cfgs)
    cfg = cfgs[0]
    with untouched_global_state(), pinned_threads(cfg.train.threads):
        d = _data(cfg, data)
        one = build_run(cfg, d.build)
        single = _median_call(lambda: train_epoch(one.state, d.one_step, one.hooks,
                                                  batch_size=cfg.train.batch_size,
                                                  drop_last=False))
        built = [build_run(c, d.build) for c in cfgs]
        state = _group_state(cfgs, built)
        model0 = built[0].state.model
        decay = [n for n, p in model0.named_parameters()
                 if any(p is t for t in decay_targets(model0, cfg.regularization.l2_on_all))]
        group = _median_call(lambda: loop.train_epoch(state, d.one_step, decay))
    ratio_ok = group < GROUP_PAYOFF * len(cfgs) * single
    return GroupDecision(ratio_ok, single, group, len(cfgs))
