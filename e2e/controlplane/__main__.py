"""Command line for the local control plane: build, up, down, status."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .build import ensure_binaries
from .cluster import STATE_FILE, ControlPlane
from .launch import DEFAULT_NODES, start_cluster

DEFAULT_DIR = Path(".controlplane")


def _up(directory: Path, nodes: tuple[str, ...]) -> int:
    if (directory / STATE_FILE).exists():
        plane = ControlPlane.attach(directory)
        if plane.is_running("kube-apiserver"):
            print(f"already running: export KUBECONFIG={plane.kubeconfig}")
            return 0
        plane.stop()
        shutil.rmtree(directory)
    plane = start_cluster(directory, nodes, attached=False)
    kubectl = plane.binaries.path("kubectl")
    print(
        "\nThe local control plane is up with simulated nodes: " + ", ".join(n.split(":")[0] for n in nodes) + "\n\n"
        f"  export KUBECONFIG={plane.kubeconfig}\n"
        f"  {kubectl} get nodes\n\n"
        f"kubectl of the same version: {kubectl}\n"
        f"Logs: {plane.state.path / 'logs'}\n"
        "Stop it with: make controlplane-down\n"
    )
    return 0


def _down(directory: Path) -> int:
    if not (directory / STATE_FILE).exists():
        print("no local control plane is running here")
        return 0
    ControlPlane.attach(directory).stop()
    shutil.rmtree(directory)
    print("local control plane stopped")
    return 0


def _status(directory: Path) -> int:
    if not (directory / STATE_FILE).exists():
        print("not running")
        return 1
    plane = ControlPlane.attach(directory)
    for name in plane.state.pids:
        print(f"{name}: {'running' if plane.is_running(name) else 'stopped'}")
    print(f"KUBECONFIG={plane.kubeconfig}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.controlplane", description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build (or find cached) control plane binaries and print their directory")
    up = commands.add_parser("up", help="start the control plane and simulated nodes in the background")
    up.add_argument("--node", action="append", help="NAME or NAME:key=value,... (default: node1..node3)")
    commands.add_parser("down", help="stop everything 'up' started")
    commands.add_parser("status", help="show what runs")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(ensure_binaries().directory)
        return 0
    if args.command == "up":
        return _up(args.dir, tuple(args.node or DEFAULT_NODES))
    if args.command == "down":
        return _down(args.dir)
    return _status(args.dir)


if __name__ == "__main__":
    sys.exit(main())
