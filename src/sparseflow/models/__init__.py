"""Width-parametrized model families (mlp, cnn, wrn, wrn50), activations, inits, seeded dropout.

Importing this package registers every built-in model (``MODELS``), activation
(``ACTIVATIONS``) and init (``INITS``). Randomness is explicit: :func:`build_model` and
:func:`init_model_` draw only from the generator they are given, and :class:`SeededDropout`
draws its masks from the generator set by :func:`set_dropout_generator`.
"""

from __future__ import annotations

# Registering modules: each import fills a registry as a side effect.
from sparseflow.models import activations, cnn, inits, mlp, wrn, wrn50  # noqa: F401
from sparseflow.models.activations import PARAMETRIC_ACTIVATIONS, SReLU
from sparseflow.models.build import build_model, init_model_
from sparseflow.models.cnn import CNN, ConvBlock, build_cnn, cnn_channels
from sparseflow.models.dropout import SeededDropout, set_dropout_generator
from sparseflow.models.inits import fans, init_std
from sparseflow.models.mlp import MLP, MLPBlock, build_mlp
from sparseflow.models.wrn import WideBasicBlock, WideResNet, build_wrn, wrn_blocks_per_stage
from sparseflow.models.wrn50 import Bottleneck, WideResNet50, build_wrn50
from sparseflow.registry import ACTIVATIONS, INITS, MODELS

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "INITS",
    "MLP",
    "MODELS",
    "PARAMETRIC_ACTIVATIONS",
    "Bottleneck",
    "ConvBlock",
    "MLPBlock",
    "SReLU",
    "SeededDropout",
    "WideBasicBlock",
    "WideResNet",
    "WideResNet50",
    "build_cnn",
    "build_mlp",
    "build_model",
    "build_wrn",
    "build_wrn50",
    "cnn_channels",
    "fans",
    "init_model_",
    "init_std",
    "set_dropout_generator",
    "wrn_blocks_per_stage",
]
