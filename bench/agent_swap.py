"""Benchmark: the CPU of the agent's generation swaps in-process (``Materializer.apply``), without a cluster.

A rules directory of N files, then U swaps each changing one file (as an update of one Rulesfile does), each
followed by a pass that changes nothing (as Falco's confirmation does). Prints the CPU time (user + system of the
process, ``time.process_time``) per update, median and spread.

Compare two trees on one machine: ``PYTHONPATH=<tree> .venv/bin/python -m bench.agent_swap`` for each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from artifact_agent.materializer import Directories, Materializer


def rules(files: int, update: int) -> dict[str, bytes]:
    changed = update % files
    return {f"50-{index:03d}-r{index:03d}-inline.yaml": f"- list: l{index}\n  items: [{update * (index == changed)}]\n"
            .encode() for index in range(files)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as root:
        directories = Directories(Path(root, "rules.d"), Path(root, "config.d"), Path(root, "plugins"))
        materializer = Materializer(directories)
        materializer.apply({"rules": rules(args.files, 0)})
        spent: list[float] = []
        for update in range(1, args.updates + 1):
            wanted = {"rules": rules(args.files, update)}
            started = time.process_time()
            materializer.apply(wanted)
            materializer.apply(wanted)
            spent.append(time.process_time() - started)
    ms = sorted(1000 * value for value in spent)
    print(f"{args.files} rules files, {args.updates} updates of one (a swap and a pass that changes nothing): CPU "
          f"per update median {statistics.median(ms):.2f} ms, p10 {ms[len(ms) // 10]:.2f}, "
          f"p90 {ms[len(ms) * 9 // 10]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
