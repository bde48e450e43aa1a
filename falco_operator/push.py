"""``falco-operator push``: lint a rules file, pack it (or plugin libraries) as falcoctl does, upload it with oras,
print the digest to pin."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .api.ocirefs import DEFAULT_TAG, parse_reference
from .artifacts.oci.credentials import Credentials, normalize_host
from .artifacts.oci.media import machine_architecture
from .artifacts.yamldoc import YamlProblem, load_yaml
from .lint import add_load_context_options, lint_rules, load_context

if TYPE_CHECKING:  # packing and the registry client (httpx) are imported when a push runs, not with the command line
    from .artifacts.oci.packing import PackedIndex, PackedManifest, Platform

PUSHED = 0
REFUSED = 1
"""The rules file fails the lint (Falco would refuse it): nothing was uploaded."""
USAGE = 2
"""Wrong arguments, an unreadable file or docker config: nothing was uploaded."""
REGISTRY_FAILED = 3
"""The registry could not be reached or refused an upload (some blobs may be there; the tag was not moved unless
the last request succeeded)."""

_VERSION_TAG = re.compile(r"^v?([0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.+-]*)?)$")

DESCRIPTION = """\
Publish Falco rules or plugins to an OCI registry as falcoctl does, for pipelines.

rulesfile (the default): FILE is one rules file. It is linted first with the checks of `falco-operator lint`
(what Falco would refuse; with --plugin and --engine-version, as the Falco that loads exactly those plugins and
has that engine); a file with an error is refused and nothing is uploaded. It is packed as one OCI
image manifest: a tar.gz layer holding the file (application/vnd.cncf.falco.rulesfile.layer.v1+tar.gz) and a config
(application/vnd.cncf.falco.rulesfile.config.v1+json) with name, version, dependencies (the file's
required_plugin_versions, with alternatives) and requirements (engine_version_semver from its
required_engine_version).

plugin (--type plugin): one library per platform, --platform OS/ARCH=PATH (repeatable), or FILE alone for this
machine's linux platform. Packed as an image index of one manifest per platform, with the plugin media types
(application/vnd.cncf.falco.plugin.layer.v1+tar.gz, config application/vnd.cncf.falco.plugin.config.v1+json with
name, version and, with --plugin-api-version, the plugin_api_version requirement).

REF is HOST[:PORT]/REPOSITORY[:TAG] (TAG defaults to latest; a name without a host is on ghcr.io).
--name defaults to the last component of the repository; --version to the tag when it is a version (1.2.3 or
v1.2.3), otherwise none. Archives are reproducible: the same file gives the same digest.

Credentials come from the docker config file: $DOCKER_CONFIG/config.json, else ~/.docker/config.json, its
"auths" entry for the registry host ("auth": base64 of user:password, or "username" and "password").
Credential helpers (credsStore, credHelpers) are not used. Without an entry the push is anonymous.

