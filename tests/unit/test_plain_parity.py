"""The agent's plain classes (``api.plain``, ``api.plain_report``) read and write what the pydantic models do.

For every example Rulesfile, Plugin and Config of the repository (samples, the seed examples, the docs' YAML, what
``migrate-helm`` makes of the test values, rollout snapshots of them) and for a few hundred seeded random objects
over the schema (valid ones, and ones with a field of the wrong type, out of range, against its pattern, missing or
null), ``parse_artifact`` refuses exactly what the model refuses, and reads the rest to the same JSON and the same
answers (locations, credentials, refresh intervals, key sources, audiences). The agent's report status validates
with the model's ``ArtifactReportStatus`` and comes back unchanged.
"""

# ruff: noqa: E731  (the random object builders are tables of small lambdas)
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from artifact_agent.analysis import reported_analyses
from artifact_agent.report import report_status
from falco_operator.api import ArtifactReportStatus, Config, LabelSelector, Plugin, Rulesfile
from falco_operator.api import plain as plain_api
from falco_operator.api.rollout import ReportedAnalysis
from falco_operator.artifacts import ArtifactKey, Delivered, Outcome, Unavailable, parse_artifact
from falco_operator.artifacts.audience import Audience
from falco_operator.artifacts.image_defaults import ImageDefaultsInUse
from falco_operator.artifacts.model import State
from falco_operator.migrate import migrate
from falco_operator.migrate.values import read_values
from falco_operator.rollout.snapshot import Snapshot, build

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
MODELS: dict[str, type[BaseModel]] = {"Rulesfile": Rulesfile, "Plugin": Plugin, "Config": Config}
ARTIFACT_KINDS = tuple(MODELS)
SEEDS = [
    ROOT / "manifests" / "samples",
    ROOT.parent / "shared" / "examples" / "seed",
    Path("/work/shared/examples/seed"),
]
RANDOM_OBJECTS = 1000
STATES: tuple[State, ...] = ("Installed", "Loaded", "Refused", "Invalid", "Failed", "Pending")
LABEL_SETS = [{}, {"kubernetes.io/hostname": "node1"}, {"team": "a", "tier": "web"}, {"team": "b"}]


def model_reading(raw: Json) -> BaseModel | None:
    model = MODELS.get(str(raw.get("kind")))
    if model is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def assert_same_reading(raw: Json) -> bool:
    """The plain reading of ``raw`` is the model's; True when both read it."""
    model, plain = model_reading(raw), parse_artifact(raw)
    assert (model is None) == (plain is None), (raw, model)
    if model is None or plain is None:
        return False
    assert plain.to_wire() == model.to_wire()  # type: ignore[attr-defined]
    assert_same_answers(model, plain)
    return True


def assert_same_answers(model: Any, plain: Any) -> None:
    """What the agent asks of an artifact, besides its fields: the same answers."""
    spec, plain_spec = model.spec, plain.spec
    oci_sources = [(getattr(spec, "oci_artifact", None), getattr(plain_spec, "oci_artifact", None))]
    if model.kind == "Rulesfile":
        assert plain_spec.inline() == spec.inline()
        assert (plain_spec.oci() is None) == (spec.oci() is None)
    if model.kind == "Plugin":
        assert plain.plugin_name == model.plugin_name
    for oci, plain_oci in oci_sources:
        assert (oci is None) == (plain_oci is None)
        if oci is None or plain_oci is None:
            continue
        assert answer(plain_oci.location) == answer(oci.location)
        assert plain_oci.credentials() == oci.credentials()
        assert answer(plain_oci.refresh_seconds) == answer(oci.refresh_seconds)
        if oci.verify is not None:
            assert answer(plain_oci.verify.key_source) == answer(oci.verify.key_source)
    audience, plain_audience = Audience.of(model), Audience.of(plain)
    for falco_labels in LABEL_SETS:
        for node_labels in LABEL_SETS:
            assert plain_audience.includes("f", falco_labels, node_labels) == audience.includes(
                "f", falco_labels, node_labels
            )


def answer(method: Any) -> Any:
    """What ``method()`` returns, or the type of error it raises (the CRD's CEL rules, which neither reading
    applies, refuse some of these objects; both readings then fail alike)."""
    try:
        return method()
    except (AssertionError, ValueError) as error:
        return type(error)


