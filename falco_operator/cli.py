"""The ``falco-operator`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from . import __version__
from .component.builders import ComponentOptions
from .component.setup import setup_component_controller
from .falcorules.setup import setup_falcorules_controller
from .instance.options import (
    COMPONENT_CRD,
    DEFAULT_AGENT_IMAGE,
    DEFAULT_FALCO_VERSION,
    FALCO_CRD,
    BuildOptions,
    supports_native_sidecar,
)
from .instance.setup import setup_falco_controller
from .kube import (
    ApiError,
    Client,
    Manager,
    ManagerOptions,
    RuntimeMetrics,
    check_timings,
    configure_logging,
    run_process,
    unique_identity,
)
from .kube.resources import CUSTOM_RESOURCE_DEFINITIONS
from .lint import add_lint_command, run_lint
from .migrate.command import add_migrate_command, run_migrate
from .push import add_push_command, run_push
from .resources import registry
from .status import setup_status_controllers

log = logging.getLogger("falco_operator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="falco-operator", description="Run Falco on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                     help="kubeconfig to use outside a cluster (in a pod: the service account)")  # fmt: skip
    run.add_argument("--metrics-bind-address", default=":8080", help="serve /metrics here ('' to disable)")
    run.add_argument("--health-probe-bind-address", default=":8081", help="serve /healthz and /readyz here")
    run.add_argument("--leader-elect", action="store_true", help="run controllers only while holding the Lease")
    run.add_argument("--leader-election-namespace", default=os.environ.get("POD_NAMESPACE", "falco-operator-system"))
    run.add_argument("--leader-election-id", default="falco-operator", help="name of the Lease")
    run.add_argument("--leader-election-lease-duration", type=float, default=15.0,
                     help="seconds a standby waits after the last renewal it saw before taking the Lease")  # fmt: skip
    run.add_argument("--leader-election-renew-deadline", type=float, default=10.0,
                     help="seconds the leader keeps leading without a successful renewal, then exits")  # fmt: skip
    run.add_argument("--leader-election-retry-period", type=float, default=2.0,
                     help="seconds between attempts to acquire or renew the Lease")  # fmt: skip
    run.add_argument("--graceful-shutdown-timeout", type=float, default=20.0,
                     help="seconds in-flight reconciles get to finish on SIGTERM before the Lease is released "
                          "(keep it below the pod's terminationGracePeriodSeconds, 30)")  # fmt: skip
    run.add_argument("--namespace", action="append", default=[], dest="namespaces",
                     help="watch this namespace (repeatable); default: all namespaces")  # fmt: skip
    run.add_argument("--excluded-labels", action="append", default=[],
                     help="glob of Falco labels not copied to its objects (repeatable or comma-separated)")  # fmt: skip
    agent_image = os.environ.get("FALCO_OPERATOR_AGENT_IMAGE", DEFAULT_AGENT_IMAGE)
    run.add_argument("--agent-image", default=agent_image,
                     help="image of the artifact agent sidecar (env FALCO_OPERATOR_AGENT_IMAGE)")  # fmt: skip
    run.add_argument("--default-falco-version", default=DEFAULT_FALCO_VERSION,
                     help="Falco image tag when a Falco sets none")  # fmt: skip
    run.add_argument("--native-sidecar", choices=("auto", "true", "false"), default="auto",
                     help="run the agent as a native sidecar; auto: when the API server is 1.29 or later")  # fmt: skip
    run.add_argument("--allow-private-registries", action="store_true",
                     help="let the agents reach registries at loopback, link-local and private addresses (a "
                     "registry inside the cluster); without it they reach only public addresses")  # fmt: skip
    run.add_argument("--sync-period", type=float, default=600.0, help="seconds between full resyncs of Falcos")
    run.add_argument("--workers", type=int, default=4, help="concurrent reconciles")
    run.add_argument("--log-format", choices=("json", "text"), default="json")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    add_lint_command(commands)
    add_migrate_command(commands)
    add_push_command(commands)
    return parser


async def connect(kubeconfig: str | None, metrics: RuntimeMetrics) -> Client:
    """Straight to the API server with the pod's service account, or a kubeconfig holding a token or a client
    certificate (kr8s and what it imports are about 18 MiB of resident memory); through kr8s for the credentials
    only it understands (exec plugins, auth providers, ``~/.kube/config`` outside a cluster)."""
    try:
        return await Client.connect(kubeconfig=kubeconfig, field_manager="falco-operator", metrics=metrics,
                                    registry=registry(), direct=True)  # fmt: skip
    except ValueError as reason:
        log.info("connecting through kr8s: %s", reason)
        return await Client.connect(kubeconfig=kubeconfig, field_manager="falco-operator", metrics=metrics,
                                    registry=registry())  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    metrics = RuntimeMetrics()
    client = await connect(args.kubeconfig, metrics)
    native = args.native_sidecar == "true"
    if args.native_sidecar == "auto":
        native = supports_native_sidecar(*await client.server_version())
    excluded = tuple(glob.strip() for value in args.excluded_labels for glob in value.split(",") if glob.strip())
    options = BuildOptions(agent_image=args.agent_image, default_falco_version=args.default_falco_version,
                           native_sidecar=native, excluded_labels=excluded,
                           allow_private_registries=args.allow_private_registries,
                           falco_crd_uid=await crd_uid(client, FALCO_CRD))  # fmt: skip
    component_options = ComponentOptions(excluded_labels=excluded, crd_uid=await crd_uid(client, COMPONENT_CRD))
    identity = unique_identity()
    manager = Manager(
        client,
        ManagerOptions(
            metrics_address=args.metrics_bind_address or None, probe_address=args.health_probe_bind_address or None,
            leader_election=args.leader_elect, leader_election_namespace=args.leader_election_namespace,
            leader_election_id=args.leader_election_id, identity=identity,
            lease_duration=args.leader_election_lease_duration, renew_deadline=args.leader_election_renew_deadline,
            retry_period=args.leader_election_retry_period, graceful_shutdown=args.graceful_shutdown_timeout,
        ),
        metrics,
    )  # fmt: skip
    setup_falco_controller(manager, client, options, namespaces=tuple(args.namespaces), workers=args.workers,
                           resync_period=args.sync_period, identity=identity)  # fmt: skip
    setup_component_controller(manager, client, component_options, namespaces=tuple(args.namespaces),
                               resync_period=args.sync_period, identity=identity)  # fmt: skip
    setup_status_controllers(manager, client, namespaces=tuple(args.namespaces), identity=identity)
    setup_falcorules_controller(manager, client, namespaces=tuple(args.namespaces))
    log.info("starting", extra={"native_sidecar": native, "namespaces": args.namespaces or "all"})
    try:
        await manager.run_until_signalled()
    finally:
        await client.close()


async def crd_uid(client: Client, name: str) -> str | None:
    """The UID of the CRD ``name`` (Falco's, Component's), or None (with a warning) when this operator may not
    read it."""
    try:
        crd = await client.get(CUSTOM_RESOURCE_DEFINITIONS, name)
    except ApiError as error:
        log.warning("cannot read the CRD %s (%s): the cluster objects made for its objects will have no owner, so "
                    "an uninstall that finds no operator running leaves them", name, error)  # fmt: skip
        return None
    return str(crd["metadata"]["uid"])


def main(argv: list[str] | None = None) -> int:
    # kr8s warns at every start when the API server is newer than the versions it lists; the operator talks to the
    # API through its own resource definitions, so the warning says nothing an operator user can act on.
    warnings.filterwarnings("ignore", message=r"Kubernetes version .* is not supported", category=UserWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        try:
            check_timings(args.leader_election_lease_duration, args.leader_election_renew_deadline,
                          args.leader_election_retry_period)  # fmt: skip
        except ValueError as error:
            parser.error(str(error))
    if args.command == "lint":
        return run_lint(args, sys.stdout)
    if args.command == "migrate-helm":
        return run_migrate(args, sys.stdout, sys.stderr)
    if args.command == "push":
        return run_push(args, sys.stdout, sys.stderr)
    configure_logging(args.log_format, args.log_level)
    return run_process(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
