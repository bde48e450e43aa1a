"""The images a real Kubernetes node needs, made on this machine without any registry, as OCI archives for
``ctr -n k8s.io images import``, in import order:

1. ``registry.k8s.io/pause:3.10.1``, the pod sandbox: ``pause.c`` built static, run as 65535.
2. ``docker.io/library/falco-operator:0.1.0``, the product: the project's Containerfile built with podman on a
   local stand-in for python:3.11-slim (Debian bookworm's python3 with a virtualenv at /opt/venv).
3. ``docker.io/falcosecurity/falco:0.44.1``, the operator's default Falco image, made of the shared Falco build on
   Debian bookworm with Falco's runtime libraries.

Everything is kept under ``cache_root()/realnode-images``. Each archive's name carries a digest of what it is made
of (recipe, packages, sources), so a second run only hashes the inputs; an archive whose inputs changed is rebuilt
and the old one deleted. Building needs root, debootstrap, gcc, GNU tar and podman; using cached archives does not.

``python -m e2e.realnode.images`` builds what is missing and prints the archives' paths.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from e2e.controlplane.build import cache_root
from e2e.realnode import rootfs
from e2e.realnode.ocilayout import DEFAULT_PATH, ImageConfig, pack_layout, write_image_archive, write_layer
from e2e.realnode.podman import Podman
from falco_operator.instance.options import DEFAULT_AGENT_IMAGE, DEFAULT_FALCO_VERSION, FALCO_IMAGE_REPOSITORY

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
HERE = Path(__file__).resolve().parent

# Bump when a recipe below changes in a way that the digests of its inputs do not show.
RECIPE = "1"
# The archives that the project writes itself also follow the writer.
ARCHIVE_WRITER = HERE / "ocilayout.py"

PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
PAUSE_SOURCE = HERE / "pause.c"

# The files the Containerfile copies into the image, plus the recipe itself.
PRODUCT_SOURCES = ("pyproject.toml", "README.md", "Containerfile", "falco_operator", "artifact_agent")
# The stand-in for the Containerfile's base, docker.io/library/python:3.11-slim.
BASE_IMAGE = "localhost/falco-operator-base:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_CHANGES = (f"ENV PATH=/opt/venv/bin:{DEFAULT_PATH.removeprefix('PATH=')}", "ENV LANG=C.UTF-8", 'CMD ["python3"]')
PRODUCT_USER = "65532:65532"

FALCO_IMAGE = f"{FALCO_IMAGE_REPOSITORY}:{DEFAULT_FALCO_VERSION}"
FALCO_PACKAGES = ("libjsoncpp25", "libre2-9", "libtbb12", "libyaml-cpp0.7", "libcurl4", "libelf1", "ca-certificates")


@dataclass(frozen=True)
class ImageFile:
    source: Path
    target: str
    mode: int


# The modern-eBPF build also runs `engine.kind: nodriver`; the container plugin is the one with live metadata.
FALCO_FILES = (
    ImageFile(SHARED / "falco" / "bin" / "falco-modern-bpf", "usr/bin/falco", 0o755),
    ImageFile(
        SHARED / "falco" / "plugins" / "container-worker" / "libcontainer.so",
        "usr/share/falco/plugins/libcontainer.so",
        0o644,
    ),
    ImageFile(SHARED / "testdata" / "falco-rules" / "falco_rules.yaml", "etc/falco/falco_rules.yaml", 0o644),
)
# As in the official image: Falco finds the host's /proc, /boot, ... under HOST_ROOT.
FALCO_CONFIG = ImageConfig(env=(DEFAULT_PATH, "HOST_ROOT=/host"), cmd=("/usr/bin/falco",))


def fully_qualified(name: str) -> str:
    """An image name as containerd's CRI stores it: ``falco-operator:0.1.0`` is
    ``docker.io/library/falco-operator:0.1.0``."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if rest else f"docker.io/library/{name}"


PRODUCT_IMAGE = fully_qualified(DEFAULT_AGENT_IMAGE)