# --- the repository's examples ------------------------------------------------------------------------------------


def yaml_documents(text: str) -> list[Json]:
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return []
    return [document for document in documents if isinstance(document, dict)]


def example_objects() -> list[tuple[str, Json]]:
    found: list[tuple[str, Json]] = []
    for directory in [*SEEDS, ROOT / "manifests"]:
        for file in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
            found += [(file.name, document) for document in yaml_documents(file.read_text())]
    for page in sorted((ROOT / "docs").glob("*.md")):
        for block in re.findall(r"```ya?ml\n(.*?)```", page.read_text(), flags=re.S):
            found += [(page.name, document) for document in yaml_documents(block)]
    for values in sorted((ROOT / "tests" / "data" / "helm").glob("*.yaml")):
        try:
            manifests = migrate(read_values(values.read_bytes())).manifests
        except ValueError:
            continue
        found += [(f"migrate-helm {values.name}", manifest) for manifest in manifests]
    return [(where, raw) for where, raw in found if raw.get("kind") in ARTIFACT_KINDS]


def snapshot_of(raw: Json) -> Json | None:
    """The stable generation as a rollout snapshot keeps it (and the agent reads it back)."""
    built = build(raw, 3, "snap", digest="sha256:" + "c" * 64, config_map_content=b"- list: l\n  items: []\n")
    if not isinstance(built, Snapshot):
        return None
    document: Json = json.loads(built.body["data"][plain_api.SNAPSHOT_KEY])
    return document


def test_the_repositorys_example_artifacts_read_the_same() -> None:
    examples = example_objects()
    kinds = {raw["kind"] for _, raw in examples}
    assert kinds == set(ARTIFACT_KINDS), kinds  # samples, docs and migrate-helm have each kind
    assert len(examples) >= 15
    read = 0
    for _, raw in examples:
        if not assert_same_reading(raw):
            continue
        read += 1
        snapshot = snapshot_of(raw)
        if snapshot is not None:
            assert_same_reading(snapshot)
    assert read >= len(examples) - 2  # the examples are valid (08's invalid name is the API server's to refuse)


# --- seeded random objects over the schema -------------------------------------------------------------------------

# Values of the wrong type or shape, which both readings refuse wherever a field does not take them. Numbers and
# booleans written as strings are left out: the models convert them, the plain reading refuses them as the CRD
# schema does (test_numbers_written_as_strings_are_refused).
REQUIRED_KEPT = 0.95
ODD: list[Any] = [None, [], {}, "x", "", -1, 0, 1, 7, True, False, 2.5, 3.0, ["a"], {"a": "b"}, "y" * 2000]


@dataclass(frozen=True)
class B:
    """A value against the schema (the field's pattern, bound or enumeration), picked now and then."""

    value: Any


