"""One call that brings up the control plane with simulated nodes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .cluster import ControlPlane

DEFAULT_NODES = ("node1", "node2", "node3")
NODE_SIMULATOR = "node-simulator"


def start_node_simulator(plane: ControlPlane, nodes: tuple[str, ...], *, timeout: float = 60.0) -> None:
    """Start the node simulator for ``nodes`` (``name`` or ``name:k=v,...``) and wait until it serves them."""
    ready_file = plane.state.path / "node-simulator.ready"
    ready_file.unlink(missing_ok=True)
    args = [sys.executable, "-m", "e2e.nodesim", "--kubeconfig", str(plane.kubeconfig), "--ready-file", str(ready_file)]
    for node in nodes:
        args += ["--node", node]
    project_root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(project_root) + os.pathsep + env.get("PYTHONPATH", "")
    plane.add_process(NODE_SIMULATOR, args, env=env)
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if not plane.is_running(NODE_SIMULATOR):
            log = plane.state.path / "logs" / f"{NODE_SIMULATOR}.log"
            raise RuntimeError(f"node simulator exited:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"node simulator not ready within {timeout:.0f}s")
        time.sleep(0.1)


def start_cluster(
    directory: Path,
    nodes: tuple[str, ...] = DEFAULT_NODES,
    *,
    attached: bool = True,
    apiserver_args: tuple[str, ...] = (),
) -> ControlPlane:
    plane = ControlPlane.create(directory, attached=attached, apiserver_args=apiserver_args)
    try:
        plane.start()
        if nodes:
            start_node_simulator(plane, nodes)
    except BaseException:
        plane.stop()
        raise
    return plane
