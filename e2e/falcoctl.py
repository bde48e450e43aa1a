"""falcoctl, built from its Go module and cached like the control plane: the reference reader of Falco artifacts,
used to check that what `falco-operator push` writes is what falcoctl reads.

falcoctl's go.mod has a ``replace`` directive, so ``go install module@version`` refuses it: the module is
downloaded from the Go module proxy, copied to the cache and built there.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from .controlplane.build import cache_root, go_env, go_version, pip_go

FALCOCTL_MODULE = "github.com/falcosecurity/falcoctl"
FALCOCTL_VERSION = "v0.13.0"


def falcoctl_dir() -> Path:
    return cache_root() / f"falcoctl-{FALCOCTL_VERSION}"


def ensure_falcoctl() -> Path:
    """The cached falcoctl binary, built on first use (a few minutes: its module set is large)."""
    binary = falcoctl_dir() / "bin" / "falcoctl"
    if binary.is_file():
        return binary
    go = shutil.which("go") or (str(Path("/usr/local/go/bin/go")) if Path("/usr/local/go/bin/go").is_file() else None)
    go = go or pip_go()
    env = go_env(go, go_version(go))
    downloaded = _go(go, ["mod", "download", "-json", f"{FALCOCTL_MODULE}@{FALCOCTL_VERSION}"], Path.cwd(), env)
    module_dir = Path(json.loads(downloaded)["Dir"])
    source = falcoctl_dir() / "src"
    if source.exists():
        _make_writable(source)
        shutil.rmtree(source)
    shutil.copytree(module_dir, source)
    _make_writable(source)  # the module cache is read-only; the build may complete go.sum
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(".falcoctl.tmp")
    _go(go, ["build", "-trimpath", "-o", str(partial), "."], source, env)
    partial.replace(binary)
    return binary


def _make_writable(root: Path) -> None:
    for directory, _, files in os.walk(root):
        os.chmod(directory, os.stat(directory).st_mode | stat.S_IWUSR)
        for name in files:
            path = os.path.join(directory, name)
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)


def _go(go: str, args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed:\n{(result.stdout + result.stderr)[-6000:]}")
    return result.stdout


if __name__ == "__main__":
    print(ensure_falcoctl())
    sys.exit(0)
