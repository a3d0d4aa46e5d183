"""Width-parametrized model families, activations, initializations and seeded dropout.

Importing this package registers every built-in model (``MODELS``), activation
(``ACTIVATIONS``) and init (``INITS``). Randomness is explicit: :func:`build_model` and
:func:`init_model_` draw only from the generator they are given, and :class:`SeededDropout`
draws its masks from the generator set by :func:`set_dropout_generator`.
"""

from __future__ import annotations

# Registering modules: each import fills a registry as a side effect.
from sparseflow.models import activations, inits, mlp  # noqa: F401
from sparseflow.models.activations import PARAMETRIC_ACTIVATIONS, SReLU
from sparseflow.models.build import build_model, init_model_
from sparseflow.models.dropout import SeededDropout, set_dropout_generator
from sparseflow.models.inits import fans, init_std
from sparseflow.models.mlp import MLP, MLPBlock, build_mlp
from sparseflow.registry import ACTIVATIONS, INITS, MODELS

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MLP",
    "MODELS",
    "PARAMETRIC_ACTIVATIONS",
    "MLPBlock",
    "SReLU",
    "SeededDropout",
    "build_mlp",
    "build_model",
    "fans",
    "init_model_",
    "init_std",
    "set_dropout_generator",
]
