"""``load_yaml`` reads documents with libyaml and gives what ruamel's round-trip loader gives (values, kinds of
value, the lines of mappings, sequences and keys), or leaves the document to that loader: on the published rules
files, on tricky YAML, on fuzzed rules text and on random plain scalars."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from falco_operator.artifacts.yamldoc import _ROUND_TRIP as LEFT_TO_ROUND_TRIP
from falco_operator.artifacts.yamldoc import YamlMap, YamlProblem, line_of, load_yaml, round_trip_load
from falco_operator.artifacts.yamldoc import _fast_load as fast_load  # the fast reader alone, to see it is used

RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules"
PUBLISHED = sorted(RULES.glob("*.yaml"))


def kind(value: Any) -> type:
    """What a reader of the value sees: the fast reader's containers and the round-trip loader's (and its number
    and text subclasses) are the same kinds of value."""
    for plain_kind in (bool, int, float, str, dict, list):
        if isinstance(value, plain_kind):
            return plain_kind
    return type(value)


def same(ours: Any, reference: Any, path: str = "$") -> None:
    """Equal values of equal kinds, mappings and sequences on the same lines, keys on the same line and column."""
    assert kind(ours) is kind(reference), (path, type(ours), type(reference))
    assert ours == reference or repr(ours) == repr(reference), path  # a tagged value has no ==, only a repr
    if isinstance(ours, dict):
        assert line_of(ours) == line_of(reference), path
        for key in ours:
            assert key_place(ours, key) == key_place(reference, key), (path, key)
            same(ours[key], reference[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert line_of(ours) == line_of(reference), path
        for index, (mine, theirs) in enumerate(zip(ours, reference, strict=True)):
            same(mine, theirs, f"{path}[{index}]")


def key_place(mapping: Any, key: Any) -> tuple[int, int] | None:
    if isinstance(mapping, YamlMap):
        return mapping.keys_at[key]
    place = mapping.lc.key(key)  # none for a key merged in (<<)
    return None if place is None else (place[0], place[1])


def outcome(load: Any, text: str) -> tuple[str, Any]:
    try:
        return "loaded", load(text)
    except YamlProblem as problem:
        return "refused", str(problem.problem)


@pytest.mark.parametrize("path", PUBLISHED, ids=[path.name for path in PUBLISHED])
def test_published_rules_files_are_read_fast_into_the_same_values_and_lines(path: Path) -> None:
    text = path.read_text()
    fast = fast_load(text)
    assert isinstance(fast, list), "read by libyaml, not left to the round-trip loader"
    same(fast, round_trip_load(text))


TRICKY = [
    "a: yes\nb: 0o17\nc: 017\nd: 1_000\ne: 1e3\nf: .inf\ng: ~\nh:\ni: 2001-12-14\nj: 'x'\nk: |\n  lit\nl: >-\n  fold\n"
    "m: 0x1F\nn: -0\no: +5\np: 1.5\nq: TRUE\nr: True\ns: on\nu: '1'\nv: \"a\\tb\"\n",
    "[1, 2, {a: b}, [c]]\n",
    "plain\n",
    "",
    "# only a comment\n",
    "- a: [b, {c: d}]\n  e: f\n",
    "a: 1\na: 2\n",  # a repeated key: the round-trip loader refuses it
    "a: &x 1\nb: *x\n",  # anchors and aliases: refused
    "<<: {a: 1}\n",  # a merge key
    "? a\n: b\n",  # an explicit key
    "a:\tb\n",  # a tab
    "a: >#\n  x\n",  # a comment glued to a block scalar header
    "--- a\n--- b\n",  # two documents
    "%YAML 1.1\n--- a: yes\n",
    "!!str 5\n",
    "a: [b\n",  # invalid YAML
    "a: +_\n",  # a scalar ruamel's constructor fails on (IndexError): refused, not raised
    '- rule: r\n  condition: a and\n    b\n  output: "x %proc.name"\n',
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_documents_give_what_the_round_trip_loader_gives(text: str) -> None:
    mine, reference = outcome(load_yaml, text), outcome(round_trip_load, text)
    assert mine[0] == reference[0]
    if mine[0] == "refused":
        assert mine == reference
    else:
        same(mine[1], reference[1])


PIECES = [":", " ", "\n", "-", '"', "'", "#", "[", "]", "{", "}", ",", "|", ">", "\t", "? ", "!", "&", "*", "%",
          "\\", "yes", "0x1", "1e3", "~", "null", ": ", "- ", "\n  ", "\n- ", "...", "---", "<<: ", "\u00e9",
          "\ufeff"]  # fmt: skip


def test_fuzzed_rules_text_gives_what_the_round_trip_loader_gives() -> None:
    """Cut-outs of the published files with a few characters put in or taken out; 12,000 more such variants were
    checked the same way when the fast reader was written."""
    chooser = random.Random(23)
    texts = [path.read_text() for path in PUBLISHED]
    fast_reads = 0
    for _ in range(400):
        base = chooser.choice(texts)
        start = chooser.randrange(0, len(base) - 400)
        text = base[start : start + chooser.randrange(50, 400)]
        text = text[text.find("\n") + 1 :]
        for _ in range(chooser.randrange(1, 4)):
            at = chooser.randrange(0, len(text) + 1)
            text = text[:at] + chooser.choice(PIECES) + text[at + chooser.choice([0, 0, 1, 2]) :]
        if fast_load(text) is not LEFT_TO_ROUND_TRIP:
            fast_reads += 1
            mine, reference = outcome(load_yaml, text), outcome(round_trip_load, text)
            assert mine[0] == reference[0], text
            if mine[0] == "loaded":
                same(mine[1], reference[1])
    assert fast_reads > 120, "many variants are read fast (the others have what only the round-trip loader reads)"


SCALAR_PIECES = ["0", "1", "7", "9", "_", ".", "-", "+", ":", "e", "E", "x", "o", "b", "a", "f", "inf", "nan", "Inf",
                 "NaN", "T", "Z", "t", "z", " ", "2001-12-14", "12:30:45", "true", "false", "null", "yes", "no", "on",
                 "~", "<<", "=", "/", "s", "v", "é", "0.4.0", "10.0.0.0/8", ".bash"]  # fmt: skip


def test_random_plain_scalars_are_read_as_the_round_trip_loader_reads_them_or_left_to_it() -> None:
    """The fast reader resolves a plain scalar itself only when it is sure: every value it builds is the one the
    round-trip loader builds, of the same kind; the rest (hex, exponents, dates...) is left to that loader."""
    chooser = random.Random(29)
    built = left = 0
    for _ in range(6000):
        scalar = "".join(chooser.choice(SCALAR_PIECES) for _ in range(chooser.randrange(1, 5))).strip()
        text = f"key: {scalar}\n"
        try:
            reference = round_trip_load(text)
        except YamlProblem:
            continue
        ours = fast_load(text)
        if ours is LEFT_TO_ROUND_TRIP:
            left += 1
            continue
        built += 1
        same(ours, reference, repr(scalar))
    assert built > 2000, (built, left)
    assert left > 500, (built, left)
