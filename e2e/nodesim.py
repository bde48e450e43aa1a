"""A node simulator: the part of a kubelet the control plane needs to see pods run.

It registers Node objects, keeps them alive (node Lease renewals and Ready heartbeats, so the node lifecycle
controller never taints them), marks pods bound to its nodes Running and Ready, and finishes graceful
deletions of those pods. It writes to the API only when a pod or node needs it.

Run: ``python -m e2e.nodesim --kubeconfig PATH --node node1 --node node2:zone=a``
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import random
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from e2e.controlplane.cluster import kubeconfig_tls

log = logging.getLogger("nodesim")

LEASE_RENEW_SECONDS = 10
STATUS_HEARTBEAT_SECONDS = 60
LEASE_DURATION_SECONDS = 40
_MERGE = {"Content-Type": "application/merge-patch+json"}
_STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> NodeSpec:
        """``name`` or ``name:key=value,key=value``."""
        name, _, label_text = text.partition(":")
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
        for pair in filter(None, label_text.split(",")):
            key, _, value = pair.partition("=")
            labels[key] = value
        return cls(name, labels)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def client_from_kubeconfig(path: Path) -> httpx.AsyncClient:
    """An HTTP client for the admin kubeconfig that the control plane harness writes."""
    server, context = kubeconfig_tls(path)
    # Watches get bookmarks about every minute; two minutes of silence means a dead connection.
    return httpx.AsyncClient(base_url=server, verify=context, timeout=httpx.Timeout(30.0, read=120.0))


def node_status(spec: NodeSpec, index: int) -> dict[str, Any]:
    now = _now()
    # Roomy enough for the benchmarks' 500 Falcos (a Falco pod requests 110m CPU and 576Mi): a simulated node runs
    # nothing, and a kubelet's 110-pod default would leave pods Pending for reasons no product code is behind.
    resources = {"cpu": "256", "memory": "1Ti", "pods": "2000", "ephemeral-storage": "1Ti"}
    conditions = [
        {
            "type": kind,
            "status": "False",
            "reason": reason,
            "message": "simulated",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        for kind, reason in (
            ("MemoryPressure", "KubeletHasSufficientMemory"),
            ("DiskPressure", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "KubeletHasSufficientPID"),
        )
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "simulated kubelet is ready",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
    )
    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": f"10.250.0.{index + 10}"},
            {"type": "Hostname", "address": spec.name},
        ],
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "osImage": "simulated",
            "kernelVersion": "6.1.0",
            "containerRuntimeVersion": "simulated://1.0",
            "kubeletVersion": "v1.36.3",
            "kubeProxyVersion": "",
            "machineID": spec.name,
            "systemUUID": spec.name,
            "bootID": spec.name,
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
    }


def running_status(pod: dict[str, Any], pod_ip: str, host_ip: str) -> dict[str, Any]:
    """The status a kubelet reports once every container of ``pod`` runs and is ready."""
    now = _now()
    spec = pod["spec"]

    def container_status(container: dict[str, Any], *, running: bool) -> dict[str, Any]:
        state = (
            {"running": {"startedAt": now}}
            if running
            else {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}
        )
        return {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "containerID": f"simulated://{pod['metadata']['uid']}-{container['name']}",
            "ready": running,
            "started": running,
            "restartCount": 0,
            "state": state,
        }

    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now, "lastProbeTime": None}
        for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": now,
        "initContainerStatuses": [
            container_status(c, running=c.get("restartPolicy") == "Always") for c in spec.get("initContainers", [])
        ],
        "containerStatuses": [container_status(c, running=True) for c in spec.get("containers", [])],
    }


def is_running_and_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("phase") == "Running" and ready


class NodeSimulator:
    def __init__(self, client: httpx.AsyncClient, nodes: list[NodeSpec], ready_file: Path | None = None) -> None:
        self.client = client
        self.nodes = {spec.name: (index, spec) for index, spec in enumerate(nodes)}
        self.ready_file = ready_file
        self._pod_counter = 0
        self._resource_version = ""

    async def run(self) -> None:
        for name in self.nodes:
            await self._register(name)
        async with anyio.create_task_group() as group:
            group.start_soon(self._keep_alive)
            await group.start(self._watch_pods)
            if self.ready_file:
                self.ready_file.write_text("ready\n")
            log.info("simulating nodes %s", ", ".join(self.nodes))

    async def _register(self, name: str) -> None:
        index, spec = self.nodes[name]
        response = await self.client.get(f"/api/v1/nodes/{name}")
        if response.status_code == 404:
            body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": spec.labels}}
            (await self.client.post("/api/v1/nodes", json=body)).raise_for_status()
        else:
            response.raise_for_status()
        patch = {"status": node_status(spec, index)}
        (await self.client.patch(f"/api/v1/nodes/{name}/status", json=patch, headers=_STRATEGIC)).raise_for_status()
        await self._renew_lease(name)

    async def _renew_lease(self, name: str) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": _micro_now()}
        response = await self.client.patch(path, json={"spec": spec}, headers=_MERGE)
        if response.status_code == 404:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": spec,
            }
            response = await self.client.post(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", json=body
            )
        response.raise_for_status()

    async def _keep_alive(self) -> None:
        since_status = 0.0
        while True:
            await anyio.sleep(LEASE_RENEW_SECONDS)
            since_status += LEASE_RENEW_SECONDS
            for name, (index, spec) in self.nodes.items():
                try:
                    await self._renew_lease(name)
                    # After an API server outage the node lifecycle controller may have marked the node NotReady
                    # (Unknown): a kubelet reports Ready again at once, not at its next periodic heartbeat.
                    if since_status >= STATUS_HEARTBEAT_SECONDS or not await self._is_ready(name):
                        ready = [c for c in node_status(spec, index)["conditions"] if c["type"] == "Ready"]
                        patch = {"status": {"conditions": ready}}
                        response = await self.client.patch(f"/api/v1/nodes/{name}/status", json=patch,
                                                           headers=_STRATEGIC)  # fmt: skip
                        response.raise_for_status()
                except httpx.HTTPError as error:
                    log.warning("heartbeat for %s failed: %s", name, error)
            if since_status >= STATUS_HEARTBEAT_SECONDS:
                since_status = 0.0

    async def _is_ready(self, name: str) -> bool:
        response = await self.client.get(f"/api/v1/nodes/{name}")
        response.raise_for_status()
        conditions = (response.json().get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    async def _watch_pods(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        announced = False
        backoff = 0.5
        while True:
            try:
                if not self._resource_version:
                    response = await self.client.get("/api/v1/pods")
                    response.raise_for_status()
                    listing = response.json()
                    for pod in listing["items"]:
                        await self._handle(pod)
                    self._resource_version = listing["metadata"]["resourceVersion"]
                if not announced:
                    task_status.started()
                    announced = True
                await self._stream()  # ends normally at the server's timeout: watch again from where it was
                backoff = 0.5
            except (httpx.HTTPError, ValueError, KeyError) as error:
                log.warning("pod watch interrupted: %s; relisting in %.1fs", error, backoff)
                self._resource_version = ""
                await anyio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 10.0)

    async def _stream(self) -> None:
        params = {
            "watch": "1",
            "resourceVersion": self._resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(random.randint(300, 600)),
        }
        async with self.client.stream("GET", "/api/v1/pods", params=params) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    raise ValueError(f"watch error: {event['object'].get('message')}")
                self._resource_version = event["object"]["metadata"].get("resourceVersion") or self._resource_version
                if event["type"] in ("ADDED", "MODIFIED"):
                    await self._handle(event["object"])

    async def _handle(self, pod: dict[str, Any]) -> None:
        node_name = pod["spec"].get("nodeName")
        if node_name not in self.nodes:
            return
        metadata = pod["metadata"]
        path = f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}"
        try:
            if metadata.get("deletionTimestamp"):
                body = {"gracePeriodSeconds": 0, "preconditions": {"uid": metadata["uid"]}}
                response = await self.client.request("DELETE", path, json=body)
                if response.status_code not in (200, 404, 409):
                    response.raise_for_status()
                return
            if is_running_and_ready(pod) or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return
            index, _ = self.nodes[node_name]
            self._pod_counter += 1
            pod_ip = f"10.244.{index}.{self._pod_counter % 250 + 2}"
            host_ip = f"10.250.0.{index + 10}"
            patch = {"status": running_status(pod, pod_ip, host_ip)}
            response = await self.client.patch(f"{path}/status", json=patch, headers=_MERGE)
            if response.status_code not in (200, 404, 409):
                log.warning("pod %s: status update refused: %s", path, response.text[:1000])
        except httpx.HTTPError as error:
            log.warning("pod %s/%s: %s", metadata["namespace"], metadata["name"], error)


async def _main(args: argparse.Namespace) -> None:
    nodes = [NodeSpec.parse(text) for text in args.node]
    async with client_from_kubeconfig(Path(args.kubeconfig)) as client, anyio.create_task_group() as group:
        simulator = NodeSimulator(client, nodes, Path(args.ready_file) if args.ready_file else None)
        group.start_soon(simulator.run)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                group.cancel_scope.cancel()
                return


def main() -> None:
    parser = argparse.ArgumentParser(description="Simulate kubelets for the local control plane.")
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig written by the harness")
    parser.add_argument("--node", action="append", required=True, help="NAME or NAME:key=value,key=value")
    parser.add_argument("--ready-file", help="written once nodes are registered and pods are watched")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    anyio.run(_main, args)


if __name__ == "__main__":
    main()
