"""A test-only sample controller on the runtime core: copies labelled ConfigMaps into Secrets.

- ``for_`` ConfigMaps labelled ``copy=yes``; ``owns`` the Secrets it creates (ownerReference to the ConfigMap).
- A ConfigMap annotated ``requeue-after: <seconds>`` is reconciled again after that delay.
- A ConfigMap with a key ``invalid`` is a terminal error: not retried until it changes.

Run as a process (leader-election tests): ``python -m tests.integration.sample_copier --kubeconfig PATH ...``.
"""

from __future__ import annotations

import argparse
import base64
import sys
from typing import Any

from falco_operator.kube import (
    Applier,
    Client,
    Controller,
    EventRecorder,
    Informer,
    Manager,
    ManagerOptions,
    Request,
    Result,
    RuntimeMetrics,
    TerminalError,
    configure_logging,
    run_process,
)
from falco_operator.kube.resources import CONFIG_MAPS, SECRETS

Json = dict[str, Any]
FIELD_MANAGER = "sample-copier"


class Copier:
    def __init__(
        self, applier: Applier, configmaps: Informer, secrets: Informer, events: EventRecorder, identity: str
    ) -> None:
        self.applier = applier
        self.configmaps = configmaps
        self.secrets = secrets
        self.events = events
        self.identity = identity
        self.reconciled: list[Request] = []

    async def reconcile(self, request: Request) -> Result | None:
        self.reconciled.append(request)
        configmap = self.configmaps.store.get_by_name(request.name, request.namespace)
        if configmap is None:
            return None  # the Secret goes with it, by garbage collection
        data: dict[str, str] = configmap.get("data") or {}
        if "invalid" in data:
            await self.events.emit(configmap, "Warning", "InvalidData", "key 'invalid' cannot be copied")
            raise TerminalError("key 'invalid' cannot be copied")
        metadata = configmap["metadata"]
        desired = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "annotations": {"copied-by": self.identity},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": metadata["name"], "uid": metadata["uid"],
                     "controller": True, "blockOwnerDeletion": True}
                ],
            },
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(data.items())},
        }  # fmt: skip
        live = self.secrets.store.get_by_name(request.name, request.namespace)
        if await self.applier.apply(SECRETS, desired, live) is not None:
            await self.events.emit(configmap, "Normal", "Copied", f"copied {len(data)} keys")
        delay = (metadata.get("annotations") or {}).get("requeue-after")
        return Result(requeue_after=float(delay)) if delay else None


def build(
    client: Client, metrics: RuntimeMetrics, options: ManagerOptions, namespace: str | None, resync: float | None
) -> tuple[Manager, Copier]:
    manager = Manager(client, options, metrics)
    configmaps = manager.informer(CONFIG_MAPS, namespace=namespace, label_selector="copy=yes", resync_period=resync)
    secrets = manager.informer(SECRETS, namespace=namespace)
    copier = Copier(Applier(client), configmaps, secrets, EventRecorder(client, FIELD_MANAGER, options.identity),
                    options.identity)  # fmt: skip
    controller = Controller("configmap-copier", copier, metrics=metrics, workers=2)
    controller.for_(configmaps).owns(secrets, "", "ConfigMap")
    manager.add_controller(controller)
    return manager, copier


async def _main(args: argparse.Namespace) -> None:
    metrics = RuntimeMetrics()
    client = await Client.connect(kubeconfig=args.kubeconfig, field_manager=FIELD_MANAGER, metrics=metrics)
    options = ManagerOptions(
        metrics_address=args.metrics_address, probe_address=args.probe_address, leader_election=True,
        leader_election_namespace=args.namespace, leader_election_id="sample-copier", identity=args.identity,
        graceful_shutdown=5,
    )  # fmt: skip
    manager, _ = build(client, metrics, options, args.namespace, None)
    await manager.run_until_signalled()


def main() -> None:
    parser = argparse.ArgumentParser(description="Sample ConfigMap-to-Secret copier (tests only).")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--metrics-address", default="127.0.0.1:0")
    parser.add_argument("--probe-address", default="127.0.0.1:0")
    args = parser.parse_args()
    configure_logging("json", "info")
    sys.exit(run_process(lambda: _main(args)))


if __name__ == "__main__":
    main()
