"""``falco-operator migrate-helm VALUES.yaml``: print the operator's objects for a falco chart's values file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from ..artifacts.yamldoc import MAX_DOCUMENT_BYTES
from . import DEFAULT_NAMESPACE, DEFAULT_RELEASE, migrate
from .chart_defaults import CHART_VERSION
from .output import render
from .values import ValuesProblem, read_values

DESCRIPTION = (
    f"Read a values file of the falcosecurity/charts falco chart ({CHART_VERSION}, Falco 0.44), merge it over "
    "the chart's defaults as Helm does, and print the Falco, Config, Plugin and Rulesfile manifests that run the "
    "same Falco (multi-document YAML on stdout, ready for kubectl apply -f -). Every value it cannot map is listed "
    "with the reason, in a comment block at the top of the output and on stderr. Exit 0 when the manifests were "
    "printed (even with values not mapped), 1 when the values file cannot be read. Offline: nothing is applied."
)


def add_migrate_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "migrate-helm",
        help="print the Falco, Rulesfile, Plugin and Config manifests equivalent to a falco Helm chart's values",
        description=DESCRIPTION,
    )
    command.add_argument(
        "values",
        type=Path,
        metavar="VALUES.yaml",
        help="the chart values (helm get values RELEASE -o yaml, or your -f file)",
    )
    command.add_argument(
        "--name",
        default=DEFAULT_RELEASE,
        help="the Helm release name: the Falco gets the chart's name for it (falco for falco, "
        f"NAME-falco otherwise, or fullnameOverride); default: {DEFAULT_RELEASE}",
    )
    command.add_argument(
        "--namespace",
        default=None,
        help=f"namespace of the objects (default: namespaceOverride, else {DEFAULT_NAMESPACE})",
    )


def run_migrate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path: Path = args.values
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise ValuesProblem(f"the file is larger than {MAX_DOCUMENT_BYTES} bytes")
        values = read_values(path.read_bytes())
    except (OSError, ValuesProblem) as error:
        print(f"migrate-helm: {path}: {error}", file=err)
        return 1
    migration = migrate(values, release=args.name, namespace=args.namespace)
    out.write(render(str(path), migration.manifests, migration.findings))
    for finding in migration.findings:
        print(f"migrate-helm: not mapped: {finding}", file=err)
    return 0