def inputs_digest(*inputs: str | Path) -> str:
    """Twelve hex digits of a SHA-256 over strings and the files under paths (relative names and contents;
    ``__pycache__`` left out), so a cached output's name changes when anything it is made of changes."""
    hasher = hashlib.sha256()
    for item in inputs:
        if isinstance(item, str):
            hasher.update(b"string\0" + item.encode() + b"\0")
            continue
        files = sorted(path for path in item.rglob("*") if path.is_file()) if item.is_dir() else [item]
        for file in files:
            if "__pycache__" in file.parts:
                continue
            hasher.update(b"file\0" + file.relative_to(item.parent).as_posix().encode() + b"\0")
            with file.open("rb") as content:
                hasher.update(hashlib.file_digest(content, "sha256").digest())
    return hasher.hexdigest()[:12]


@dataclass(frozen=True)
class Cache:
    root: Path

    @property
    def debs(self) -> Path:
        return self.root / "debs"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def base(self) -> Path:
        return self.root / "rootfs" / f"debian-{rootfs.SUITE}-minbase"

    @property
    def podman(self) -> Podman:
        return Podman(self.root / "podman")

    def archive(self, kind: str, image: str, digest: str) -> Path:
        """``<kind>/<kind>-<tag>-<digest>.tar``: the image's tag and a digest of what it is made of. One directory
        per kind, so that dropping one kind's older archives cannot touch another's (falco-* is a prefix of
        falco-operator-*)."""
        return self.root / kind / f"{kind}-{image.rpartition(':')[2]}-{digest}.tar"

    def drop_other_archives(self, keep: Path) -> None:
        for old in keep.parent.glob("*.tar"):
            if old != keep:
                old.unlink()

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        self.work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work) as directory:
            yield Path(directory)


def ensure_images(cache_dir: Path | None = None) -> list[Path]:
    """The three image archives, built when missing or out of date, in import order: pause, product, Falco."""
    cache = Cache(cache_dir or cache_root() / "realnode-images")
    cache.root.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache.root / "lock"):
        # Left by a run that was killed; nothing is mounted there once that run's process is gone.
        shutil.rmtree(cache.work, ignore_errors=True)
        return [ensure_pause(cache), ensure_product(cache), ensure_falco(cache)]


def ensure_pause(cache: Cache) -> Path:
    archive = cache.archive("pause", PAUSE_IMAGE, inputs_digest(RECIPE, ARCHIVE_WRITER, PAUSE_SOURCE))
    if archive.exists():
        _log(f"pause: cached {archive.name}")
        return archive
    with _step(f"pause: {PAUSE_IMAGE}"), cache.scratch() as work:
        tree = work / "rootfs"
        tree.mkdir()
        subprocess.run(["gcc", "-static", "-O2", "-o", str(tree / "pause"), str(PAUSE_SOURCE)], check=True)
        subprocess.run(["strip", str(tree / "pause")], check=True)
        config = ImageConfig(user="65535:65535", entrypoint=("/pause",))
        _archive_tree(tree, PAUSE_IMAGE, config, archive, work)
    cache.drop_other_archives(archive)
    return archive


def ensure_product(cache: Cache) -> Path:
    base_digest = inputs_digest(RECIPE, *BASE_PACKAGES, *BASE_CHANGES)
    sources = [ROOT / name for name in PRODUCT_SOURCES]
    archive = cache.archive("falco-operator", PRODUCT_IMAGE, inputs_digest(base_digest, *sources))
    if archive.exists():
        _log(f"product: cached {archive.name}")
        return archive
    podman = cache.podman
    ensure_base_image(cache, base_digest)
    with _step(f"product: podman build {PRODUCT_IMAGE} FROM {BASE_IMAGE}"):
        podman.build(ROOT, ROOT / "Containerfile", PRODUCT_IMAGE, {"PYTHON_IMAGE": BASE_IMAGE})
    with _step(f"product: both entry points run as {PRODUCT_USER}"):
        for command in (["falco-operator", "--version"], ["falco-artifact-agent", "--help"]):
            output = podman.run_in(PRODUCT_IMAGE, command, PRODUCT_USER)
            _log(f"  {' '.join(command)}: {output.strip().splitlines()[0]}")
    with _step(f"product: export {archive.name}"), cache.scratch() as work:
        podman.save_layout(PRODUCT_IMAGE, work / "layout")
        pack_layout(work / "layout", PRODUCT_IMAGE, archive)
    podman.prune()
    cache.drop_other_archives(archive)
    return archive


