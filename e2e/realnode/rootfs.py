"""Debian root filesystems for the node's images, from Debian's own packages: a ``debootstrap --variant=minbase``
tree, copies of it, and packages installed into a copy with ``chroot apt-get``. Needs root (mount, chroot).
Downloaded packages are kept in a cache directory, so a rebuild downloads only what changed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        raise PermissionError(f"{why} needs root (debootstrap, mount, chroot)")


def debootstrap(target: Path, debs: Path) -> None:
    """A minbase tree at ``target``, built next to it and renamed into place, so ``target`` is whole or absent."""
    require_root("debootstrap")
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    cache = debs / "debootstrap"
    cache.mkdir(parents=True, exist_ok=True)
    command = ["debootstrap", "--variant=minbase", f"--cache-dir={cache}", SUITE, str(partial), MIRROR]
    subprocess.run(["nice", "-n", "10", *command], check=True, stdout=subprocess.DEVNULL)
    partial.rename(target)


def copy_tree(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(target)], check=True)


def remove_tree(tree: Path) -> None:
    """Remove a tree; refuse while something is still mounted inside it (rm would descend into the mount)."""
    inside = [mount for mount in _mount_points() if mount == tree or tree in mount.parents]
    if inside:
        raise RuntimeError(f"not removing {tree}: still mounted there: {inside}")
    shutil.rmtree(tree, ignore_errors=True)


def chroot(root: Path, *command: str, capture: bool = False) -> str:
    """Run ``command`` inside ``root`` with /proc mounted; return its output when ``capture``."""
    with _mounted(root, "proc", ["-t", "proc", "proc"]):
        done = subprocess.run(["chroot", str(root), *command], check=True, capture_output=capture, text=True)
    return done.stdout if capture else ""


def install_packages(root: Path, packages: Sequence[str], debs: Path) -> None:
    """``apt-get install`` ``packages`` (no recommends) into ``root``, leaving no package lists or archives in it.

    The chroot borrows the host's resolv.conf for the downloads, and the shared ``debs`` directory as its
    archive cache, so packages are downloaded once across images and runs."""
    require_root("apt-get in a chroot")
    archives = debs / "apt"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with ExitStack() as stack:
        stack.enter_context(_mounted(root, "proc", ["-t", "proc", "proc"]))
        stack.enter_context(_mounted(root, "var/cache/apt/archives", ["--bind", str(archives)]))
        stack.enter_context(_borrowed_file(root, "etc/resolv.conf"))
        # No pseudo-terminal for dpkg's log: the chroot has no /dev/pts.
        apt = ["chroot", str(root), "apt-get", "-qq", "-o", "Dpkg::Use-Pty=0"]
        subprocess.run([*apt, "update"], check=True, env=environment)
        install = [*apt, "install", "-y", "--no-install-recommends", *packages]
        subprocess.run(install, check=True, env=environment, stdout=subprocess.DEVNULL)
    subprocess.run(["chroot", str(root), "apt-get", "clean"], check=True)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)


@contextmanager
def _mounted(root: Path, mount_point: str, source: list[str]) -> Iterator[None]:
    target = root / mount_point
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *source, str(target)], check=True)
    try:
        yield
    finally:
        if subprocess.run(["umount", str(target)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(target)], check=True)


@contextmanager
def _borrowed_file(root: Path, name: str) -> Iterator[None]:
    """The host's ``/name`` inside ``root`` for a while; the tree's own file (or its absence) afterwards."""
    target = root / name
    link = os.readlink(target) if target.is_symlink() else None
    content = target.read_bytes() if link is None and target.is_file() else None
    target.unlink(missing_ok=True)
    shutil.copyfile(Path("/") / name, target)
    try:
        yield
    finally:
        target.unlink(missing_ok=True)
        if link is not None:
            target.symlink_to(link)
        elif content is not None:
            target.write_bytes(content)


def _mount_points() -> list[Path]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [Path(line.split()[4].replace("\\040", " ")) for line in mountinfo]
