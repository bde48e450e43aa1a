"""podman with its own storage (no registry, no daemon): import a root filesystem as an image, build a
Containerfile, run a command in an image, save an image as an OCI layout directory."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST_CA_BUNDLE = Path("/etc/ssl/certs")
HOST_PIP_CONF = Path("/etc/pip.conf")


@dataclass(frozen=True)
class Podman:
    storage: Path
    # runc rather than Debian's default crun, which refuses a host with both cgroup versions mounted (hybrid).
    runtime: str = "runc"

    @property
    def runroot(self) -> Path:
        """Run state, under /run: podman refuses a runroot longer than 50 characters."""
        return Path("/run") / f"falco-operator-podman-{hashlib.sha256(bytes(self.storage)).hexdigest()[:8]}"

    def command(self, *arguments: str) -> list[str]:
        return [
            "podman",
            f"--root={self.storage / 'root'}",
            f"--runroot={self.runroot}",
            "--storage-driver=overlay",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            f"--runtime={self.runtime}",
            *arguments,
        ]

    def run(self, *arguments: str, capture: bool = False) -> str:
        """Run podman; its output goes to stderr unless captured (stdout is for the caller's results)."""
        streams = {"capture_output": True} if capture else {"stdout": sys.stderr}
        done = subprocess.run(self.command(*arguments), check=False, text=True, **streams)
        if done.returncode != 0:
            raise RuntimeError(f"podman {arguments[0]} failed ({done.returncode}): {done.stderr or 'see above'}")
        return done.stdout if capture else ""

    def has_image(self, name: str) -> bool:
        return subprocess.run(self.command("image", "exists", name), check=False).returncode == 0

    def import_tree(self, tree: Path, name: str, changes: Sequence[str]) -> None:
        """Import the directory ``tree`` as the one-layer image ``name`` (``changes``: Containerfile lines such as
        ``ENV PATH=...``)."""
        tar = ["tar", "--numeric-owner", "--xattrs", "-C", str(tree), "-c", "."]
        pack = subprocess.Popen(tar, stdout=subprocess.PIPE)
        flags = [f"--change={change}" for change in changes]
        imported = subprocess.run(
            self.command("import", *flags, "-", name), stdin=pack.stdout, stdout=sys.stderr, check=False
        )
        if pack.stdout is not None:
            pack.stdout.close()
        if pack.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"podman import of {tree} as {name} failed")

    def build(self, context: Path, containerfile: Path, name: str, build_args: Mapping[str, str]) -> None:
        """Build without pulling; build containers share the host's network, CA bundle and pip configuration
        (PyPI may be reached through a TLS-intercepting proxy whose CA only the host's bundle holds)."""
        mounts = [f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
        if HOST_PIP_CONF.is_file():
            mounts.append(f"--volume={HOST_PIP_CONF}:{HOST_PIP_CONF}:ro")
        arguments = [f"--build-arg={key}={value}" for key, value in build_args.items()]
        self.run(
            "build",
            "--pull=never",
            "--network=host",
            *mounts,
            *arguments,
            f"--file={containerfile}",
            f"--tag={name}",
            str(context),
        )

    def run_in(self, image: str, command: Sequence[str], user: str) -> str:
        """The output of ``command`` run in a throwaway container of ``image`` as ``user``.

        The limits are set low on purpose: podman's defaults are above this host's hard limits, and raising a hard
        limit needs CAP_SYS_RESOURCE, which root lacks here (runc: ``error setting rlimit type 7``)."""
        limits = ("--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024")
        isolated = ("--rm", "--pull=never", "--network=none", *limits, f"--user={user}")
        return self.run("run", *isolated, image, *command, capture=True)

    def save_layout(self, image: str, directory: Path) -> None:
        """``image`` as an OCI image layout directory (uncompressed layers)."""
        self.run("save", "--format=oci-dir", f"--output={directory}", image)

    def prune(self) -> None:
        """Drop untagged images (earlier builds, build stages), which only take space."""
        self.run("image", "prune", "--force", capture=True)
