"""``make bench``: every benchmark, one after another, each printing its table.

``--quick`` runs smaller sizes (for a first look; the figures in docs/performance.md come from the full run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

FULL: list[tuple[str, list[str]]] = [
    ("Falco controller: 200 Falcos", ["bench.falco_reconcile", "--falcos", "200"]),
    ("Falco controller: 500 Falcos, 5,000 unrelated Secrets and ConfigMaps", ["bench.falco_reconcile", "--falcos",
                                                                              "500", "--unrelated", "5000",
                                                                              "--skip-available"]),
    ("Artifact agent: memory and start", ["bench.agent", "--artifacts", "50"]),
    ("Artifact agent: import cost per module", ["bench.agent_imports"]),
    ("Artifact agent: CPU of one pass", ["bench.agent_pass"]),
    ("Artifact agent: CPU per update, 10 agents, 50 Rulesfiles", ["bench.agent_cpu", "--nodes", "10"]),
    ("Rules validation", ["bench.rules_validation"]),
    ("Falco's side of a swap", ["bench.falco_reload", "--rounds", "10"]),
    ("Artifacts at N nodes", ["bench.artifacts_at_scale", "--nodes", "10,20,50,100", "--updates", "30",
                              "--steady", "300"]),
    ("Real pods on the real node (root)", ["bench.realnode", "--changes", "10", "--idle", "60"]),
    ("Fleet simulation: N = 100, 1,000, 2,000 simulated agents", ["bench.fleet_simulation", "--nodes",
                                                                  "100,1000,2000", "--updates", "3", "--steady",
                                                                  "60", "--operator-arg=--leader-election-lease-"
                                                                  "duration=60", "--operator-arg=--leader-election-"
                                                                  "renew-deadline=40"]),
]  # fmt: skip
QUICK: list[tuple[str, list[str]]] = [
    ("Falco controller: 50 Falcos, 500 unrelated Secrets and ConfigMaps", ["bench.falco_reconcile", "--falcos",
                                                                           "50", "--unrelated", "500"]),
    ("Artifact agent: memory and start", ["bench.agent", "--artifacts", "50"]),
    ("Artifact agent: import cost per module", ["bench.agent_imports"]),
    ("Artifact agent: CPU of one pass", ["bench.agent_pass"]),
    ("Rules validation", ["bench.rules_validation"]),
    ("Falco's side of a swap", ["bench.falco_reload", "--rounds", "3"]),
    ("Artifacts at N nodes", ["bench.artifacts_at_scale", "--nodes", "10,20", "--updates", "10", "--steady", "30"]),
    ("Real pods on the real node (root)", ["bench.realnode", "--changes", "3", "--idle", "20"]),
    ("Fleet simulation: N = 200 simulated agents", ["bench.fleet_simulation", "--nodes", "200", "--updates", "2",
                                                    "--steady", "20"]),
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    quick = parser.parse_args().quick
    failed = []
    started = time.monotonic()
    for title, command in QUICK if quick else FULL:
        print(f"\n== {title} ==", flush=True)
        began = time.monotonic()
        result = subprocess.run([sys.executable, "-W", "ignore::UserWarning", "-m", *command])
        print(f"({time.monotonic() - began:.0f} s)", flush=True)
        if result.returncode:
            failed.append(title)
    print(f"\nall benchmarks: {time.monotonic() - started:.0f} s" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
