"""The product in real pods on the real node (root): what each container costs, idle and during changes, how long
a Falco pod takes from its apply to Ready, and how long a Rulesfile change takes to be loaded by Falco in the pod.

Memory and CPU come from each container's cgroup (cgroup v1: ``memory.usage_in_bytes`` minus the page cache,
``memory.stat`` ``rss``, ``cpuacct.usage``), as the kubelet's own summary does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from e2e.realnode.podcluster import LocalPodCluster, local_pod_cluster
from e2e.scenarios.install import INSTALL, OPERATOR_NAMESPACE
from e2e.scenarios.realpods import apply, falco_pods, get_json, pod_ready, poll, rules_hashes, sha256_hex

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "falco-bench"
FALCO = "falco-bench"
RULES_FILE = "50-03-bench-inline.yaml"
CGROUP = Path("/sys/fs/cgroup")


def rules(round_: int) -> str:
    return (f"- rule: bench_rule_{round_}\n  desc: a rule of round {round_}\n"
            f"  condition: evt.type = execve and proc.name = bench-{round_}\n  output: bench (proc=%proc.name)\n"
            "  priority: INFO\n")  # fmt: skip


def rulesfile(round_: int) -> dict[str, object]:
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
            "metadata": {"name": "bench", "namespace": NAMESPACE},
            "spec": {"ociArtifact": {"inline": rules(round_)}, "priority": 50}}  # fmt: skip


def container_cgroups(cluster: LocalPodCluster, namespace: str, pod: str) -> dict[str, str]:
    """Container name → its cgroup directory name (the container ID) for a running pod."""
    status = get_json(cluster.kubectl, "pod", "-n", namespace, pod)["status"]
    entries = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    return {e["name"]: e["containerID"].split("://", 1)[1] for e in entries if e.get("containerID")}


def _find(hierarchy: str, container_id: str) -> Path:
    (path,) = list((CGROUP / hierarchy / "kubepods").rglob(container_id))
    return path


def sample(container_id: str) -> tuple[float, float]:
    """(memory working set in MiB: usage minus inactive file pages, CPU seconds used so far)."""
    memory = _find("memory", container_id)
    usage = int((memory / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (memory / "memory.stat").read_text().splitlines())
    working_set = max(0, usage - int(stat.get("total_inactive_file", 0)))
    cpu = int((_find("cpuacct", container_id) / "cpuacct.usage").read_text()) / 1e9
    return working_set / 2**20, cpu


def loaded(cluster: LocalPodCluster, pod: str, expected: str) -> bool:
    try:
        metrics = cluster.pod_get(NAMESPACE, pod, 8765, "/metrics")
    except OSError:
        return False
    return rules_hashes(metrics).get(RULES_FILE) == expected


def run(directory: Path, changes: int, idle: float) -> dict[str, object]:
    results: dict[str, object] = {}
    with local_pod_cluster(directory) as cluster:
        cluster.kubectl("apply", "--server-side", "-f", str(INSTALL))
        cluster.kubectl("-n", OPERATOR_NAMESPACE, "rollout", "status", "deployment/falco-operator", "--timeout=180s")
        cluster.kubectl("create", "namespace", NAMESPACE)
        began = time.monotonic()
        apply(cluster.kubectl, {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
                                "metadata": {"name": FALCO, "namespace": NAMESPACE}, "spec": {}},
              rulesfile(0))  # fmt: skip
        poll("the Falco pod Ready", lambda: any(pod_ready(p) for p in falco_pods(cluster.kubectl, FALCO, NAMESPACE)),
             timeout=300, interval=0.1)  # fmt: skip
        results["falco pod: apply to Ready (s)"] = round(time.monotonic() - began, 1)
        (pod,) = [p["metadata"]["name"] for p in falco_pods(cluster.kubectl, FALCO, NAMESPACE)]
        poll("round 0 loaded", lambda: loaded(cluster, pod, sha256_hex(rules(0).encode())), timeout=120)
        operator = get_json(cluster.kubectl, "pods", "-n", OPERATOR_NAMESPACE)["items"][0]["metadata"]["name"]
        ids = {f"falco/{k}": v for k, v in container_cgroups(cluster, NAMESPACE, pod).items()}
        ids |= {f"operator/{k}": v for k, v in container_cgroups(cluster, OPERATOR_NAMESPACE, operator).items()}

        time.sleep(10)  # let start-up work settle before the idle window
        before = {name: sample(cid) for name, cid in ids.items()}
        time.sleep(idle)
        after = {name: sample(cid) for name, cid in ids.items()}
        idle_rows = {name: {"memory MiB": round(after[name][0], 1),
                            "CPU % of a core": round(100 * (after[name][1] - before[name][1]) / idle, 2)}
                     for name in ids}  # fmt: skip

        durations: list[float] = []
        start = {name: sample(cid) for name, cid in ids.items()}
        peak = {name: value[0] for name, value in start.items()}
        for round_ in range(1, changes + 1):
            expected = sha256_hex(rules(round_).encode())
            began = time.monotonic()
            apply(cluster.kubectl, rulesfile(round_))
            poll(f"round {round_} loaded", lambda e=expected: loaded(cluster, pod, e), timeout=120, interval=0.05)  # type: ignore[misc]
            durations.append(time.monotonic() - began)
            peak = {name: max(peak[name], sample(cid)[0]) for name, cid in ids.items()}
        end = {name: sample(cid) for name, cid in ids.items()}
        change_rows = {name: {"peak memory MiB": round(peak[name], 1),
                              "CPU s per change": round((end[name][1] - start[name][1]) / changes, 3)}
                       for name in ids}  # fmt: skip
        results["idle"] = idle_rows
        results["during changes"] = change_rows
        results["Rulesfile change to loaded in the pod (s)"] = {
            "median": round(statistics.median(durations), 2), "max": round(max(durations), 2), "changes": changes,
        }  # fmt: skip
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realnode", description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=10, help="Rulesfile changes to time")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of the idle window")
    parser.add_argument("--dir", type=Path, default=ROOT / ".e2e-local", help="state directory")
    args = parser.parse_args()
    print(json.dumps(run(args.dir, args.changes, args.idle), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