class Objects:
    """Random artifact objects: mostly valid values, some at or past a bound, each field now and then odd."""

    def __init__(self, seed: int, odd: float = 0.01, bad: float = 0.05) -> None:
        self.random = random.Random(seed)
        self.odd, self.bad = odd, bad

    def pick(self, *choices: Any) -> Any:
        """One of ``choices``: one marked ``B`` (against the schema) with the chance ``self.bad``, an ``ODD`` value
        with the chance ``self.odd``."""
        good = [choice for choice in choices if not isinstance(choice, B)]
        bad = [choice.value for choice in choices if isinstance(choice, B)]
        roll = self.random.random()
        if roll < self.odd:
            return self.random.choice(ODD)
        if bad and roll < self.odd + self.bad:
            return self.random.choice(bad)
        return self.random.choice(good)

    def some(self, fields: dict[str, Any], keep: float = 0.5) -> Json:
        """A random subset of ``fields`` (values are thunks; a key marked ``!`` is required: nearly always there),
        now and then an unknown field too."""
        result = {
            key.lstrip("!"): make()
            for key, make in fields.items()
            if self.random.random() < (REQUIRED_KEPT if key.startswith("!") else keep)
        }
        if self.random.random() < 0.1:
            result["futureField"] = {"x": 1}
        return result

    def obj(self, fields: dict[str, Any], keep: float = 0.5) -> Any:
        return self.random.choice(ODD) if self.random.random() < self.odd else self.some(fields, keep)

    def items(self, make: Any, most: int) -> Any:
        return self.pick([make() for _ in range(self.random.randint(0, most))])

    def name(self) -> Any:
        return self.pick("a", "rules", "my-plugin", "x" * 253, B("x" * 254), B(""))

    def labels(self) -> Any:
        return self.pick({}, {"kubernetes.io/hostname": "node1"}, {"team": "a", "tier": "web"}, B({"team": 1}))

    def selector(self) -> Any:
        requirement = lambda: self.obj(
            {
                "!key": lambda: self.pick("team", "tier", "kubernetes.io/hostname"),
                "!operator": lambda: self.pick("In", "NotIn", "Exists", "DoesNotExist", B("in")),
                "values": lambda: self.pick(["a"], ["a", "web"], [], None, B([1])),
            },
            0.8,
        )
        return self.obj({"matchLabels": self.labels, "matchExpressions": lambda: self.items(requirement, 3)})

    def duration(self) -> Any:
        return self.pick("1m", "90s", "1h30m", "1.5h", "5µs", "30s", B("soon"), B("1m\n"), B("10"), B("9" * 70 + "s"))

    def rollout(self) -> Any:
        def step() -> Any:
            return self.obj({"nodes": lambda: self.pick(B(0), 1, 5, 100000, B(100001)),
                             "percent": lambda: self.pick(B(0), 1, 50, 100, B(101), 50.0)})  # fmt: skip

        rate = lambda: self.pick(0, 0.5, 10, 1e9, B(2e9), B(-1))
        analysis = lambda: self.obj(
            {
                "duration": self.duration,
                "maxRuleRate": rate,
                "maxTotalRate": rate,
                "maxDropRate": rate,
                "maxCpu": lambda: self.pick(0.5, 2, 1000, B(1001)),
            }
        )
        return self.obj(
            {
                "!steps": lambda: self.pick([step() for _ in range(self.random.choice([0, 1, 1, 1, 2, 2, 3, 10, 11]))]),
                "analysis": analysis,
            },
            0.8,
        )

    def oci(self, rules: bool) -> Any:
        ref = lambda: self.obj(
            {"!name": self.name, "key": lambda: self.pick("cosign.pub", "a_b-c.d", B("bad/key"), B(""))}
        )
        keyless = lambda: self.obj(
            {
                "identity": lambda: self.pick("me@example.com", B(""), B("i" * 1025)),
                "identityRegexp": lambda: self.pick(".*@example.com", B("r" * 513)),
                "!issuer": lambda: self.pick("https://i", B("")),
                "!trustedRoot": lambda: self.obj({"!configMapRef": ref}),
            },
            0.7,
        )
        verify = lambda: self.obj(
            {"key": lambda: self.obj({"configMapRef": ref, "secretRef": ref}), "keyless": keyless}
        )
        registry = lambda: self.obj(
            {
                "name": lambda: self.pick("ghcr.io", "registry.local:5000", B("https://x"), B("a/b")),
                "auth": lambda: self.obj({"!secretRef": lambda: self.obj({"!name": self.name})}),
                "plainHTTP": lambda: self.pick(True, False, 0, 1, B(2)),
                "tls": lambda: self.obj({"insecureSkipVerify": lambda: self.pick(True, False, 1.0)}),
            }
        )
        fields = {
            "image": lambda: self.obj(
                {
                    "!repository": lambda: self.pick("falcosecurity/rules/falco-rules", "a", B("Bad"), B("a//b")),
                    "tag": lambda: self.pick("latest", "3", "sha256:" + "b" * 64, B(".bad"), B("t" * 140)),
                },
                0.7,
            ),
            "registry": registry,
            "reference": lambda: self.pick(
                "ghcr.io/falcosecurity/rules/falco-rules:3",
                "falco-rules",
                "registry.local:5000/team/rules@sha256:" + "a" * 64,
                "localhost/x:tag",
                B("https://ghcr.io/x"),
                B("UPPER/x"),
            ),
            "pullSecret": lambda: self.obj(
                {
                    "!secretName": self.name,
                    "usernameKey": lambda: self.pick("user", B("")),
                    "passwordKey": lambda: self.pick("pass", B(None)),
                },
                0.6,
            ),
            "refreshInterval": self.duration,
            "verify": verify,
        }
        if rules:
            fields["inline"] = lambda: self.pick("- list: l\n  items: []\n", "")
        return self.obj(fields, 0.4)

    def status(self) -> Any:
        condition = lambda: self.obj(
            {
                "!type": lambda: self.pick("Programmed", B("t" * 317)),
                "!status": lambda: self.pick("True", "False", B("Maybe")),
                "observedGeneration": lambda: self.pick(1, 0, B(-1)),
                "!lastTransitionTime": lambda: "2026-01-01T00:00:00Z",
                "!reason": lambda: self.pick("Installed", B("")),
                "!message": lambda: self.pick("ok", ""),
            },
            0.9,
        )
        rollout = lambda: self.obj(
            {
                "!phase": lambda: self.pick("Progressing", "Paused", "Halted", "Aborted", "Succeeded", B("Unknown")),
                "stableGeneration": lambda: self.pick(1, 2),
                "candidateGeneration": lambda: self.pick(2, 3),
                "step": lambda: 1,
                "steps": lambda: 2,
                "nodes": lambda: self.pick(["node1"], [], B([1])),
                "stepStartedAt": lambda: "2026-01-01T00:00:00Z",
                "snapshot": lambda: self.pick("r-rulesfile-stable"),
                "message": lambda: "waiting",
            },
            0.6,
        )
        nodes = lambda: self.obj(
            {"targeted": lambda: self.pick(1, 0), "installed": lambda: 1, "summary": lambda: "1/1"}
        )
        return self.obj(
            {
                "observedGeneration": lambda: self.pick(1, 2),
                "resolvedDigest": lambda: "sha256:" + "d" * 64,
                "signer": lambda: "sha256:ab",
                "nodes": nodes,
                "conditions": lambda: self.items(condition, 2),
                "rollout": rollout,
            },
            0.3,
        )

    def metadata(self) -> Any:
        return self.obj(
            {
                "name": self.name,
                "namespace": lambda: self.pick("falco", None),
                "labels": self.labels,
                "annotations": self.labels,
                "generation": lambda: self.pick(1, 7, 2.0, True, None),
                "uid": lambda: self.pick("u-1"),
                "resourceVersion": lambda: self.pick("42", B(42)),
                "creationTimestamp": lambda: "2026-01-01T00:00:00Z",
            },
            0.7,
        )

    def artifact(self) -> Json:
        kind = self.random.choice(ARTIFACT_KINDS)
        priority = lambda: self.pick(0, 50, 99, B(100), B(-1), 50.0, B(7.5), True)
        targeting = {"selector": self.selector, "instanceSelector": self.selector, "rollout": self.rollout}
        config_map = lambda: self.obj({"!name": self.name, "key": lambda: self.pick("rules.yaml", "k", B(""))}, 0.8)
        free = lambda: self.pick("- rule: r\n", [{"list": "l", "items": []}], {"json_output": True}, "a: [")
        spec: Any
        if kind == "Rulesfile":
            spec = self.obj(
                {
                    "ociArtifact": lambda: self.oci(True),
                    "inlineRules": free,
                    "configMapRef": config_map,
                    "priority": priority,
                    **targeting,
                },
                0.35,
            )
        elif kind == "Config":
            spec = self.obj({"config": free, "configMapRef": config_map, "priority": priority, **targeting}, 0.4)
        else:
            plugin_config = lambda: self.obj(
                {
                    "name": lambda: self.pick("json", B(""), B("n" * 254)),
                    "libraryPath": lambda: self.pick("libjson.so", B("")),
                    "initConfig": free,
                    "openParams": lambda: self.pick("", "p"),
                }
            )
            spec = self.obj({"ociArtifact": lambda: self.oci(False), "config": plugin_config, **targeting}, 0.4)
        raw = self.some(
            {
                "apiVersion": lambda: self.pick("artifact.falcosecurity.dev/v1alpha1", B("artifact/v1")),
                "metadata": self.metadata,
                "!spec": lambda: spec,
                "status": self.status,
            },
            0.85,
        )
        raw["kind"] = kind
        return raw


