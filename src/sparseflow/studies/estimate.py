"""A rough time estimate for a planned study: arithmetic count × this machine's speed.

Per run: training costs ≈ 6 multiply-adds per weight per example (forward + backward, with the
masked wide matrices of sparse runs computed densely, as they are), evaluation of the validation
and test splits ≈ 2 per weight per example per epoch, plus a fixed per-step overhead. The speed
is measured with a short matmul benchmark at the study's batch size.
"""

from __future__ import annotations

import math
import time
from collections import Counter

import torch

from sparseflow.config.schema import ExperimentConfig
from sparseflow.data import load_data
from sparseflow.prunable import prunable_parameters
from sparseflow.registry import MODELS
from sparseflow.studies.plan import Plan

#: Seconds of Python and optimizer overhead per training step of a small model (measured on
#: a 2-core machine; the order of magnitude is what matters).
STEP_OVERHEAD_S = 4e-4


def _weights(cfg: ExperimentConfig, input_shape: tuple[int, ...], classes: int) -> int:
    with torch.device("meta"):
        model = MODELS.get(cfg.model.name)(cfg.model, input_shape, classes,
                                           cfg.regularization.dropout)
    return sum(p.numel() for p in prunable_parameters(model).values())


def _flops_per_second(batch: int, fan_in: int, width: int) -> float:
    # The shape of the run's largest matmul (input layer or hidden layer): small benchmark
    # matrices would understate the speed of the real ones.
    a, b = torch.randn(batch, fan_in), torch.randn(fan_in, width)
    a @ b  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.2:
        a @ b
        reps += 1
    return 2.0 * batch * fan_in * width * reps / (time.perf_counter() - t0)


def estimate_seconds(plan: Plan) -> tuple[float, str]:
    """(seconds of compute for all runs on one core, how it was estimated)."""
    sizes: dict[str, tuple[int, int, int, tuple[int, ...], int]] = {}
    total = 0.0
    # Seeds of one config cost the same: estimate each config once and weigh it by its seeds
    # (a 20,000-run plan has a tenth as many configs with 10 seeds).
    replicas = Counter(r.config_id for r in plan.runs)
    first = {r.config_id: r for r in reversed(plan.runs)}
    configs = [ExperimentConfig.model_validate(first[cid].config) for cid in replicas]
    weights: dict[tuple[str, float, str], int] = {}
    speed = 0.0
    for cfg, n_runs in zip(configs, replicas.values(), strict=True):
        key = cfg.data.model_dump_json()
        if key not in sizes:
            data = load_data(cfg.data)
            sizes[key] = (len(data.train), len(data.val), len(data.test), data.input_shape,
                          data.num_classes)
        n_train, n_val, n_test, shape, classes = sizes[key]
        if not speed:
            biggest = max(configs, key=lambda c: c.model.width)
            with torch.random.fork_rng(devices=[]):  # randn must not move the global RNG
                speed = _flops_per_second(biggest.train.batch_size,
                                          max(math.prod(shape), biggest.model.width),
                                          biggest.model.width)
        # Configs that differ only in optimizer, lr, regularization … share a model shape.
        shape_id = (cfg.model.model_dump_json(), cfg.regularization.dropout, key)
        if shape_id not in weights:
            weights[shape_id] = _weights(cfg, shape, classes)
        w = weights[shape_id]
        epochs = cfg.train.epochs
        steps = epochs * math.ceil(n_train / cfg.train.batch_size)
        flops = 2 * w * epochs * (3 * n_train + n_val + n_test)
        total += n_runs * (flops / speed + steps * STEP_OVERHEAD_S)
    return total, f"rough: {speed / 1e9:.1f} GFLOP/s measured, early stopping ignored"
