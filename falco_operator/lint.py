"""``falco-operator lint``: check rules files as Falco would load them, for users' pipelines."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from .api import Rulesfile
from .artifacts import Medium, artifact_file_name
from .artifacts.rules import LoadContext, RulesFile, check_rule_set
from .artifacts.yamldoc import YamlProblem, dump_yaml, load_yaml


def add_lint_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lint = commands.add_parser(
        "lint",
        help="check Falco rules files (and Rulesfile manifests) as Falco would load them",
        description="Check rules files in the order Falco would load them: YAML, items, conditions, references "
        "to macros and lists (also across files), overrides, exceptions, output fields, field names. With --plugin, "
        "also as a Falco that loads exactly those plugins: their fields, field classes nothing provides, "
        "required_plugin_versions (and required_engine_version with --engine-version). Offline: the fields come "
        "from the catalogue built into the operator. Prints file:line:col: severity: message and exits 1 when "
        "there is an error.",
    )
    lint.add_argument("files", nargs="*", type=Path, help="rules files, in load order")
    lint.add_argument("--rulesfile", action="append", default=[], type=Path, dest="rulesfiles",
                      help="a Rulesfile manifest whose inline rules load after FILES, under the name the agent "
                      "gives them (repeatable)")  # fmt: skip
    add_load_context_options(lint)


def add_load_context_options(parser: argparse.ArgumentParser) -> None:
    """--plugin and --engine-version: what the Falco that will load the rules provides."""
    parser.add_argument("--plugin", action="append", default=None, type=_plugin, dest="plugins",
                        metavar="NAME[:VERSION]", help="a plugin the Falco loads, with its version when known, e.g. "
                        "k8saudit:0.18.0 (repeatable; without it plugins are not judged)")  # fmt: skip
    parser.add_argument("--engine-version", default=None, metavar="X.Y.Z",
                        help="the engine version of the Falco (falco --version, Engine), to check "
                        "required_engine_version")  # fmt: skip


def _plugin(value: str) -> tuple[str, str | None]:
    name, _, version = value.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"{value!r}: write NAME or NAME:VERSION, e.g. k8saudit:0.18.0")
    return name, version or None


def load_context(args: argparse.Namespace) -> LoadContext | None:
    """What the Falco provides, from --plugin and --engine-version; None when neither is given."""
    plugins = dict(args.plugins) if args.plugins is not None else None
    if plugins is None and args.engine_version is None:
        return None
    return LoadContext(plugins, args.engine_version)


def run_lint(args: argparse.Namespace, out: TextIO) -> int:
    failed = False
    inputs = [(str(path), path.read_bytes()) for path in args.files]
    for path in args.rulesfiles:
        try:
            inputs.append(_inline_rules(path))
        except (ValueError, YamlProblem) as error:
            print(f"{path}: error: {error}", file=out)
            failed = True
    failed = not lint_rules(inputs, load_context(args), out) or failed
    return 1 if failed else 0


def lint_rules(inputs: list[tuple[str, bytes]], context: LoadContext | None, out: TextIO) -> bool:
    """Print every finding of the rules ``(name, bytes)`` loaded in order; whether Falco would load them (no
    error; warnings pass)."""
    files: list[RulesFile] = []
    passed = True
    for name, data in inputs:
        try:
            document = load_yaml(data)
        except YamlProblem as error:
            print(f"{name}:{error.problem.line or 1}: error: {error.problem.message}", file=out)
            passed = False
            continue
        files.append(RulesFile(name, document, data.decode(errors="replace")))
    for finding in check_rule_set(files, context=context):
        print(finding, file=out)
        passed = passed and finding.severity != "error"
    return passed


def _inline_rules(path: Path) -> tuple[str, bytes]:
    rulesfile = Rulesfile.model_validate(load_yaml(path.read_bytes()))
    inline = rulesfile.spec.inline()
    if inline is None:
        raise ValueError("the Rulesfile has no inline rules")
    data = inline.encode() if isinstance(inline, str) else dump_yaml(inline)
    name = artifact_file_name(rulesfile.spec.priority, rulesfile.metadata.name or "", Medium.INLINE)
    return f"{path}#{name}", data
