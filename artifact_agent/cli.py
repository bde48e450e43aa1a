"""The ``falco-artifact-agent`` command."""

from __future__ import annotations

import argparse

from falco_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="falco-artifact-agent", description="Materialize Falco rules, plugins and config next to Falco."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0
