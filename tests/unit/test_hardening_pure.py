"""Pure pieces of the operator's hardening: the version status reports, Event notes within the API's byte limit."""

from __future__ import annotations

from falco_operator.instance.version import reported_version
from falco_operator.kube.events import MAX_NOTE_BYTES, truncate_utf8

DIGEST = "sha256:" + "ab" * 32


def test_a_digest_pinned_image_reports_its_digest_not_a_guess() -> None:
    assert reported_version(f"docker.io/falcosecurity/falco@{DIGEST}", "0.40.0", "0.44.1") == DIGEST
    assert reported_version(f"falco:0.43.0@{DIGEST}", None, "0.44.1") == "0.43.0"
    assert reported_version("reg:5000/falco:x", None, "0.44.1") == "x"
    assert reported_version(None, "0.40.0", "0.44.1") == "0.40.0"


def test_event_notes_are_cut_by_bytes_never_inside_a_character() -> None:
    note = "é" * 900  # 1800 bytes
    cut = truncate_utf8(note, MAX_NOTE_BYTES)
    assert len(cut.encode()) <= MAX_NOTE_BYTES
    assert cut == "é" * 512
    assert truncate_utf8("short", MAX_NOTE_BYTES) == "short"


def test_log_lines_keep_the_fields_passed_with_extra() -> None:
    import json
    import logging

    from falco_operator.kube.logs import JsonFormatter, TextFormatter

    record = logging.LogRecord("falco_operator.x", logging.INFO, __file__, 1, "pulled %s", ("ref",), None)
    record.__dict__.update({"digest": "sha256:ab", "bytes": 42})
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["msg"], entry["digest"], entry["bytes"]) == ("pulled ref", "sha256:ab", 42)
    assert "digest=sha256:ab" in TextFormatter().format(record)
