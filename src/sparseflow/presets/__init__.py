"""The paper's experiments as ready study specs, at three scales.

``cpu``: the design shrunk to run within about an hour on 2 CPU cores on real Fashion-MNIST
(8,000 training images, 10 epochs; each file says what was shrunk and how long it took);
``laptop``: all 60,000 Fashion-MNIST training images, trained to convergence (early stopping),
sized to finish in at most 2 hours on 2 cores; ``full``: the paper's grid (sparse width 3076,
dense widths 0.1 … 0.9 of it, 1/2/4 hidden layers, lr 0.001 and 0.1, Fashion-MNIST,
CIFAR-10, CIFAR-100), for a GPU machine or a cluster.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sparseflow.errors import ConfigError
from sparseflow.registry import unknown_name_message

PRESETS = ("bn", "ewma", "activations", "correlation", "dst_bn")
SCALES = ("cpu", "laptop", "full")


def preset_path(name: str, scale: str = "cpu") -> Path:
    """The study file of preset ``name`` at ``scale``; ConfigError naming the valid ones."""
    if name not in PRESETS:
        raise ConfigError(unknown_name_message("preset", name, list(PRESETS)))
    if scale not in SCALES:
        raise ConfigError(f"--scale must be one of {', '.join(SCALES)}, not {scale!r}")
    return Path(str(resources.files("sparseflow.presets") / scale / f"{name}.yaml"))
