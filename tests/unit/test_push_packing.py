"""`falco-operator push` without a registry: the packing (falcoctl's layout), the docker config, the refusals that
happen before any upload."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest

from falco_operator.artifacts.oci.archive import single_file
from falco_operator.artifacts.oci.media import (
    OCI_INDEX,
    OCI_MANIFEST,
    PLUGIN,
    PLUGIN_CONFIG,
    PLUGIN_LAYER,
    RULES,
    RULES_CONFIG,
    RULES_LAYER,
)
from falco_operator.artifacts.oci.packing import (
    TITLE_ANNOTATION,
    Platform,
    digest_of,
    pack_plugin,
    pack_rules,
    rules_config,
    tar_gz,
)
from falco_operator.artifacts.yamldoc import load_yaml
from falco_operator.cli import main
from falco_operator.push import REFUSED, REGISTRY_FAILED, USAGE, UsageProblem, default_version, docker_credentials

RULES_TEXT = b"""\
- required_engine_version: 0.50.0
- required_plugin_versions:
  - name: k8saudit
    version: 0.7.0
    alternatives:
      - name: k8saudit-gke
        version: 0.1.0
      - name: k8saudit-eks
        version: 0.4.0
  - name: json
    version: 0.7.0
- list: shells
  items: [bash, sh]
