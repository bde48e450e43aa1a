"""A representative tree of harness processes, for ``test_harness_processes``: run as its own Python process
(``python -m tests.integration.harness_tree DIR``), it prints ``ready`` once everything runs, then waits to be
killed.

It starts the control plane with its node simulator and the operator from the main thread, the registry and
real Falco from worker threads that end before ``ready`` (as ``anyio.to_thread`` and executors do), and a
``sh -c`` with a grandchild through a plain ``subprocess.Popen`` (as a test may).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from e2e.controlplane import start_cluster
from e2e.falco import run_falco
from e2e.operator import install_crds, run_operator
from e2e.registry import start_registry


def in_a_worker_thread(start: Callable[[], object]) -> None:
    thread = threading.Thread(target=start)
    thread.start()
    thread.join()


def main(directory: Path) -> None:
    with contextlib.ExitStack() as stack:
        plane = start_cluster(directory / "controlplane")
        install_crds(plane)
        stack.enter_context(run_operator(plane, directory / "operator"))
        in_a_worker_thread(lambda: start_registry(directory / "registry", tls=False, auth=False))
        falco = directory / "falco"
        in_a_worker_thread(lambda: stack.enter_context(
            run_falco(falco, falco / "rules.d", falco / "config.d", falco / "plugins")))  # fmt: skip
        subprocess.Popen(["sh", "-c", "sleep 600 & sleep 600"])
        time.sleep(1)  # a process started from a thread that has ended is still running
        print("ready", flush=True)
        time.sleep(3600)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
