"""``dump_yaml`` gives ruamel's safe writer's bytes whichever writer it uses: PyYAML's for values both write alike,
ruamel's for the rest, so agents of two versions write the same file for the same value."""

from __future__ import annotations

import io
import random
from typing import Any

from ruamel.yaml import YAML

from falco_operator.artifacts import yamldoc
from falco_operator.artifacts.yamldoc import dump_yaml, load_yaml, plain

TEXT_PIECES = ["a", "rule", " ", "  ", ":", ": ", "#", " #", "-", "- ", "'", '"', "\\", "\t", "é", "日本", "\u2028",
               "yes", "no", "on", "true", "null", "~", "0", "1.5", "0x1F", "1e3", "2001-12-14", "0.4.0", "/usr/bin",
               "%proc.name", "{", "}", "[", "]", ",", "&", "*", "!", "|", ">", "?", "@", "`", "<<", "=", ".", "\n",
               "x" * 300]  # fmt: skip


def reference(value: Any) -> bytes:
    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = False
    writer.width = 4096
    buffer = io.StringIO()
    writer.dump(yamldoc._sorted(plain(value)), buffer)
    return buffer.getvalue().encode()


def random_text(chooser: random.Random) -> str:
    return "".join(chooser.choice(TEXT_PIECES) for _ in range(chooser.randrange(0, 5)))


def random_scalar(chooser: random.Random) -> Any:
    pick = chooser.randrange(7)
    if pick == 0:
        return chooser.choice([True, False, None])
    if pick == 1:
        return chooser.randrange(-(10**20), 10**20) if chooser.random() < 0.2 else chooser.randrange(-100, 5000)
    if pick == 2:
        return chooser.choice([0.5, 1.0, -2.25, 1e-7, 3e20, 0.1 + 0.2, float("inf"), 12345.678])
    return random_text(chooser)


def random_value(chooser: random.Random, depth: int = 0) -> Any:
    pick = chooser.randrange(4) if depth < 4 else 3
    if pick == 0:
        return {random_text(chooser) or "k": random_value(chooser, depth + 1) for _ in range(chooser.randrange(0, 5))}
    if pick == 1:
        return [random_value(chooser, depth + 1) for _ in range(chooser.randrange(0, 4))]
    return random_scalar(chooser)


def test_random_values_are_written_as_ruamels_safe_writer_writes_them() -> None:
    chooser = random.Random(31)
    alike = 0
    for _ in range(3000):
        value = {"top": random_value(chooser)} if chooser.random() < 0.7 else [random_value(chooser)]
        if yamldoc._written_alike(yamldoc._sorted(plain(value))):
            alike += 1
        assert dump_yaml(value) == reference(value), value
    assert alike > 700, alike  # many go through PyYAML's writer


def test_a_config_and_plugin_entries_are_written_by_pyyaml_with_ruamels_bytes() -> None:
    plugin = {"name": "k8saudit", "library_path": "libk8saudit.so", "open_params": "http://:9765/k8s-audit",
              "init_config": {"maxEventSize": 262144, "sslCertificate": "/etc/falco/falco.pem"}}  # fmt: skip
    program = "jq '{text: .output}' | curl -d @- -X POST https://x"
    config = {"plugins": [plugin], "load_plugins": ["k8saudit", "json"], "output_timeout": 2000, "rate": 0.03333,
              "json_output": True, "program_output": {"enabled": False, "program": program}}  # fmt: skip
    assert yamldoc._written_alike(yamldoc._sorted(plain(config)))
    written = dump_yaml(config)
    assert written == reference(config)
    assert plain(load_yaml(written)) == yamldoc._sorted(config)
