"""Typed, frozen experiment configs, YAML loading, dotted overrides and run identity."""

from sparseflow.config.identity import canonical, canonical_json, config_id, run_name
from sparseflow.config.io import build_config, dump_config, load_config, read_yaml
from sparseflow.config.schema import (
    DataConfig,
    EarlyStoppingConfig,
    ExperimentConfig,
    GradFlowConfig,
    ModelConfig,
    OptimConfig,
    RegularizationConfig,
    ScheduleConfig,
    SparsityConfig,
    TrainConfig,
)

__all__ = [
    "DataConfig",
    "EarlyStoppingConfig",
    "ExperimentConfig",
    "GradFlowConfig",
    "ModelConfig",
    "OptimConfig",
    "RegularizationConfig",
    "ScheduleConfig",
    "SparsityConfig",
    "TrainConfig",
    "build_config",
    "canonical",
    "canonical_json",
    "config_id",
    "dump_config",
    "load_config",
    "read_yaml",
    "run_name",
]
