"""Explicit randomness: one seeded ``torch.Generator`` per stream.

Streams are independent: changing how many random numbers one consumer draws (say, turning
augmentation on) never shifts another (the data order, the mask). Library code never seeds
the global RNG.
"""

from __future__ import annotations

import hashlib

import torch

#: Every random stream a run uses.
STREAMS = ("init", "mask", "data", "augment", "dropout", "probe")


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream`` derived from the run seed (SHA-256, stable everywhere)."""
    digest = hashlib.sha256(f"sparseflow:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def make_generators(seed: int) -> dict[str, torch.Generator]:
    """One CPU generator per stream in :data:`STREAMS`, seeded from ``seed``."""
    return {s: torch.Generator().manual_seed(stream_seed(seed, s)) for s in STREAMS}


def generator_states(gens: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """Snapshot of every generator's state (for checkpoints)."""
    return {k: g.get_state() for k, g in gens.items()}


def load_generator_states(gens: dict[str, torch.Generator],
                          states: dict[str, torch.Tensor]) -> None:
    """Restore generator states saved by :func:`generator_states`."""
    for k, s in states.items():
        gens[k].set_state(s)
