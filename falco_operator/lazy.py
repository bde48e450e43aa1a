"""Package exports imported on first use, so that importing one module of a package does not import all of it.

A package lists its exports as usual, as ``from .module import name`` lines, but inside ``if TYPE_CHECKING:``
(type checkers and readers see ordinary imports), and ends with ``__getattr__ = lazy_exports(__name__, __file__)``.
The first access to an export imports its module (the block is read from the package's source, which every
install of the project has: pip installs the ``.py`` files). The artifact agent imports a few models and a few pieces of
``kube``; the eager package imports built every model of the project and the operator's whole machinery in each
Falco pod's sidecar.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path


def declared_exports(init_file: str) -> dict[str, str]:
    """Export name → relative module, from the ``if TYPE_CHECKING:`` block of a package's ``__init__.py``."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"), init_file)
    exports: dict[str, str] = {}
    for statement in tree.body:
        if not (isinstance(statement, ast.If) and isinstance(statement.test, ast.Name)):
            continue
        if statement.test.id != "TYPE_CHECKING":
            continue
        for node in statement.body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                for alias in node.names:
                    exports[alias.asname or alias.name] = f".{node.module}"
    return exports


def lazy_exports(package: str, init_file: str) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``: its declared exports, then its submodules, on first use."""
    exports = declared_exports(init_file)

    def __getattr__(name: str) -> object:
        namespace = sys.modules[package].__dict__
        module = exports.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module, package), name)
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        namespace[name] = value
        return value

    return __getattr__