def ensure_base_image(cache: Cache, digest: str) -> None:
    """The stand-in for python:3.11-slim in podman's storage: Debian's python3 with a virtualenv at /opt/venv
    whose bin is first on PATH, so the Containerfile's ``pip`` is the virtualenv's."""
    podman = cache.podman
    stamp = podman.storage / f"base-{digest}.imported"
    if stamp.exists() and podman.has_image(BASE_IMAGE):
        return
    base = ensure_debian_base(cache)
    with _step(f"base: {BASE_IMAGE} (+ {' '.join(BASE_PACKAGES)})"), cache.scratch() as work:
        tree = work / "rootfs"
        rootfs.copy_tree(base, tree)
        rootfs.install_packages(tree, BASE_PACKAGES, cache.debs)
        rootfs.chroot(tree, "python3", "-m", "venv", "/opt/venv")
        podman.import_tree(tree, BASE_IMAGE, BASE_CHANGES)
        rootfs.remove_tree(tree)
    for old in podman.storage.glob("base-*.imported"):
        old.unlink()
    stamp.touch()


def ensure_falco(cache: Cache) -> Path:
    for file in FALCO_FILES:
        if not file.source.is_file():
            raise FileNotFoundError(f"the Falco image needs {file.source}")
    layout = [file.target for file in FALCO_FILES]
    digest = inputs_digest(RECIPE, ARCHIVE_WRITER, *FALCO_PACKAGES, *layout, *(file.source for file in FALCO_FILES))
    archive = cache.archive("falco", FALCO_IMAGE, digest)
    if archive.exists():
        _log(f"falco: cached {archive.name}")
        return archive
    base = ensure_debian_base(cache)
    with _step(f"falco: {FALCO_IMAGE}"), cache.scratch() as work:
        tree = work / "rootfs"
        rootfs.copy_tree(base, tree)
        rootfs.install_packages(tree, FALCO_PACKAGES, cache.debs)
        for file in FALCO_FILES:
            target = tree / file.target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file.source, target)
            target.chmod(file.mode)
        version = rootfs.chroot(tree, "/usr/bin/falco", "--version", capture=True)
        _log(f"  falco --version: {' | '.join(version.strip().splitlines()[:2])}")
        _archive_tree(tree, FALCO_IMAGE, FALCO_CONFIG, archive, work)
        rootfs.remove_tree(tree)
    cache.drop_other_archives(archive)
    return archive


def ensure_debian_base(cache: Cache) -> Path:
    if not cache.base.is_dir():
        cache.base.parent.mkdir(parents=True, exist_ok=True)
        with _step(f"base: debootstrap --variant=minbase {rootfs.SUITE}"):
            rootfs.debootstrap(cache.base, cache.debs)
    return cache.base


def _archive_tree(tree: Path, name: str, config: ImageConfig, archive: Path, work: Path) -> None:
    layer = work / "layer.tar"
    write_layer(tree, layer)
    digest = write_image_archive(archive, name, layer, config, created_by=f"e2e/realnode/images.py recipe {RECIPE}")
    layer.unlink()
    _log(f"  {archive.name}: {archive.stat().st_size / 1e6:.1f} MB, manifest {digest}")


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """One build at a time per cache (two test sessions may ask at once)."""
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextmanager
def _step(name: str) -> Iterator[None]:
    _log(f"{name} ...")
    started = time.monotonic()
    yield
    _log(f"{name}: done in {time.monotonic() - started:.1f}s")


def _log(message: str) -> None:
    print(f"[realnode-images] {message}", file=sys.stderr, flush=True)


def main() -> int:
    started = time.monotonic()
    archives = ensure_images()
    for archive in archives:
        print(archive)
    _log(f"all images ready in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
