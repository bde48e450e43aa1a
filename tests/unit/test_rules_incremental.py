"""The incremental rule-set check as a property (issue 29): over seeded random sequences of file adds, edits,
removals and reorders, what it finds equals ``check_rule_set`` from scratch, finding for finding, messages and
order included. Files are small and tangled (macros, lists and rules that use, append to, override and enable each
other across files, exceptions, plugin and engine requirements, broken conditions and broken items), and now and
then Falco's own rules files join, also as the image's rules loading before the set."""

from __future__ import annotations

import random
from pathlib import Path

from falco_operator.artifacts import parse_rules
from falco_operator.artifacts.rules import LoadContext, RulesFile, check_rule_set
from falco_operator.artifacts.rules.incremental import IncrementalCheck, words
from falco_operator.artifacts.validation import Invalid

RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules"
SEQUENCES = 20
STEPS = 30
TEAMS = ("a", "b", "c")
FIELDS = ("proc.name", "fd.name", "evt.num", "user.name", "proc.pname", "container.id", "k8s.ns.name", "proc.nope")


def condition(rng: random.Random, team: str, mess: float, before: str = "none") -> str:
    parts = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        if rng.random() < mess:
            parts.append(rng.choice(["evt.num >", f"m_{rng.choice(TEAMS)}{rng.randint(0, 3)}", "proc.nope = 1"]))
        elif kind < 0.15:
            parts.append(rng.choice(BEFORE_MACROS[before] or [f"m_{team}0"]))
        elif kind < 0.3:
            parts.append(f"m_{team}0")  # every team's first file defines it
        elif kind < 0.5:
            parts.append(f"{rng.choice(FIELDS[:3])} in (l_{team}{rng.randint(0, 2)})")
        elif kind < 0.6:
            parts.append("evt.type = openat and evt.dir = <")
        else:
            parts.append(f"{rng.choice(FIELDS)} = x{rng.randint(0, 9)}")
    return " and ".join(parts)


BEFORE_MACROS = {"none": [], "image": ["spawned_process", "container", "open_write"], "small": ["m_base0", "m_base1"]}
"""Macros of the rules Falco loads before the set, by what it loads: nothing, its image's rules, a small file."""
BEFORE_CHANGES = {
    "none": [],
    "image": [
        "- macro: spawned_process\n  condition: and proc.name = x\n  append: true\n",
        "- list: shell_binaries\n  items: [x]\n  append: true\n",
        "- rule: Terminal shell in container\n  enabled: false\n",
        "- macro: never_true\n  condition: evt.num > 7\n  override:\n    condition: replace\n",
    ],
    "small": [
        "- macro: m_base1\n  condition: and evt.num < 3\n  append: true\n",
        "- macro: m_base0\n  condition: and proc.nope2 = 1\n  append: true\n",
        "- rule: base rule\n  condition: and proc.nope3 = 1\n  override:\n    condition: append\n",
        "- rule: shared rule in container\n  enabled: false\n",
        "- list: l_base0\n  items: [c]\n  append: true\n",
    ],
}


def base_file(rng: random.Random) -> RulesFile:
    """A small file of rules Falco loads before the set, now and then broken."""
    text = ("- list: l_base0\n  items: [a, b]\n- macro: m_base0\n  condition: proc.name in (l_base0)\n"
            "- macro: m_base1\n  condition: m_base0 and evt.num > 1\n"
            "- rule: base rule\n  desc: d\n  condition: m_base1 and proc.nope = 1\n  output: o %proc.name\n"
            "  priority: INFO\n  skip-if-unknown-filter: true\n"
            "- rule: shared rule in container\n  desc: d\n  condition: evt.num > 0\n  output: o\n"
            "  priority: INFO\n")  # fmt: skip
    if rng.random() < 0.1:
        text += "- rule: broken base\n  desc: d\n  condition: evt.num >\n  output: o\n  priority: INFO\n"
    return rules_file("/etc/falco/base_rules.yaml", text)


