"""Benchmark: the CPU of one agent pass in-process, without a cluster: what a change costs the agent itself.

Builds N Rulesfile objects as an informer holds them, then for U updates changes one of them (a new
``resourceVersion`` and rule) and runs what ``Agent._pass`` runs on the event loop and its worker threads:
selection (reading the models), planning with the rules-set check, and the report's status. Prints the CPU time
(``time.process_time``: all threads) per pass, median and spread over the updates. No API server, files or Falco
polls: those are in ``bench.agent_cpu``. ``--profile`` prints the top functions of the passes (cProfile).

Compare two trees on one machine: ``PYTHONPATH=<tree> .venv/bin/python -m bench.agent_pass`` for each.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from artifact_agent.planner import PassPlanner
from artifact_agent.report import ReportedEntries, report_status
from artifact_agent.selection import select
from bench import profiled_agent
from falco_operator.artifacts.rules import rules_set_check

Json = dict[str, Any]
DIRECTORIES = {"rules": Path("/etc/falco/rules.d"), "config": Path("/etc/falco/config.d"),
               "plugins": Path("/usr/share/falco/plugins")}  # fmt: skip


def rule_text(name: str, serial: int) -> str:
    return (f"- macro: {name}_spawned\n  condition: evt.type in (execve, execveat) and evt.dir = <\n"
            f"- list: {name}_binaries\n  items: [cat, ls, {name}_{serial}]\n"
            f"- rule: {name}\n  desc: rule {name}\n"
            f"  condition: {name}_spawned and proc.name in ({name}_binaries) and not fd.name startswith /proc\n"
            f"  output: {name} ran (proc=%proc.name file=%fd.name)\n  priority: NOTICE\n")  # fmt: skip


def rulesfile(index: int, version: int, serial: int) -> Json:
    name = f"r{index:03d}"
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
            "metadata": {"name": name, "namespace": "bench", "uid": f"uid-{index}", "generation": 1 + serial,
                         "resourceVersion": str(version), "labels": {}},
            "spec": {"inlineRules": rule_text(f"rule_{index:03d}", serial)}}  # fmt: skip


async def passes(artifacts: int, updates: int, profile: cProfile.Profile | None) -> list[float]:
    planner = PassPlanner(str(DIRECTORIES["plugins"]), rules_set_check)
    objects = [rulesfile(index, 100 + index, 0) for index in range(artifacts)]
    last_good: dict[Any, Any] = {}
    entries = ReportedEntries()  # kept from pass to pass, as the agent keeps them
    spent: list[float] = []
    for update in range(updates + 1):
        changed = update % artifacts
        objects[changed] = rulesfile(changed, 1000 + update, update + 1)
        started = time.process_time()
        if profile is not None and update:
            profile.enable()
        chosen, _ = select(objects, {}, {}, "falco")
        result = await planner.plan(chosen, {}, last_good)
        last_good = dict(result.remembered)
        report_status(result.outcomes, DIRECTORIES, entries=entries)
        if profile is not None:
            profile.disable()
        if update:  # the first pass reads and checks everything: a start, not an update
            spent.append(time.process_time() - started)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=50)
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    if profile is not None:  # the worker threads' share too (the rules checks run there)
        profiled_agent.active = True
        anyio.to_thread.run_sync = profiled_agent.profiled(anyio.to_thread.run_sync)  # type: ignore[assignment]
    spent = anyio.run(passes, args.artifacts, args.updates, profile)
    ms = sorted(1000 * value for value in spent)
    print(f"{args.artifacts} Rulesfiles, {args.updates} updates of one: CPU per pass median "
          f"{statistics.median(ms):.1f} ms, p10 {ms[len(ms) // 10]:.1f}, p90 {ms[len(ms) * 9 // 10]:.1f}")  # fmt: skip
    if profile is not None:
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        for thread_profile in profiled_agent.thread_profiles:
            stats.add(thread_profile)
        stats.sort_stats("cumulative").print_stats(40)
        print(out.getvalue())


if __name__ == "__main__":
    main()
