"""Pure parts of the real node build: where the binaries go, how they are stamped, and what counts as complete."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e2e.controlplane.build import KUBERNETES_VERSION, cache_root, version_ldflags
from e2e.realnode.build import (
    CNI_PLUGINS_VERSION,
    COMPLETE_MARKER,
    CONTAINERD_VERSION,
    NODE_RECIPE,
    RUNC_VERSION,
    NodeBinaries,
    Program,
    changed_requirements,
    is_complete,
    missing_programs,
    node_binaries_dir,
    node_dir_name,
    programs,
    requirement_versions,
)


def _program(name: str) -> Program:
    return next(program for program in programs() if program.name == name)


def _fill(root: Path, *, skip: str = "") -> None:
    """Lay out every expected binary as an executable file, except ``skip``."""
    for program in programs():
        if program.name == skip:
            continue
        output = program.output(root)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"\x7fELF")
        output.chmod(0o755)


def test_directory_name_carries_every_version_and_the_recipe() -> None:
    assert node_dir_name() == (
        f"node-{KUBERNETES_VERSION}-containerd-{CONTAINERD_VERSION}-runc-{RUNC_VERSION}"
        f"-cni-{CNI_PLUGINS_VERSION}-r{NODE_RECIPE}"
    )
    assert node_dir_name() == "node-v1.36.3-containerd-v2.4.2-runc-v1.5.3-cni-v1.10.0-r1"


def test_binaries_live_beside_the_control_plane_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert node_binaries_dir() == tmp_path / "falco-operator-e2e" / node_dir_name() / "bin"
    assert node_binaries_dir().parent.parent == cache_root()


def test_kubelet_and_kube_proxy_carry_the_control_plane_stamps_without_json_v2() -> None:
    for name in ("kubelet", "kube-proxy"):
        program = _program(name)
        assert program.ldflags == version_ldflags()
        assert program.package == f"k8s.io/kubernetes/cmd/{name}"
        assert program.env == {"GOEXPERIMENT": "nojsonv2"}
        assert not program.cgo


def test_containerd_binaries_are_static_and_stamped_with_the_release() -> None:
    for name in ("containerd", "ctr", "containerd-shim-runc-v2"):
        program = _program(name)
        assert program.package == f"./cmd/{name}"
        assert program.tags == "no_btrfs no_devmapper no_zfs"
        assert not program.cgo
        assert program.ldflags.startswith("-s -w ")
        assert "-X github.com/containerd/containerd/v2/version.Version=v2.4.2" in program.ldflags
        assert "-X github.com/containerd/containerd/v2/version.Revision=modproxy" in program.ldflags


def test_runc_uses_cgo_and_seccomp_and_reports_its_version_without_the_v() -> None:
    runc = _program("runc")
    assert runc.cgo
    assert runc.tags == "seccomp urfave_cli_no_docs"
    assert "-X main.version=1.5.3 " in runc.ldflags
    assert "-X main.gitCommit=modproxy" in runc.ldflags


def test_cni_plugins_land_in_the_cni_directory_stamped_with_their_version(tmp_path: Path) -> None:
    names = {"bridge", "host-local", "portmap", "loopback"}
    cni = [program for program in programs() if program.in_cni_dir]
    assert {program.name for program in cni} == names
    for program in cni:
        assert program.output(tmp_path) == tmp_path / "cni" / program.name
        assert not program.cgo
        assert program.ldflags.endswith("pkg/utils/buildversion.BuildVersion=v1.10.0")
    assert _program("kubelet").output(tmp_path) == tmp_path / "bin" / "kubelet"


def test_node_binaries_resolve_names_in_their_directory(tmp_path: Path) -> None:
    binaries = NodeBinaries(tmp_path / "bin", tmp_path / "cni")
    assert binaries.path("runc") == tmp_path / "bin" / "runc"
    assert binaries.cni_dir == tmp_path / "cni"


def test_an_empty_directory_misses_everything(tmp_path: Path) -> None:
    assert [program.name for program in missing_programs(tmp_path)] == [program.name for program in programs()]
    assert not is_complete(tmp_path)


def test_complete_needs_every_binary_and_the_marker(tmp_path: Path) -> None:
    _fill(tmp_path)
    assert missing_programs(tmp_path) == []
    assert not is_complete(tmp_path), "binaries without the marker may come from an interrupted --force build"
    (tmp_path / COMPLETE_MARKER).write_text("{}")
    assert is_complete(tmp_path)


def test_a_leftover_partial_output_does_not_count(tmp_path: Path) -> None:
    _fill(tmp_path, skip="containerd")
    partial = tmp_path / "bin" / ".containerd.partial"
    partial.write_bytes(b"half")
    partial.chmod(0o755)
    (tmp_path / COMPLETE_MARKER).write_text("{}")
    assert [program.name for program in missing_programs(tmp_path)] == ["containerd"]
    assert not is_complete(tmp_path)


def test_a_non_executable_binary_counts_as_missing(tmp_path: Path) -> None:
    _fill(tmp_path)
    (tmp_path / COMPLETE_MARKER).write_text("{}")
    bridge = tmp_path / "cni" / "bridge"
    bridge.chmod(0o644)
    if os.access(bridge, os.X_OK):
        pytest.skip("this user may execute any file")
    assert [program.name for program in missing_programs(tmp_path)] == ["bridge"]
    assert not is_complete(tmp_path)


GO_MOD = """module falco-operator.local/controlplane

go 1.26.0

require k8s.io/kubernetes v1.36.3

require (
\tgithub.com/google/cadvisor v0.53.0 // indirect
\tk8s.io/api v0.36.3
)

replace (
\tk8s.io/api => k8s.io/api v0.36.3
)
"""


def test_requirements_come_from_single_lines_and_blocks_not_replacements() -> None:
    assert requirement_versions(GO_MOD) == {
        "k8s.io/kubernetes": "v1.36.3",
        "github.com/google/cadvisor": "v0.53.0",
        "k8s.io/api": "v0.36.3",
    }


def test_added_requirements_keep_the_module_set_but_changed_or_dropped_ones_do_not() -> None:
    added = GO_MOD.replace("require (\n", "require (\n\tgithub.com/opencontainers/cgroups v0.0.4 // indirect\n")
    assert changed_requirements(GO_MOD, added) == []
    raised = GO_MOD.replace("cadvisor v0.53.0", "cadvisor v0.54.0")
    assert changed_requirements(GO_MOD, raised) == ["github.com/google/cadvisor v0.53.0 -> v0.54.0"]
    dropped = GO_MOD.replace("require k8s.io/kubernetes v1.36.3\n", "")
    assert changed_requirements(GO_MOD, dropped) == ["k8s.io/kubernetes v1.36.3 -> absent"]