"""


def test_the_config_carries_the_dependencies_and_the_engine_requirement_of_the_rules() -> None:
    config = rules_config(load_yaml(RULES_TEXT), "my-rules", "1.2.3")
    assert config == {
        "name": "my-rules",
        "version": "1.2.3",
        "dependencies": [
            {"name": "k8saudit", "version": "0.7.0", "alternatives": [
                {"name": "k8saudit-eks", "version": "0.4.0"}, {"name": "k8saudit-gke", "version": "0.1.0"}]},
            {"name": "json", "version": "0.7.0"},
        ],
        "requirements": [{"name": "engine_version_semver", "version": "0.50.0"}],
    }  # fmt: skip


def test_a_whole_engine_version_is_the_minor_of_zero_and_no_requirements_means_no_keys() -> None:
    assert rules_config(load_yaml(b"- required_engine_version: 15\n"), "r", None) == {
        "name": "r", "requirements": [{"name": "engine_version_semver", "version": "0.15.0"}]}  # fmt: skip
    assert rules_config(load_yaml(b"- list: a\n  items: []\n"), "r", "1.0.0") == {"name": "r", "version": "1.0.0"}


def test_a_rules_manifest_has_falcoctls_media_types_and_a_layer_holding_exactly_the_file() -> None:
    packed = pack_rules("my_rules.yaml", RULES_TEXT, load_yaml(RULES_TEXT), "my-rules", "1.2.3")
    manifest = json.loads(packed.body)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == RULES_CONFIG == "application/vnd.cncf.falco.rulesfile.config.v1+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == RULES_LAYER == "application/vnd.cncf.falco.rulesfile.layer.v1+tar.gz"
    assert layer["annotations"] == {TITLE_ANNOTATION: "my_rules.tar.gz"}
    blobs = {blob.digest: blob.data for blob in packed.blobs}
    assert layer["digest"] == digest_of(blobs[layer["digest"]])
    assert layer["size"] == len(blobs[layer["digest"]])
    assert json.loads(blobs[manifest["config"]["digest"]])["name"] == "my-rules"
    with tarfile.open(fileobj=io.BytesIO(blobs[layer["digest"]]), mode="r:gz") as archive:
        [member] = archive.getmembers()
        assert (member.name, member.isfile(), member.mode) == ("my_rules.yaml", True, 0o644)
    # The agent's own reader takes the file back out.
    assert single_file(blobs[layer["digest"]], RULES.file_suffixes, 1 << 20).data == RULES_TEXT
    assert packed.digest == digest_of(packed.body)


def test_packing_is_reproducible_and_the_content_decides_the_digest() -> None:
    assert tar_gz({"a.yaml": b"x"}) == tar_gz({"a.yaml": b"x"})
    first = pack_rules("a.yaml", b"- list: a\n  items: []\n", None, "a", "1.0.0")
    again = pack_rules("a.yaml", b"- list: a\n  items: []\n", None, "a", "1.0.0")
    other = pack_rules("a.yaml", b"- list: b\n  items: []\n", None, "a", "1.0.0")
    assert first.digest == again.digest != other.digest


def test_a_plugin_is_an_index_of_one_manifest_per_platform_with_the_plugin_media_types() -> None:
    libraries = [(Platform("linux", "arm64"), "libfoo.so", b"\x7fELF arm"),
                 (Platform("linux", "amd64"), "libfoo.so", b"\x7fELF amd")]  # fmt: skip
    index = pack_plugin(libraries, "foo", "0.3.0", "3.10.0")
    body = json.loads(index.body)
    assert body["mediaType"] == OCI_INDEX
    assert [entry["platform"] for entry in body["manifests"]] == [
        {"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}]  # fmt: skip
    for entry, (platform, manifest) in zip(body["manifests"], index.manifests, strict=True):
        assert entry["digest"] == manifest.digest
        assert entry["size"] == len(manifest.body)
        assert manifest.config.media_type == PLUGIN_CONFIG == "application/vnd.cncf.falco.plugin.config.v1+json"
        assert json.loads(manifest.config.data) == {"name": "foo", "version": "0.3.0", "requirements": [
            {"name": "plugin_api_version", "version": "3.10.0"}]}  # fmt: skip
        [layer] = manifest.layers
        assert layer.media_type == PLUGIN_LAYER == "application/vnd.cncf.falco.plugin.layer.v1+tar.gz"
        expected = b"\x7fELF amd" if platform.architecture == "amd64" else b"\x7fELF arm"
        assert single_file(layer.data, PLUGIN.file_suffixes, 1 << 20).data == expected


def test_platforms_and_versions_from_tags() -> None:
    assert Platform.parse("linux/amd64") == Platform("linux", "amd64")
    for wrong in ("amd64", "linux/", "linux/amd64/v8"):
        with pytest.raises(ValueError, match="OS/ARCHITECTURE"):
            Platform.parse(wrong)
    assert default_version("1.2.3") == "1.2.3"
    assert default_version("v4.0.0-rc1") == "4.0.0-rc1"
    assert default_version("latest") is None
    assert default_version("3") is None


def test_credentials_come_from_the_docker_config_auths_entry_of_the_host(tmp_path: Path) -> None:
    auth = base64.b64encode(b"robot:s3cr:et").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        "https://registry.example:5000/v1/": {"auth": auth},
        "other.example": {"username": "u", "password": "p"},
    }}))  # fmt: skip
    found = docker_credentials("registry.example:5000", tmp_path)
    assert found is not None
    assert (found.username, found.password) == ("robot", "s3cr:et")
    other = docker_credentials("other.example", tmp_path)
    assert other is not None
    assert (other.username, other.password) == ("u", "p")
    assert docker_credentials("nowhere.example", tmp_path) is None
    assert docker_credentials("registry.example:5000", tmp_path / "missing") is None
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"registry.example": {"auth": "not base64!"}}}))
    with pytest.raises(UsageProblem, match="not base64"):
        docker_credentials("registry.example", tmp_path)


def test_a_rules_file_falco_would_refuse_is_refused_before_any_registry_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad_rules.yaml"
    bad.write_text(
        "- rule: r\n  desc: d\n  condition: evt.type = open and not_a_macro\n  output: o\n  priority: INFO\n"
    )
    # Port 9 on loopback answers nothing: a push that got as far as the network would fail with exit code 3.
    assert main(["push", "127.0.0.1:9/rules/bad:1.0.0", str(bad), "--plain-http",
                 "--docker-config", str(tmp_path)]) == REFUSED  # fmt: skip
    captured = capsys.readouterr()
    assert "not_a_macro" in captured.err
    assert "nothing was uploaded" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["127.0.0.1:9/r@sha256:" + "0" * 64, "x.yaml"], "names a digest"),
        (["127.0.0.1:9/r:1"], "exactly one rules file"),
        (["127.0.0.1:9/r:1", "missing.yaml"], "cannot read"),
        (["127.0.0.1:9/r:1", "--type", "plugin"], "needs a library"),
        (["127.0.0.1:9/r:1", "--type", "plugin", "--platform", "linux-amd64=x.so"], "OS/ARCH"),
    ],
)
def test_wrong_arguments_exit_2_before_any_upload(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["push", *arguments, "--plain-http", "--docker-config", str(tmp_path)]) == USAGE
    assert message in capsys.readouterr().err


def test_help_says_what_push_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["push", "--help"])
    text = capsys.readouterr().out
    for needed in ("application/vnd.cncf.falco.rulesfile.layer.v1+tar.gz", "engine_version_semver",
                   "required_plugin_versions", "--platform", "config.json", "Credential helpers", "--plain-http",
                   "REF@sha256:", "Exit codes", "plugin_api_version", "--name", "--version"):  # fmt: skip
        assert needed in text, needed


def test_a_registry_that_cannot_be_reached_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "ok.yaml"
    rules.write_text("- list: ok\n  items: [a]\n")
    # Nothing listens on loopback port 9 (discard): the connection is refused at once.
    assert main(["push", "127.0.0.1:9/rules/ok:1.0.0", str(rules), "--plain-http",
                 "--docker-config", str(tmp_path)]) == REGISTRY_FAILED  # fmt: skip
    assert "cannot reach the registry 127.0.0.1:9" in capsys.readouterr().err


def test_plugin_and_engine_options_judge_the_rules_as_that_falco_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # fmt: skip
    rules = tmp_path / "new_rules.yaml"
    rules.write_text("- required_engine_version: 0.99.0\n- list: l\n  items: [a]\n")
    arguments = ["push", "127.0.0.1:9/rules/new:1.0.0", str(rules), "--plain-http", "--docker-config", str(tmp_path)]
    assert main([*arguments, "--engine-version", "0.62.0"]) == REFUSED
    assert "0.99.0" in capsys.readouterr().err
    assert main(arguments) == REGISTRY_FAILED, "without an engine version it passes the lint and meets no registry"
