"""What makes a run bitwise reproducible on CPU, and the record of it in ``summary.json``.

PyTorch's CPU kernels split reductions (a loss mean, BatchNorm statistics, a bias gradient,
a norm) into one chunk per intra-op thread, and float addition is not associative: the same run
at 1 and at 2 threads differs in the last bits after one step, and training amplifies that.
MKL's ``MKL_CBWR`` pins only the BLAS calls, not these reductions. So a run computes with a
fixed number of intra-op threads taken from its config (``train.threads``, default 1), whatever
torch's global setting, ``OMP_NUM_THREADS``, the executor or the number of study workers; the
global setting is restored afterwards. A different ``train.threads`` is a different
computation, and so a different run id.

Across machines, the kernels also depend on the CPU's vector instructions (PyTorch dispatches
AVX-512 or AVX2 code; MKL and oneDNN choose their own paths). ``SPARSEFLOW_PORTABLE=1`` in the
environment, before the first tensor operation of the process, pins all three to AVX2 (see
:func:`apply_portable_env`), so that x86-64 machines with AVX2 can compute the same bits.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator
from typing import Any

from sparseflow._portable import PORTABLE_ENV, apply_portable_env, portable_requested

__all__ = ["PORTABLE_ENV", "apply_portable_env", "pinned_threads", "portable_requested",
           "reproducibility"]

@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Compute with exactly ``threads`` intra-op threads inside the block, then restore."""
    import torch

    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@functools.cache
def _blas() -> str:
    import torch

    cfg = torch.__config__.show()
    for line in cfg.splitlines():
        if "Math Kernel Library" in line:
            return "mkl " + line.split("Version", 1)[-1].split("-", 1)[0].strip()
    info = next((part.split("=", 1)[1] for part in cfg.replace(",", "\n").split("\n")
                 if part.strip().startswith("BLAS_INFO=")), "unknown")
    return info.strip()


@functools.cache
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reproducibility(threads: int, device: str) -> dict[str, Any]:
    """What a bitwise reproduction of this run depends on (stored in ``summary.json``).

    Same config and seed give the same bits when these match: the software (torch, BLAS), the
    CPU code path (``cpu_capability``, or ``mode: portable`` on any x86-64 CPU with AVX2 — an
    aim we state, checked on the CPUs we had), the intra-op threads, and the device (a GPU run
    is not bitwise reproducible unless deterministic algorithms are on, and never equals a
    CPU run).
    """
    import torch

    portable = {k: os.environ.get(k) for k in PORTABLE_ENV}
    pinned = all(portable[k] for k in PORTABLE_ENV)
    mode = ("portable" if pinned and torch.backends.cpu.get_cpu_capability() == "AVX2"
            else "machine")
    return {
        "mode": mode,
        "threads": threads,
        "device": device,
        "torch": torch.__version__,
        "blas": _blas(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "env": {k: v for k, v in portable.items() if v is not None},
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
