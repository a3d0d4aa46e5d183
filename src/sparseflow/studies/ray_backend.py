"""The Ray backend: each run group is one Ray task on a cluster; the driver stays the only
writer of the study store.

Tasks train their group with :func:`~sparseflow.studies.worker.execute_group` and write only
their own run directories under ``runs_dir``, so every node needs the study directory on a
shared filesystem, mounted at the same path. What a task returns (its Outcomes) travels back
to the driver, which records it. A training error is already a failed Outcome inside the task;
only system failures (a worker process or a node dying) make Ray retry a task.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sparseflow.errors import ConfigError
from sparseflow.studies.executor import Started, default_jobs
from sparseflow.studies.grouping import RunGroup
from sparseflow.studies.worker import Outcome, execute_group

#: CPUs Ray reserves for one task, and the torch threads the task uses.
TASK_CPUS = 1
#: Times Ray re-runs a task whose worker process or node died, before its runs count as failed.
MAX_RETRIES = 3
#: Groups in flight per cluster CPU: enough to keep every CPU busy while results travel back,
#: few enough that a 10,000-run study is not submitted at once.
IN_FLIGHT_PER_CPU = 2
#: Seconds the driver waits for cancelled tasks to end before it lets go of the study.
CANCEL_WAIT_S = 30.0

#: What a task runs on its group: ``(items, runs_dir) -> outcomes``.
Execute = Callable[[list[tuple[str, dict[str, Any]]], str], list[Outcome]]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'sparseflow[ray]'") from None
    return ray


@contextmanager
def _loopback() -> Iterator[None]:
    """Keep this process's Ray on 127.0.0.1 while it starts or joins a cluster.

    Ray replaces a loopback address by the host's routable one (and its servers then listen on
    every interface) unless its single-machine mode, the one it uses on macOS and Windows, is
    on. The mode is switched on only for the start: started processes keep the address given.
    """
    from ray._private import ray_constants

    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, or 'auto'
        return False


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Raise a one-line ConfigError when nothing listens at ``HOST:PORT`` (Ray itself keeps
    retrying a wrong address for many minutes). Other forms ('auto', 'ray://...') pass."""
    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start "
                          "one with `ray start --head`, or fix --address/RAY_ADDRESS") from None


def start_local_cluster(num_cpus: int) -> str:
    """Start a single-machine Ray cluster owned by this process, listening on 127.0.0.1 only;
    returns its address. ``ray.shutdown()`` stops it."""
    ray = _import_ray()
    with _loopback():
        # address="local": always a new cluster, never one that happens to run on this host.
        context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                           _node_ip_address="127.0.0.1")
    return str(context.address_info["address"])


def _connect(ray: Any, address: str | None, num_cpus: int | None = None) -> bool:
    """Connect this driver to Ray; returns whether the caller must ``ray.shutdown()`` after."""
    if ray.is_initialized():
        return False  # the caller's session (a notebook, a test fixture) is theirs to end
    target = address or os.environ.get("RAY_ADDRESS")
    if not target:
        start_local_cluster(num_cpus or default_jobs())
        return True
    check_reachable(target)
    if _is_loopback(target):
        with _loopback():  # a cluster on this host's loopback (as the tests start)
            ray.init(address=target, _node_ip_address="127.0.0.1")
    else:
        ray.init(address=target)  # a driver's connection: shutting it down leaves the cluster
    return True


def _run_group(execute: Execute, items: list[tuple[str, dict[str, Any]]],
               runs_dir: str, plugins: tuple[str, ...] = ()) -> list[Outcome]:
    """The body of one Ray task (runs on a worker)."""
    import torch

    import sparseflow  # noqa: F401 - fills the component registries the configs name
    from sparseflow.plugins import PluginError, load_plugins

    try:
        # Ray reuses worker processes: a module is imported once per process, on its node.
        load_plugins(plugins)
    except PluginError as exc:
        raise PluginError(f"{exc} (on Ray node {socket.gethostname()}: install the plugin "
                          "on every node, as sparseflow itself)") from None

    # Ray reserves TASK_CPUS for the task; more torch threads would oversubscribe the node.
    torch.set_num_threads(TASK_CPUS)
    return execute(items, runs_dir)