def rule_name(team: str, number: int) -> str:
    """Names with the words conditions use too: rules meet only by the same name."""
    return f"r_{team}{number}" if number % 2 == 0 else f"Rule {number} of {team} in container"


def item(rng: random.Random, team: str, mess: float, before: str) -> str:
    """One item; ``mess``: how likely it is to be broken or to change what another file may not have."""
    kind = rng.random()
    number = rng.randint(0, 3)
    changes = rng.random() < mess
    if BEFORE_CHANGES[before] and rng.random() < 0.12:
        return rng.choice(BEFORE_CHANGES[before])
    if kind < 0.2:
        values = [f"v{rng.randint(0, 9)}" for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.3:
            values.append(f"l_{team}{rng.randint(0, 2)}")
        mode = rng.choice(["  append: true\n", "  override:\n    items: replace\n"]) if changes else ""
        return f"- list: l_{team}{number % 3}\n  items: [{', '.join(values)}]\n{mode}"
    if kind < 0.45:
        mode = rng.choice(["  append: true\n", "  override:\n    condition: append\n"]) if changes else ""
        text = ("and " if mode else "") + condition(rng, team, mess, before)
        return f"- macro: m_{team}{number}\n  condition: {text}\n{mode}"
    if kind < 0.5 and changes:
        return f"- rule: {rule_name(team, number)}\n  enabled: {rng.choice(['true', 'false'])}\n"
    if kind < 0.55 and changes:
        return (f"- rule: {rule_name(team, number)}\n  condition: and {condition(rng, team, mess, before)}\n"
                "  override:\n    condition: append\n")  # fmt: skip
    if kind < 0.6 and changes:
        return (f"- rule: {rule_name(team, number)}\n  exceptions:\n  - name: e{rng.randint(0, 1)}\n"
                f"    values: [[x{rng.randint(0, 9)}]]\n  append: true\n")  # fmt: skip
    if kind < 0.63:
        return f"- required_engine_version: {rng.choice(['0.26.0', '0.99.0', '7', 'x'] if changes else ['0.1.0'])}\n"
    if kind < 0.66:
        plugin = rng.choice(["container", "k8saudit", "json"])
        return f"- required_plugin_versions:\n  - name: {plugin}\n    version: {rng.choice(['0.1.0', '9.0.0'])}\n"
    if kind < 0.68 and changes:
        return f"- rule: {rule_name(team, number)}\n  desc: broken\n"  # missing keys
    extra = ""
    if rng.random() < 0.2:
        extra += f"  exceptions:\n  - name: e0\n    fields: [proc.name]\n    values: [[l_{team}0]]\n"
    if rng.random() < 0.05 and not extra:
        extra += "  source: k8s_audit\n"
    if rng.random() < 0.3:
        extra += "  skip-if-unknown-filter: true\n"  # what would fail warns
    output = rng.choice(["proc=%proc.name", "n=%evt.num", "bad=%proc.nope", "ns=%k8s.ns.name"])
    return (f"- rule: {rule_name(team, number)}\n  desc: d\n  condition: {condition(rng, team, mess, before)}\n"
            f"  output: {output}\n  priority: {rng.choice(['NOTICE', 'WARNING'])}\n{extra}")  # fmt: skip


def generated(rng: random.Random, mess: float, before: str = "none") -> str:
    team = rng.choice(TEAMS) if rng.random() < 0.8 else f"solo{rng.randint(0, 99)}"
    base = f"- macro: m_{team}0\n  condition: evt.num > 0\n- list: l_{team}0\n  items: [a, b]\n"
    return base + "".join(item(rng, team, mess, before) for _ in range(rng.randint(1, 5)))


def rules_file(name: str, text: str) -> RulesFile:
    try:
        items = parse_rules(text.encode())
    except Invalid:
        items = []  # the planner refuses such a file before the set check; an empty one stands in
    return RulesFile(name, items, text)


REAL = {path.name: path.read_text() for path in sorted(RULES.glob("*.yaml"))}


def contexts(rng: random.Random, before: str) -> LoadContext | None:
    pick = rng.random()
    if pick < 0.15 and before == "none":
        return None
    if pick < 0.3 and before == "none":
        return LoadContext()
    plugins = {name: rng.choice([None, "0.5.0", "9.9.9"]) for name in ("container", "k8saudit", "json")
               if rng.random() < 0.6}  # fmt: skip
    engine = rng.choice([None, "0.60.0", "0.10.0"])
    preceding: tuple[RulesFile, ...] = ()
    if before == "image":
        preceding = (rules_file("/etc/falco/falco_rules.yaml", REAL["falco_rules.yaml"]),)
    elif before == "small":
        preceding = (base_file(rng),)
    return LoadContext(plugins, engine, preceding)


def step(rng: random.Random, files: dict[str, str], mess: float, before: str) -> None:
    action = rng.random()
    if action < 0.3 or not files:
        name = f"{rng.randint(10, 90)}-f{rng.randint(0, 999)}.yaml"
        if rng.random() < 0.04:
            real = rng.choice(sorted(REAL))
            files[f"{rng.randint(10, 90)}-{real}"] = REAL[real]
        else:
            files[name] = generated(rng, mess, before)
    elif action < 0.7:
        name = rng.choice(sorted(files))
        text = files[name]
        files[name] = (
            generated(rng, mess, before)
            if rng.random() < 0.5 or len(text) > 5000
            else text + generated(rng, mess, before)
        )
    elif action < 0.85:
        del files[rng.choice(sorted(files))]
    else:  # reorder: the same content loads elsewhere
        name = rng.choice(sorted(files))
        files[f"{rng.randint(10, 90)}-{name.split('-', 1)[1]}"] = files.pop(name)


def test_the_incremental_check_finds_what_the_full_check_finds_after_any_sequence() -> None:
    checked = 0
    groups_used = 0
    for seed in range(SEQUENCES):
        rng = random.Random(seed)
        incremental = IncrementalCheck(max_bytes=rng.choice([1024, 64 * 1024, 2 * 1024 * 1024]))
        files: dict[str, str] = {}
        mess = rng.choice([0.0, 0.02, 0.05, 0.3])
        before = rng.choice(["none", "none", "image", "small", "small"])
        context = contexts(rng, before)
        for number in range(STEPS):
            step(rng, files, mess, before)
            if rng.random() < 0.15:  # what Falco provides changes less often than the files
                context = contexts(rng, before)
            views = [rules_file(name, files[name]) for name in sorted(files)]
            checked_before = incremental.checked_files
            expected = check_rule_set(views, context=context)
            found = incremental.check(views, context)
            assert found == expected, f"seed {seed} step {number}: {sorted(files)}"
            checked += 1
            groups_used += incremental.checked_files - checked_before < len(views) + len(
                context.preceding if context else ()
            )
    assert checked == SEQUENCES * STEPS
    assert groups_used > checked // 4, "the remembered groups are hardly ever used: the test checks little"


def test_a_change_to_one_independent_file_checks_that_file_alone() -> None:
    texts = [f"- macro: m{n}\n  condition: evt.num > {n}\n- rule: r{n}\n  desc: d\n  condition: m{n} and "
             f"proc.name = x\n  output: o %proc.name\n  priority: NOTICE\n" for n in range(20)]  # fmt: skip
    incremental = IncrementalCheck()
    incremental.check([rules_file(f"{n:02d}.yaml", text) for n, text in enumerate(texts)])
    texts[7] = texts[7].replace("evt.num > 7", "evt.num >")
    before = incremental.checked_files
    views = [rules_file(f"{n:02d}.yaml", text) for n, text in enumerate(texts)]
    found = incremental.check(views)
    assert incremental.checked_files - before == 1
    assert found == check_rule_set(views)
    assert [finding.file for finding in found if finding.severity == "error"] == ["07.yaml"]


def test_files_that_use_what_another_defines_are_checked_together() -> None:
    uses = rules_file("20-user.yaml", "- rule: r\n  desc: d\n  condition: shared\n  output: o\n  priority: INFO\n")
    defines = rules_file("10-base.yaml", "- macro: shared\n  condition: evt.num > 0\n")
    alone = rules_file("30-other.yaml", "- macro: other\n  condition: evt.num > 1\n")
    incremental = IncrementalCheck()
    assert incremental.check([defines, uses, alone]) == []
    broken = rules_file("10-base.yaml", "- macro: shared\n  condition: evt.num >\n")
    before = incremental.checked_files
    assert incremental.check([broken, uses, alone]) == check_rule_set([broken, uses, alone])
    assert incremental.checked_files - before == 2


def test_words_split_as_list_substitution_does_and_keep_identifiers() -> None:
    assert {"proc.name", "in", "a-b", "c", "a", "b", "proc", "name"} <= words("proc.name in (a-b, 'c')")


def warned_rule(name: str, macro: str = "") -> str:
    condition = f"{macro} and proc.nope = 1" if macro else "proc.nope = 1"
    return (f"- rule: {name}\n  desc: d\n  condition: {condition}\n  output: o\n  priority: INFO\n"
            "  skip-if-unknown-filter: true\n")  # fmt: skip


def test_warnings_of_groups_that_interleave_keep_the_load_order() -> None:
    views = [rules_file("10-a.yaml", "- macro: ma\n  condition: evt.num > 0\n" + warned_rule("r1", "ma")),
             rules_file("20-b.yaml", warned_rule("r2")),
             rules_file("30-a.yaml", warned_rule("r3", "ma"))]  # fmt: skip
    found = IncrementalCheck().check(views)
    assert found == check_rule_set(views)
    assert [finding.message.split("'")[1] for finding in found] == ["r1", "r2", "r3"]


def test_a_list_named_like_a_word_the_check_writes_meets_every_rule_with_exceptions() -> None:
    rule_text = ("- rule: r\n  desc: d\n  condition: evt.num > 0\n  output: o\n  priority: INFO\n"
                 "  exceptions:\n  - name: e\n    fields: [proc.name]\n    values: [[x]]\n")  # fmt: skip
    views = [rules_file("10-a.yaml", "- list: not\n  items: ['(']\n"), rules_file("20-b.yaml", rule_text)]
    expected = check_rule_set(views)
    assert [finding.file for finding in expected if finding.severity == "error"] == ["20-b.yaml"]
    assert IncrementalCheck().check(views) == expected


def test_files_that_change_the_same_rule_are_checked_together() -> None:
    views = [rules_file("10-a.yaml", "- rule: shared rule in container\n  desc: d\n  condition: evt.num > 0\n"
                                     "  output: o\n  priority: INFO\n"),
             rules_file("20-b.yaml", "- rule: shared rule in container\n  enabled: false\n")]  # fmt: skip
    assert IncrementalCheck().check(views) == check_rule_set(views) == []


def test_a_change_to_the_image_rules_reaches_the_files_that_use_what_it_changed_however_indirectly() -> None:
    image_text = "- macro: m_base0\n  condition: evt.num > 0\n- macro: m_base1\n  condition: m_base0 and evt.num > 1\n"
    image = rules_file("/etc/falco/base_rules.yaml", image_text)
    change = rules_file("10-change.yaml", "- macro: m_base0\n  condition: and proc.nope2 = 1\n  append: true\n")
    reader = rules_file("20-reader.yaml", warned_rule("r", "m_base1"))
    other = rules_file("30-other.yaml", warned_rule("s", "m_base0"))
    context = LoadContext({}, None, (image,))
    incremental = IncrementalCheck()
    for views in ([reader, other], [change, reader, other], [reader, change, other]):
        expected = check_rule_set(views, context=context)
        assert incremental.check(views, context) == expected
    assert any("proc.nope2" in finding.message and "'s'" in finding.message for finding in expected)
    assert incremental.check([change, reader], context) == check_rule_set([change, reader], context=context)
    assert any("proc.nope2" in f.message and "'r'" in f.message for f in incremental.check([change, reader], context))