On success it prints REF@sha256:<digest> on stdout: pin that in a Rulesfile or Plugin ociArtifact.reference.
Exit codes: 0 pushed; 1 the rules file fails the lint (nothing uploaded); 2 wrong arguments, unreadable file or
docker config (nothing uploaded); 3 the registry could not be reached or refused an upload.
"""


class UsageProblem(Exception):
    pass


def add_push_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    push = commands.add_parser(
        "push", help="lint, pack and upload rules or plugins as Falco OCI artifacts", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    push.add_argument("reference", metavar="REF", help="HOST[:PORT]/REPOSITORY[:TAG] to push to")
    push.add_argument("files", metavar="FILE", nargs="*", type=Path,
                      help="the rules file; for a plugin, a library for this machine's platform")  # fmt: skip
    push.add_argument("--type", choices=("rulesfile", "plugin"), default="rulesfile", dest="artifact_type",
                      help="what FILE is (default: rulesfile)")  # fmt: skip
    push.add_argument("--platform", action="append", default=[], metavar="OS/ARCH=PATH", dest="platforms",
                      help="a plugin library for a platform, e.g. linux/amd64=libfoo.so (repeatable)")  # fmt: skip
    push.add_argument("--name", help="the artifact's name in its config (default: the repository's last component)")
    push.add_argument("--version", dest="artifact_version", metavar="VERSION",
                      help="the artifact's version in its config (default: the tag when it is a version)")  # fmt: skip
    push.add_argument("--plugin-api-version", metavar="X.Y.Z",
                      help="a plugin's plugin_api_version requirement in its config")  # fmt: skip
    add_load_context_options(push)
    push.add_argument("--plain-http", action="store_true", help="talk HTTP, not HTTPS (a local test registry)")
    push.add_argument(
        "--ca-file", type=Path, metavar="PEM", help="CA bundle for a registry whose certificate a private CA signed"
    )
    push.add_argument("--docker-config", type=Path, metavar="DIR",
                      help="directory of the docker config.json (default: $DOCKER_CONFIG, else ~/.docker)")  # fmt: skip


def run_push(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .artifacts.oci.packing import PackedIndex, pack_plugin
    from .artifacts.oci.publishing import Destination, Publisher, PublishFailed

    try:
        host, repository, tag, digest = parse_reference(args.reference)
    except ValueError as error:
        print(f"error: {error}: write HOST[:PORT]/REPOSITORY[:TAG]", file=err)
        return USAGE
    if digest:
        print("error: REF names a digest; push to a tag (the digest is what push prints)", file=err)
        return USAGE
    tag = tag or DEFAULT_TAG
    name = args.name or repository.rsplit("/", 1)[-1]
    version = args.artifact_version or default_version(tag)
    try:
        credentials = docker_credentials(host, docker_config_dir(args.docker_config))
        if args.artifact_type == "rulesfile":
            packed: PackedManifest | PackedIndex | None = _pack_rules(args, name, version, err)
        else:
            packed = pack_plugin(_libraries(args.files, args.platforms), name, version, args.plugin_api_version)
    except UsageProblem as error:
        print(f"error: {error}", file=err)
        return USAGE
    if packed is None:
        print("error: the rules file fails the lint (Falco would refuse it): nothing was uploaded", file=err)
        return REFUSED
    destination = Destination(host, repository, plain_http=args.plain_http,
                              ca_file=str(args.ca_file) if args.ca_file else None, credentials=credentials)  # fmt: skip
    try:
        publisher = Publisher(destination)
        if isinstance(packed, PackedIndex):
            pushed = publisher.push_index(packed, tag)
        else:
            pushed = publisher.push_manifest(packed, tag)
    except PublishFailed as error:
        print(f"error: {error}", file=err)
        return REGISTRY_FAILED
    print(f"{host}/{repository}:{tag}@{pushed}", file=out)
    return PUSHED


def default_version(tag: str) -> str | None:
    match = _VERSION_TAG.match(tag)
    return match.group(1) if match else None


def _pack_rules(args: argparse.Namespace, name: str, version: str | None, err: TextIO) -> PackedManifest | None:
    from .artifacts.oci.packing import pack_rules

    """The packed rules file; None when the lint refuses it (its findings printed to ``err``)."""
    files: list[Path] = args.files
    if len(files) != 1:
        raise UsageProblem(f"a rulesfile artifact holds exactly one rules file; {len(files)} given")
    path = files[0]
    data = _read(path)
    if not path.name.endswith((".yaml", ".yml")):
        raise UsageProblem(f"{path}: a rules file's name ends with .yaml or .yml (the agent takes only those)")
    if not lint_rules([(str(path), data)], load_context(args), err):
        return None
    try:
        document = load_yaml(data)
    except YamlProblem as error:  # the lint reported it already
        raise UsageProblem(f"{path}: {error}") from None
    return pack_rules(path.name, data, document, name, version)


def _libraries(files: list[Path], platforms: list[str]) -> list[tuple[Platform, str, bytes]]:
    from .artifacts.oci.packing import Platform

    pairs: list[tuple[Platform, Path]] = []
    for value in platforms:
        platform_text, equals, file = value.partition("=")
        if not equals or not file:
            raise UsageProblem(f"--platform {value!r}: write OS/ARCH=PATH, e.g. linux/amd64=libcontainer.so")
        try:
            pairs.append((Platform.parse(platform_text), Path(file)))
        except ValueError as error:
            raise UsageProblem(str(error)) from None
    if len(files) > 1:
        raise UsageProblem("a plugin takes one FILE (for this machine's platform); use --platform for others")
    pairs.extend((Platform("linux", machine_architecture()), path) for path in files)
    if not pairs:
        raise UsageProblem("a plugin needs a library: FILE or --platform OS/ARCH=PATH")
    seen = [str(platform) for platform, _ in pairs]
    if len(set(seen)) != len(seen):
        raise UsageProblem(f"a platform is given twice: {', '.join(sorted(seen))}")
    for _, path in pairs:
        if not path.name.endswith(".so"):
            raise UsageProblem(f"{path}: a plugin library's name ends with .so (the agent takes only those)")
    return [(platform, path.name, _read(path)) for platform, path in pairs]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageProblem(f"cannot read {path}: {error.strerror or error}") from None


def docker_config_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    configured = os.environ.get("DOCKER_CONFIG")
    return Path(configured) if configured else Path.home() / ".docker"


def docker_credentials(host: str, directory: Path) -> Credentials | None:
    """The ``auths`` entry for ``host`` in ``directory``/config.json; None when there is no file or no entry."""
    path = directory / "config.json"
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise UsageProblem(f"cannot read the docker config {path}: {error}") from None
    auths = document.get("auths") if isinstance(document, dict) else None
    wanted = normalize_host(host)
    for key, entry in (auths or {}).items() if isinstance(auths, dict) else ():
        if normalize_host(str(key)) != wanted or not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]))
        try:
            user, colon, password = base64.b64decode(str(entry.get("auth", "")), validate=True).decode().partition(":")
        except (binascii.Error, ValueError):
            raise UsageProblem(f"{path}: the auth of {key} is not base64 of user:password") from None
        if not colon:
            raise UsageProblem(f"{path}: the entry for {key} has neither auth (user:password) nor username/password")
        return Credentials(user, password)
    return None