def _runtime_env() -> dict[str, Any]:
    """With ``SPARSEFLOW_PORTABLE`` set for the driver, tasks run in workers started with the
    same pinned CPU code paths, whatever environment the nodes' ``ray start`` had (the
    variables must be there before the worker's first tensor operation)."""
    from sparseflow._portable import PORTABLE_ENV, portable_requested

    if not portable_requested():
        return {}
    env = {k: os.environ.get(k, v) for k, v in PORTABLE_ENV.items()}
    return {"runtime_env": {"env_vars": {"SPARSEFLOW_PORTABLE": "1", **env}}}


def _error_text(exc: Exception) -> str:
    """One line for the store: the exception a task raised, or the system failure."""
    cause = getattr(exc, "cause", None)  # RayTaskError wraps the task's own exception
    text = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(exc)
    return f"ray task failed ({type(exc).__name__}): {' '.join(text.split())[:500]}"


def ray_backend(groups: list[RunGroup], runs_dir: str, started: Started, *,
                address: str | None = None, num_cpus: int | None = None,
                execute: Execute = execute_group,
                plugins: tuple[str, ...] = ()) -> Iterator[Outcome]:
    """Run ``groups`` as Ray tasks, one task per group; yields Outcomes as tasks complete.

    Connects to ``address`` (else ``RAY_ADDRESS``, else a new loopback-only local cluster with
    one CPU per core); reuses a Ray session this process already has. Ray re-runs a task whose
    worker or node died up to ``MAX_RETRIES`` times; after that, and for any other Ray error,
    the group's runs come back as failed Outcomes (retried by the next ``study run``).
    ``started(key)`` is called for each member when its group is submitted. ``execute`` is what
    a task runs on its group (tests substitute one that crashes its worker). Each task imports
    ``plugins`` (and the installed entry-point plugins) first: every node must be able to import
    them, as it imports sparseflow (nothing is shipped from the driver).
    """
    ray = _import_ray()
    if not groups:
        return  # nothing to run: do not start a cluster
    # Workers may run elsewhere, in another working directory: hand them an absolute path.
    runs_dir = str(Path(runs_dir).resolve())
    owned = _connect(ray, address, num_cpus)
    task = ray.remote(num_cpus=TASK_CPUS, max_retries=MAX_RETRIES, retry_exceptions=False,
                      **_runtime_env())(_run_group)
    limit = max(1, IN_FLIGHT_PER_CPU * int(ray.cluster_resources().get("CPU", 1)))
    queue = list(reversed(groups))
    pending: dict[Any, RunGroup] = {}  # ObjectRef -> its group
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                group = queue.pop()
                for key in group.keys:
                    started(key)
                items = [(r.run_key, r.config) for r in group.runs]
                pending[task.remote(execute, items, runs_dir, tuple(plugins))] = group
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            group = pending.pop(ref)
            try:
                outcomes = ray.get(ref)
            except ray.exceptions.RayError as exc:  # retries spent, task cancelled, ...
                outcomes = [Outcome(key, False, error=_error_text(exc)) for key in group.keys]
            yield from outcomes
    finally:
        # The driver stopped early (fail-fast, an interrupt): stop the tasks it no longer
        # waits for, killing their worker processes (force: a task deep in a batched group
        # would otherwise finish its group first), and wait until they are gone, so that no
        # task still writes a run directory once the study is released. Their runs resume
        # from their checkpoints next time.
        for ref in pending:
            ray.cancel(ref, force=True)
        if pending:
            ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_S)
        if owned:
            ray.shutdown()
