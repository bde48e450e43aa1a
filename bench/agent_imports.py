"""Benchmark: what each module the artifact agent imports costs, in resident memory, Python heap and time.

Imports the agent's command (``artifact_agent.cli``, what ``python -m artifact_agent`` loads before it parses its
flags) in a fresh interpreter with an import hook that measures every module's own cost: the growth of the resident
set (``/proc/self/statm``), of the Python heap (tracemalloc) and the time spent executing it, minus what the
modules it imports cost. Costs are added up per group (a third-party distribution, or a package of the project)
and printed largest first, with the interpreter's own resident set before anything is imported.

Run: ``.venv/bin/python -m bench.agent_imports [--python .venv-runtime/bin/python] [--module artifact_agent.cli]``
(``bench.agent`` makes ``.venv-runtime``: the runtime dependencies only, as in the image; the development
virtualenv adds modules, such as httpx's command-line tools, that a pod never has).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Runs in the measured interpreter: only the standard library, and nothing imported before the hook but what the
# interpreter has already loaded at start-up.
PROBE = r"""
import json, os, sys, time, tracemalloc
from importlib.abc import MetaPathFinder

PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE

costs = {}
stack = []

class Measured:
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        frame = [rss(), tracemalloc.get_traced_memory()[0], time.perf_counter(), 0, 0, 0.0]
        stack.append(frame)
        try:
            self.loader.exec_module(module)
        finally:
            stack.pop()
            whole = (rss() - frame[0], tracemalloc.get_traced_memory()[0] - frame[1], time.perf_counter() - frame[2])
            costs[module.__name__] = (whole[0] - frame[3], whole[1] - frame[4], whole[2] - frame[5])
            if stack:
                stack[-1][3] += whole[0]
                stack[-1][4] += whole[1]
                stack[-1][5] += whole[2]

class Hook(MetaPathFinder):
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = Measured(spec.loader)
                return spec
        return None

start = rss()
if sys.argv[2] == "heap":
    tracemalloc.start()
sys.meta_path.insert(0, Hook())
import importlib
importlib.import_module(sys.argv[1])
sys.meta_path.pop(0)
tracemalloc.stop()
print(json.dumps({"start": start, "end": rss(), "costs": costs, "modules": len(sys.modules)}))
"""


def group_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] in ("falco_operator", "artifact_agent"):
        depth = 3 if parts[:2] == ["falco_operator", "artifacts"] and len(parts) > 3 else 2
        return ".".join(parts[:depth])
    return parts[0].lstrip("_") or module


def measure(python: str, module: str, what: str) -> dict[str, Any]:
    """``what``: "rss" (resident set and time, untraced) or "heap" (tracemalloc on: its own overhead inflates the
    resident set and the time of that run)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([python, "-c", PROBE, module, what], capture_output=True, text=True, env=env,
                            cwd="/", check=True)  # fmt: skip
    measured: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    runtime = ROOT / ".venv-runtime" / "bin" / "python"
    parser.add_argument("--python", default=str(runtime) if runtime.exists() else sys.executable,
                        help="the interpreter to measure (default: .venv-runtime's, made by bench.agent)")  # fmt: skip
    parser.add_argument("--module", default="artifact_agent.cli")
    parser.add_argument("--top", type=int, default=25, help="groups to print (the rest are summed)")
    args = parser.parse_args()
    measured = measure(args.python, args.module, "rss")
    heaps = measure(args.python, args.module, "heap")["costs"]
    costs: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for name, (rss, _, seconds) in measured["costs"].items():
        heap = heaps.get(name, (0, 0, 0))[1]
        group = costs.setdefault(group_of(name), [0.0, 0.0, 0.0])
        group[0] += rss
        group[1] += heap
        group[2] += seconds
        counts[group_of(name)] = counts.get(group_of(name), 0) + 1
    ranked = sorted(costs.items(), key=lambda item: -item[1][0])
    mib = 1024 * 1024
    start, end = float(measured["start"]), float(measured["end"])
    print(f"import {args.module} with {args.python}: {measured['modules']} modules; resident set "
          f"{start / mib:.1f} MiB before, {end / mib:.1f} MiB after")  # fmt: skip
    print(f"| {'group':40} | modules | RSS MiB | heap MiB | ms |")
    print("|---|---|---|---|---|")
    shown = ranked[: args.top]
    rest = ranked[args.top :]
    for name, (rss, heap, seconds) in shown:
        print(f"| {name:40} | {counts[name]} | {rss / mib:.1f} | {heap / mib:.1f} | {seconds * 1000:.0f} |")
    if rest:
        rss, heap, seconds = (sum(cost[index] for _, cost in rest) for index in range(3))
        modules = sum(counts[name] for name, _ in rest)
        print(f"| {f'{len(rest)} other groups':40} | {modules} | {rss / mib:.1f} | {heap / mib:.1f} "
              f"| {seconds * 1000:.0f} |")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