def test_random_objects_over_the_schema_read_the_same() -> None:
    objects = Objects(seed=29)
    read = [assert_same_reading(objects.artifact()) for _ in range(RANDOM_OBJECTS)]
    # Both outcomes are well represented, for every kind.
    assert RANDOM_OBJECTS * 0.25 < sum(read) < RANDOM_OBJECTS * 0.85, sum(read)


def test_random_selectors_and_verdicts_read_the_same() -> None:
    objects = Objects(seed=30, odd=0.08)
    for _ in range(200):
        selector = objects.selector()
        try:
            model: LabelSelector | None = LabelSelector.model_validate(selector)
        except ValidationError:
            model = None
        audience = Audience.of_object({"spec": {"selector": selector}})
        assert (audience is None) == (model is None), selector
        if audience is not None and model is not None:
            for labels in LABEL_SETS:
                assert audience.includes("f", {}, labels) == model.matches(labels)
        verdict = objects.obj({"!generation": lambda: objects.pick(1, 4, 2.0),
                               "!result": lambda: objects.pick("Passed", "Failed", B("Maybe")),
                               "check": lambda: objects.pick("RuleRate", None), "message": lambda: objects.pick("m"),
                               "seconds": lambda: objects.pick(12, 0.5, None)}, 0.8)  # fmt: skip
        status = {"artifacts": [{"kind": "Rulesfile", "name": "r", "analysis": verdict}]}
        try:
            expected = {ArtifactKey("Rulesfile", "r"): ReportedAnalysis.model_validate(verdict).to_wire()}
        except ValidationError:
            expected = {}
        assert {key: value.to_wire() for key, value in reported_analyses(status).items()} == expected


