"""The ``falco-artifact-agent`` command: the sidecar that delivers rules, plugins and config to Falco."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import anyio

from falco_operator import __version__
from falco_operator.artifacts.image_defaults import ImageDefaults
from falco_operator.artifacts.oci.hosts import (
    CA_FLAG,
    CREDENTIALS_TO_MIRRORS_FLAG,
    MIRROR_FLAG,
    MIRRORS_ONLY_FLAG,
    RegistryHosts,
)
from falco_operator.artifacts.plugins import ARTIFACT_PLUGINS_DIR, FALCO_PLUGINS_DIR
from falco_operator.artifacts.rules import rules_set_check
from falco_operator.kube import Client, RuntimeMetrics, configure_logging
from falco_operator.resources import registry

from .agent import OCI_CACHE, Agent, Settings
from .materializer import Directories
from .pull_settings import PullSettings
from .report import Identity

log = logging.getLogger("artifact_agent")
FIELD_MANAGER = "falco-artifact-agent"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="falco-artifact-agent",
        description="Materialize the Rulesfiles, Plugins and Configs that apply to this Falco pod into the "
        "directories Falco reads, and report what was delivered in an ArtifactReport. Identity comes from the "
        "environment: POD_NAME, POD_NAMESPACE, POD_UID, NODE_NAME, FALCO_INSTANCE.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                        help="kubeconfig with a token or client certificate, outside a cluster (in a pod: the mounted "
                        "service account token)")  # fmt: skip
    parser.add_argument("--rules-dir", type=Path, default=Path("/etc/falco/rules.d"), help="rules files go here")
    parser.add_argument("--config-dir", type=Path, default=Path("/etc/falco/config.d"),
                        help="config fragments (and the plugins fragment) go here")  # fmt: skip
    parser.add_argument("--plugins-dir", type=Path, default=Path(ARTIFACT_PLUGINS_DIR),
                        help="plugin libraries delivered from OCI go here, and their library paths point here, so "
                        f"Falco must see it at the same path; not Falco's own {FALCO_PLUGINS_DIR}, which stays "
                        "the image's (relative libraryPaths of Plugins without ociArtifact point there)")  # fmt: skip
    parser.add_argument("--image-defaults-dir", type=Path, default=None,
                        help="a copy of the image's /etc/falco (its falco_rules.yaml), for a Falco with "
                        "spec.imageDefaults: the plugins fragment then always configures the image's container "
                        "plugin (libcontainer.so; a Plugin named container replaces it), and rules are checked as "
                        "Falco loads them, after the image's falco_rules.yaml (a Rulesfile delivering Falco's "
                        "default rules from OCI replaces that file)")  # fmt: skip
    parser.add_argument("--probe-address", default=":8081",
                        help="serve /healthz, /readyz and /metrics here ('' to disable)")  # fmt: skip
    parser.add_argument("--debounce", type=float, default=0.3,
                        help="seconds of quiet that end a burst of changes, written as one generation")  # fmt: skip
    parser.add_argument("--stuck-after", type=float, default=180.0,
                        help="/healthz fails once an informer has failed this many seconds in a row")  # fmt: skip
    parser.add_argument("--falco-url", default="http://127.0.0.1:8765",
                        help="Falco's web server, asked what it loaded ('' to not ask)")  # fmt: skip
    parser.add_argument("--falco-poll-interval", type=float, default=30.0,
                        help="seconds between questions to Falco when nothing changed (every 0.5 s for 30 s after "
                        "a change)")  # fmt: skip
    parser.add_argument("--confirm-window", type=float, default=2.0,
                        help="seconds the report waits after a swap for Falco to confirm what was written, so that one "
                        "write says both (longer when Falco's recent reloads were slower, at most five times this; "
                        "0: write at once)")  # fmt: skip
    parser.add_argument("--oci-cache-dir", type=Path, default=None,
                        help="pulled OCI files, kept by digest so an unchanged digest is never downloaded again "
                        "(default: ..oci-cache in the plugins directory, which outlives agent restarts)")  # fmt: skip
    parser.add_argument("--registry-ca", default=None,
                        help="PEM file of CAs to trust for registries, besides the system's")  # fmt: skip
    parser.add_argument(CA_FLAG, action="append", default=[], metavar="HOST=FILE",
                        help="a PEM file of CAs trusted for HOST only, besides the system's (repeatable; the operator "
                        "sets it from the Falco's spec.registries caBundle)")  # fmt: skip
    parser.add_argument(MIRROR_FLAG, action="append", default=[], metavar="HOST=MIRROR",
                        help="ask MIRROR (verified TLS, no credentials) for references to HOST before HOST itself; "
                        "repeat for more mirrors, tried in the order given")  # fmt: skip
    parser.add_argument(MIRRORS_ONLY_FLAG, action="append", default=[], metavar="HOST",
                        help="never ask HOST itself, only its mirrors")  # fmt: skip
    parser.add_argument(CREDENTIALS_TO_MIRRORS_FLAG, action="append", default=[], metavar="HOST",
                        help="send an artifact's credentials for HOST to HOST's mirrors too")  # fmt: skip
    parser.add_argument("--allow-private-registries", action="store_true",
                        help="reach registries and token services at loopback, link-local and private addresses "
                        "(a registry inside the cluster); without it only public addresses are reached")  # fmt: skip
    parser.add_argument("--pull-concurrency", type=int, default=3, help="OCI pulls running at once")
    parser.add_argument("--pull-timeout", type=float, default=30.0,
                        help="seconds a registry may take for one connect, read or write")  # fmt: skip
    parser.add_argument("--pull-deadline", type=float, default=300.0, help="seconds one whole OCI pull may take")
    parser.add_argument("--max-rules-bytes", type=int, default=4 * 1024 * 1024,
                        help="largest OCI rules layer, and largest uncompressed rules archive, accepted")  # fmt: skip
    parser.add_argument("--max-plugin-bytes", type=int, default=64 * 1024 * 1024,
                        help="largest OCI plugin layer, and largest uncompressed plugin archive, accepted (the "
                        "library is held in memory: keep it well under the container's memory limit)")  # fmt: skip
    parser.add_argument("--pull-retry-max", type=float, default=120.0,
                        help="longest wait before a failed pull is retried (the wait doubles from 5 s)")  # fmt: skip
    parser.add_argument("--log-format", choices=("json", "text"), default="json")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    return parser


def identity_from_environment(environ: dict[str, str]) -> Identity:
    missing = [name for name in ("POD_NAME", "POD_NAMESPACE") if not environ.get(name)]
    if missing:
        raise SystemExit(f"falco-artifact-agent: set {' and '.join(missing)} (the pod template sets them)")
    return Identity(
        pod_name=environ["POD_NAME"], namespace=environ["POD_NAMESPACE"], pod_uid=environ.get("POD_UID") or None,
        node_name=environ.get("NODE_NAME") or None, instance=environ.get("FALCO_INSTANCE") or None,
    )  # fmt: skip


def registry_hosts(args: argparse.Namespace) -> RegistryHosts:
    try:
        return RegistryHosts.parse(args.registry_host_ca, args.registry_mirror, args.registry_mirrors_only,
                                   args.registry_credentials_to_mirrors)  # fmt: skip
    except ValueError as error:
        raise SystemExit(f"falco-artifact-agent: {error}") from None


async def run(args: argparse.Namespace, identity: Identity) -> None:
    metrics = RuntimeMetrics()
    # Direct: no kr8s in the sidecar of every Falco pod (in-cluster token, or a token/certificate kubeconfig).
    client = await Client.connect(kubeconfig=args.kubeconfig, field_manager=FIELD_MANAGER, metrics=metrics,
                                  registry=registry(), direct=True)  # fmt: skip
    settings = Settings(
        identity=identity,
        directories=Directories(args.rules_dir, args.config_dir, args.plugins_dir),
        probe_address=args.probe_address or None,
        debounce=args.debounce,
        stuck_after=args.stuck_after,
        falco_url=args.falco_url.rstrip("/") or None,
        falco_poll_interval=args.falco_poll_interval,
        confirm_window=args.confirm_window,
        pulls=PullSettings(
            cache_dir=args.oci_cache_dir or args.plugins_dir / OCI_CACHE,
            concurrency=args.pull_concurrency,
            request_timeout=args.pull_timeout,
            pull_deadline=args.pull_deadline,
            max_rules_bytes=args.max_rules_bytes,
            max_plugin_bytes=args.max_plugin_bytes,
            retry_initial=min(5.0, args.pull_retry_max),
            retry_max=args.pull_retry_max,
            extra_ca=args.registry_ca,
            allow_private=args.allow_private_registries,
            hosts=registry_hosts(args),
        ),
        image_defaults=ImageDefaults.read(args.image_defaults_dir) if args.image_defaults_dir else None,
    )
    agent = Agent(client, settings, metrics, rules_set_check=rules_set_check)
    log.info("starting", extra={"pod": identity.pod_name, "namespace": identity.namespace,
                                "node": identity.node_name, "instance": identity.instance})  # fmt: skip
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(agent.run)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for received in signals:
                    log.info("received %s, stopping", signal.Signals(received).name)
                    group.cancel_scope.cancel()
                    break
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    registry_hosts(args)  # refuses bad flags before anything starts
    identity = identity_from_environment(dict(os.environ))
    anyio.run(run, args, identity)
    return 0


if __name__ == "__main__":
    sys.exit(main())
