"""Vectorized training: K same-shape runs (seeds, masks, learning rates of one cell) trained as
one batched computation, with results equal to separate runs within float tolerance."""

from sparseflow.train.vectorized.group import (
    GROUPS_DIR,
    group_checkpoint,
    group_id,
    run_group,
    shape_key,
)

__all__ = ["GROUPS_DIR", "group_checkpoint", "group_id", "run_group", "shape_key"]