def test_numbers_written_as_strings_are_refused() -> None:
    """The one difference: the models convert ``"50"`` to 50 (pydantic's lax mode); the CRD schema refuses it, so
    the API server never serves it, and the plain reading refuses it as well."""
    raw = {"kind": "Config", "metadata": {"name": "c"}, "spec": {"config": "a: 1\n", "priority": "50"}}
    assert model_reading(raw) is not None
    assert parse_artifact(raw) is None
    assert parse_artifact({**raw, "spec": {"config": "a: 1\n", "priority": 50}}) is not None


# --- what the agent writes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_the_report_status_validates_with_the_model_and_round_trips(seed: int) -> None:
    from falco_operator.api.plain_report import FalcoProbe
    from falco_operator.api.plain_report import ReportedAnalysis as PlainAnalysis

    chance = random.Random(seed)
    directories = {"rules": Path("/etc/falco/rules.d"), "config": Path("/etc/falco/config.d"),
                   "plugins": Path("/var/lib/falco-artifacts/plugins")}  # fmt: skip
    outcomes, problems, signers, analyses = [], {}, {}, {}
    for index in range(chance.randint(0, 6)):
        kind = chance.choice(ARTIFACT_KINDS)
        key = ArtifactKey(kind, f"a{index}")
        directory = {"Rulesfile": "rules", "Config": "config", "Plugin": "plugins"}[kind]
        files = {(directory, f"50-01-a{index}-configmap.yaml"): b"x: 1\n"} if chance.random() < 0.7 else {}
        digest = "sha256:" + "e" * 64 if chance.random() < 0.5 else None
        delivered = Delivered(files, {"name": f"p{index}"} if kind == "Plugin" else None, digest)
        state = chance.choice(STATES)
        message = chance.choice([None, "ok", "m" * 3000])
        outcomes.append(Outcome(key, chance.choice([None, 1, 5]), state, delivered, chance.choice([None, "Why"]),
                                message))  # fmt: skip
        if chance.random() < 0.3:
            problems[key] = Unavailable("Pending", "Unreachable", "registry down" * chance.randint(1, 200))
        if chance.random() < 0.3:
            signers[key] = (digest or "sha256:other", "sha256:f1,sha256:f2")
        if chance.random() < 0.4:
            analyses[key] = PlainAnalysis(generation=chance.choice([1, 5]), result=chance.choice(["Passed", "Failed"]),
                                          check=chance.choice([None, "CPU"]), message=chance.choice([None, "m" * 2000]),
                                          seconds=chance.choice([None, 12.5]))  # fmt: skip
    falco = chance.choice([None, FalcoProbe(reachable=True, version="0.44.1"), FalcoProbe(reachable=False)])
    key = ArtifactKey("Rulesfile", "a0")
    image = chance.choice([None, ImageDefaultsInUse("ab" * 32), ImageDefaultsInUse(None, key, key)])
    status = report_status(outcomes, directories, falco, problems, image, signers, analyses)
    assert json.loads(json.dumps(status)) == status  # the JSON it is
    assert ArtifactReportStatus.model_validate(status).to_wire() == status
