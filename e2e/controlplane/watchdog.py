"""Ends every process the harness started once the harness process ends, however it ends (SIGKILL included).

``processes.py`` runs this file (standard library only, so it starts in a few milliseconds) as
``python watchdog.py HARNESS_PID``, in a session of its own, with its stdin the read end of a pipe whose write end
only the harness holds. The harness writes lines:

- ``track PID``: a process it started; that process, its process group and its descendants go with the harness;
- ``spare SID``: a session meant to outlive the harness (``make controlplane``'s detached processes).

Twice a second it also notes the harness's descendants, so processes started any other way (a plain
``subprocess.Popen``, a grandchild behind ``sh -c``) go too. End of file on stdin (or SIGTERM) means the harness is
gone: SIGTERM to everything noted and to their descendants, SIGKILL to what is left after ``GRACE`` seconds. Each
process is identified by PID and start time, so a PID reused since is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

GRACE = 3.0
SCAN_INTERVAL = 0.5

Process = tuple[int, int]
"""(pid, start time in clock ticks since boot)."""


class ProcessTable:
    """One reading of /proc: parent, process group, session and start time of every process."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.group: dict[int, int] = {}
        self.session: dict[int, int] = {}
        self.start: dict[int, int] = {}
        self.zombie: set[int] = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            pid = int(entry.name)
            self.parent[pid], self.group[pid], self.session[pid] = int(fields[1]), int(fields[2]), int(fields[3])
            self.start[pid] = int(fields[19])
            if fields[0] in ("Z", "X"):
                self.zombie.add(pid)

    def alive(self, process: Process) -> bool:
        pid, start = process
        return self.start.get(pid) == start and pid not in self.zombie

    def descendants(self, roots: set[int]) -> set[int]:
        children: dict[int, list[int]] = {}
        for pid, parent in self.parent.items():
            children.setdefault(parent, []).append(pid)
        found: set[int] = set()
        todo = list(roots)
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    def members(self, groups: set[int]) -> set[int]:
        return {pid for pid, group in self.group.items() if group in groups}


class Watchdog:
    def __init__(self, harness: int) -> None:
        self.harness = harness
        self.tracked: set[Process] = set()
        self.spared: set[int] = set()
        self.noted: set[Process] = set()
        self.lock = threading.Lock()

    def read(self, line: str) -> None:
        verb, _, number = line.strip().partition(" ")
        with self.lock:
            if verb == "track":
                pid = int(number)
                start = ProcessTable().start.get(pid)
                if start is not None:
                    self.tracked.add((pid, start))
            elif verb == "spare":
                self.spared.add(int(number))

    def scan(self, *, harness_alive: bool = True) -> ProcessTable:
        """Note the harness's descendants and the tracked processes' groups and descendants; forget the dead."""
        table = ProcessTable()
        with self.lock:
            self.tracked = {process for process in self.tracked if table.alive(process)}
            roots = {pid for pid, _ in self.tracked} | ({self.harness} if harness_alive else set())
            pids = table.descendants(roots) | table.members({pid for pid, _ in self.tracked})
            pids |= {pid for pid, _ in self.tracked}
            pids -= {os.getpid(), self.harness}
            fresh = {(pid, table.start[pid]) for pid in pids if table.session.get(pid) not in self.spared}
            self.noted = {process for process in self.noted | fresh if table.alive(process)}
        return table

    def targets(self) -> set[Process]:
        """What is noted, and whatever those processes started since (their groups and descendants)."""
        table = self.scan(harness_alive=False)  # its children have a new parent by now (and its PID may be reused)
        with self.lock:
            pids = {pid for pid, _ in self.noted}
            pids |= table.descendants(pids) | table.members(pids)
            pids -= {os.getpid()}
            found = {(pid, table.start[pid]) for pid in pids if table.session.get(pid) not in self.spared}
        return {process for process in found if table.alive(process)}

    def end_everything(self) -> None:
        for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, 2.0)):
            targets = self.targets()
            for pid, _ in targets:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while targets and time.monotonic() < deadline:
                time.sleep(0.05)
                table = ProcessTable()
                targets = {process for process in targets if table.alive(process)}
            if not targets:
                return


def main() -> int:
    harness = int(sys.argv[1])
    watchdog = Watchdog(harness)
    gone = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the harness, which stops its processes itself
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: gone.set())

    def read_pipe() -> None:
        for line in sys.stdin:
            watchdog.read(line)
        gone.set()

    threading.Thread(target=read_pipe, daemon=True).start()
    while not gone.wait(SCAN_INTERVAL):
        watchdog.scan()
    watchdog.end_everything()
    return 0


if __name__ == "__main__":
    sys.exit(main())
