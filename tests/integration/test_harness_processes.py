"""Every process the harness starts ends with the harness process, however that ends (here: SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
Process = tuple[int, int]
"""(pid, start time)."""


def process_table() -> dict[int, tuple[int, int, str, str]]:
    """pid -> (parent pid, start time, state, command line) of every process."""
    table: dict[int, tuple[int, int, str, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError):
                continue
            table[int(entry.name)] = (int(fields[1]), int(fields[19]), fields[0], cmdline)
    return table


def descendants(root: int) -> dict[Process, str]:
    table = process_table()
    found: dict[Process, str] = {}
    parents = {root}
    while True:
        children = {pid for pid, (parent, *_) in table.items() if parent in parents and pid not in parents}
        if not children:
            return found
        found |= {(pid, table[pid][1]): table[pid][3] for pid in children}
        parents |= children


def running(processes: dict[Process, str]) -> dict[Process, str]:
    table = process_table()
    return {(pid, start): command for (pid, start), command in processes.items()
            if pid in table and table[pid][1] == start and table[pid][2] not in "ZX"}  # fmt: skip


def test_every_process_the_harness_started_ends_when_the_harness_is_killed(tmp_path: Path) -> None:
    log = (tmp_path / "harness.log").open("wb")
    harness = subprocess.Popen([sys.executable, "-m", "tests.integration.harness_tree", str(tmp_path)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=log, start_new_session=True)  # fmt: skip
    tree: dict[Process, str] = {}
    try:
        assert harness.stdout is not None
        assert harness.stdout.readline() == b"ready\n", (tmp_path / "harness.log").read_text()[-3000:]
        tree = descendants(harness.pid)
        commands = " | ".join(tree.values())
        for expected in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "e2e.nodesim",
                         "falco_operator run", "docker-registry serve", "falco -c", "sleep 600"):  # fmt: skip
            assert expected in commands, f"{expected} is not running: {commands}"

        harness.kill()
        harness.wait()
        deadline = time.monotonic() + 10
        while running(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert running(tree) == {}, "still running 10 s after the harness was killed"
    finally:
        harness.kill()
        harness.wait()
        if harness.stdout is not None:
            harness.stdout.close()
        log.close()
        for pid, _ in running(tree):  # what a failing run left behind
            os.kill(pid, signal.SIGKILL)
