"""Ray start-up: a local Ray or a cluster joined, its size, and where trials can be placed."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from hpsearch.scripts.tune import internals
from hpsearch.search_spaces.schema import SearchSpace


def connect(address: str) -> None:
    """``ray.init`` against the existing cluster at ``address``."""
    import ray

    from hpsearch.search_spaces.errors import ConfigError

    sends_token = internals.enable_token_auth_if_available()
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401 - Ray Client's transport
        except ImportError:
            raise ConfigError(
                f"--address {address}: Ray Client needs `pip install 'ray[client]'`; or run "
                "the sweep on the cluster with `ray job submit -- hpsearch sweep … --address auto`"
            ) from None
    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        hint = "" if sends_token else (
            " (if the cluster uses token auth, copy the head's ~/.ray/auth_token here "
            "or set RAY_AUTH_TOKEN)")
        raise ConfigError(f"--address {address}: {str(exc).splitlines()[0]}{hint}") from None


def init_ray(address: str | None) -> bool:
    """Join the cluster at ``address`` (``auto``, ``ray://…``; default ``$RAY_ADDRESS``) or
    start a local Ray; returns whether this sweep runs on a cluster it joined."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return bool(address)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if address:
        connect(address)
    else:
        # Set here, the local Ray's worker processes inherit it (see warm_trial_workers).
        os.environ.setdefault("PL_DISABLE_FORK", "1")
        with internals.quiet_token_notice():
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _system_config=internals.ray_system_config())
    return bool(address)


@contextlib.contextmanager
def environ_defaults(values: Mapping[str, str]) -> Iterator[None]:
    """Set the environment variables of ``values`` that are not set yet, inside the block only
    (a user's own setting wins, and a notebook's later sweeps start from its environment)."""
    added = [name for name in values if name not in os.environ]
    os.environ.update({name: values[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def cluster_summary() -> dict[str, Any]:
    """Alive nodes and total CPUs/GPUs of the connected cluster."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    return {
        "nodes": len(nodes),
        "cpus": float(total.get("CPU", 0.0)),
        "gpus": float(total.get("GPU", 0.0)),
    }


def check_placement(space: SearchSpace) -> None:
    """Reject placements that cannot work before anything starts."""
    from hpsearch.search_spaces.errors import ConfigError

    res = space.resources
    if res.workers_per_trial > 1 and 0 < res.gpus_per_trial < 1:
        # NCCL refuses two ranks of one process group on the same GPU.
        raise ConfigError(
            f"--gpus-per-trial {res.gpus_per_trial:g} with --workers-per-trial "
            f"{res.workers_per_trial}: data-parallel workers need whole GPUs"
        )


def _fits(node: Mapping[str, float], cpus: float, gpus: float) -> int:
    """How many workers needing ``cpus`` and ``gpus`` a node of these resources holds."""
    counts = [node.get("CPU", 0.0) / cpus] if cpus > 0 else []
    if gpus > 0:
        counts.append(node.get("GPU", 0.0) / gpus)
    return int(min(counts)) if counts else math.inf


def placement_problem(space: SearchSpace, nodes: list[Mapping[str, float]]) -> str | None:
    """Why no trial of ``space`` can ever run on nodes of these total resources (``None``
    if one can): a worker must fit on one node, and a data-parallel trial's workers on all."""
    res = space.resources
    need = f"{res.cpus_per_trial:g} CPU" + (f" + {res.gpus_per_trial:g} GPU"
                                           if res.gpus_per_trial else "")
    held = sum(_fits(node, res.cpus_per_trial, res.gpus_per_trial) for node in nodes)
    if held >= res.workers_per_trial:
        return None
    cpus = sum(n.get("CPU", 0.0) for n in nodes)
    gpus = sum(n.get("GPU", 0.0) for n in nodes)
    largest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
    what = (f"a trial of {res.workers_per_trial} workers x ({need})"
            if res.workers_per_trial > 1 else f"a trial of {need}")
    return (f"{what} cannot be placed on this Ray cluster ({len(nodes)} node(s), {cpus:g} "
            f"CPUs, {gpus:g} GPUs; the largest node has {largest.get('CPU', 0.0):g} CPUs and "
            f"{largest.get('GPU', 0.0):g} GPUs): lower --cpus-per-trial / --gpus-per-trial, "
            "or join a larger cluster (--wait-for-resources S waits for an autoscaler)")


def _node_resources() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]


def check_resources(space: SearchSpace, wait_s: float | None = None) -> None:
    """Refuse a sweep whose trials no node of the joined cluster can ever hold, before
    anything is written; with ``wait_s``, give an autoscaling cluster that long to grow."""
    from hpsearch.search_spaces.errors import ConfigError

    deadline = time.monotonic() + (wait_s or 0.0)
    while (problem := placement_problem(space, _node_resources())) is not None:
        if time.monotonic() >= deadline:
            waited = f" (waited {wait_s:g} s)" if wait_s else ""
            raise ConfigError(problem + waited)
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))


def default_max_concurrent(space: SearchSpace, summary: Mapping[str, Any]) -> int | None:
    """How many data-parallel trials fit at once, for ``--workers-per-trial`` without
    ``--max-concurrent``: Tune would otherwise start a driver for every trial, each waiting
    for workers that cannot be placed. Computed from the cluster's size now, so on an
    autoscaling cluster that starts small, pass ``--max-concurrent``."""
    res = space.resources
    if res.workers_per_trial <= 1:
        return None
    fits = [summary["cpus"] / (res.workers_per_trial * res.cpus_per_trial)]
    if res.gpus_per_trial > 0:
        fits.append(summary["gpus"] / (res.workers_per_trial * res.gpus_per_trial))
    return max(1, int(min(fits)))


def current_node_id() -> str:
    import ray

    if not ray.is_initialized():  # asking the runtime context would start a Ray
        return ""
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - placement info is best effort
        return ""
