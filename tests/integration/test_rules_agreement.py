"""The rules validator agrees with Falco: the same verdict (load or refuse) as real Falco (``falco -V``, from the
harness) on the published rules files and on hundreds of single mutations of them. Where they may differ is
listed, with the reason, in docs/rules-validation.md and in ``KNOWN_DISAGREEMENTS`` here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from e2e.falco import FalcoBinaries, validate_rules
from falco_operator.artifacts import Invalid, parse_rules
from falco_operator.artifacts.rules import Finding, RulesFile, check_rule_set
from tests.load_order_cases import LATER_CHANGES, REFUSED_AT_THE_FIRST_FILE
from tests.rules_mutations import mutations

RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules"
DEFAULT, INCUBATING = RULES / "falco_rules.yaml", RULES / "falco-incubating_rules.yaml"
PLUGIN_RULES = (RULES / "k8s_audit_rules.yaml", RULES / "aws_cloudtrail_rules.yaml")
MUTATIONS = 240


def ours(files: Sequence[tuple[str, bytes]], *, text: bool = False) -> list[Finding]:
    """The validator's errors for files loaded in order (as the agent runs it: structure, then the set);
    ``text``: give it the file text too, so positions inside folded conditions map to their lines."""
    loaded = []
    for name, data in files:
        try:
            loaded.append(RulesFile(name, parse_rules(data), data.decode() if text else None))
        except Invalid as invalid:
            return [Finding(name, invalid.problem.line, None, "error", invalid.problem.message)]
    return [finding for finding in check_rule_set(loaded) if finding.severity == "error"]


def falco_accepts(paths: Sequence[Path], falco: FalcoBinaries) -> tuple[bool, str]:
    verdict = validate_rules(paths, binaries=falco)
    errors = [error.get("message", "") for result in verdict.results for error in result.get("errors") or []]
    return verdict.successful, "; ".join(errors) or (verdict.failure or "")


def test_published_rules_load_with_no_error(falco_binaries: FalcoBinaries) -> None:
    for files in ([DEFAULT], [DEFAULT, INCUBATING]):
        assert ours([(path.name, path.read_bytes()) for path in files]) == []
        assert falco_accepts(files, falco_binaries)[0]


def test_plugin_rule_sets_pass_with_their_plugins_fields() -> None:
    for path in PLUGIN_RULES:
        findings = check_rule_set([RulesFile(path.name, parse_rules(path.read_bytes()))])
        assert findings == [], f"{path.name}: every field is checked against the plugin's own (no warning either)"
    audit = PLUGIN_RULES[0].read_text().replace("ka.user.name", "ka.user.nam", 1)
    errors = ours([("k8s_audit_rules.yaml", audit.encode())])
    assert errors, "an unknown k8saudit field is an error"
    assert "ka.user.nam" in errors[0].message


def test_same_verdict_as_falco_on_mutations_of_the_default_rules(falco_binaries: FalcoBinaries, tmp_path: Path) -> None:
    items = YAML(typ="safe").load(DEFAULT.read_bytes())
    disagreements = []
    verdicts = {True: 0, False: 0}
    for index, mutation in enumerate(mutations(items, MUTATIONS)):
        path = tmp_path / f"mutation-{index}.yaml"
        path.write_bytes(mutation.document())
        falco_ok, falco_says = falco_accepts([path], falco_binaries)
        errors = ours([(path.name, path.read_bytes())])
        verdicts[falco_ok] += 1
        if falco_ok != (not errors):
            ours_says = str(errors[0]) if errors else "accepted"
            disagreements.append(f"{mutation.name}\n    Falco: {falco_says or 'accepted'}\n    ours: {ours_says}")
    assert verdicts[True] > 20, f"the mutations must also produce rule sets Falco loads: {verdicts}"
    assert verdicts[False] > 100, f"the mutations must mostly break the rule set: {verdicts}"
    assert not disagreements, f"{len(disagreements)} of {MUTATIONS} differ:\n" + "\n".join(disagreements)


@pytest.mark.parametrize("later", ["incubating"])
def test_same_verdict_on_mutations_of_a_later_file(falco_binaries: FalcoBinaries, tmp_path: Path, later: str) -> None:
    items = YAML(typ="safe").load(INCUBATING.read_bytes())
    disagreements = []
    for index, mutation in enumerate(mutations(items, 60, seed=11)):
        path = tmp_path / f"incubating-{index}.yaml"
        path.write_bytes(mutation.document())
        falco_ok, falco_says = falco_accepts([DEFAULT, path], falco_binaries)
        errors = ours([(DEFAULT.name, DEFAULT.read_bytes()), (path.name, path.read_bytes())])
        if falco_ok != (not errors):
            ours_says = str(errors[0]) if errors else "accepted"
            disagreements.append(f"{mutation.name}\n    Falco: {falco_says or 'accepted'}\n    ours: {ours_says}")
    assert not disagreements, "\n".join(disagreements)


TERMINAL_SHELL = "  priority: NOTICE\n  tags: [maturity_stable, container, shell, mitre_execution, T1059]\n"


def _exception(block: str) -> tuple[str, str]:
    """A variant that gives the Terminal shell rule an exceptions block."""
    return TERMINAL_SHELL, TERMINAL_SHELL + "  exceptions:\n" + block


# (what, text replaced in falco_rules.yaml, replacement, a fragment of our message, the line: None = where the
# replacement starts, or a 1-based offset into the replacement)
VARIANTS: list[tuple[str, str, str, str]] = [
    ("unbalanced parenthesis", "condition: (fd.name startswith /etc/)", "condition: (fd.name startswith /etc/",
     "expected a ')' token"),
    ("extra parenthesis", "condition: (evt.type in (execve, execveat))", "condition: (evt.type in (execve, execveat)))",
     "unexpected token after"),
    ("unknown operator", "condition: (container.id != host)", "condition: (container.id <> host)",
     "expected a number value"),
    ("operator that does not exist", "(proc.name in (shell_binaries))", "(proc.name within (shell_binaries))",
     "expected a valid check operator"),
    ("operator glued to its value", "(fd.name startswith /etc/)", "(fd.name startswith/etc/)",
     "expected a valid check operator"),
    ("and glued to a field", "evt.is_open_write=true and fd.typechar='f'", "evt.is_open_write=true andfd.typechar='f'",
     "expected blank or '(' after 'and'"),
    ("missing value", "condition: (container.id != host)", "condition: (container.id != )", "expected a string value"),
    ("empty condition", "condition: (container.id != host)", 'condition: ""', "filter input string is empty"),
    ("unterminated quote", "proc.cmdline startswith \"perl /usr/bin/updmap\")",
     "proc.cmdline startswith \"perl /usr/bin/updmap)", "expected a string value"),
    ("bad escape", "(proc.cmdline startswith \"perl /usr/bin/updmap\")",
     "(proc.cmdline startswith \"perl \\q/usr/bin/updmap\")", "unsupported string escape sequence"),
    ("unclosed field argument", "(proc.aname[2]=chef_command_wr", "(proc.aname[2=chef_command_wr",
     "expected a ']' token"),
    ("list without closing parenthesis", "(evt.type in (symlink, symlinkat))", "(evt.type in (symlink, symlinkat)",
     "expected a ')' token"),
    ("undefined macro", "    spawned_process\n    and container\n    and shell_procs\n",
     "    spawned_process\n    and container\n    and shell_procs_nope\n", "undefined macro 'shell_procs_nope'"),
    ("macro used by a macro defined before it", "- macro: etc_dir\n  condition: (fd.name startswith /etc/)",
     "- macro: etc_dir\n  condition: (fd.name startswith /etc/ and shell_procs)", "undefined macro 'shell_procs'"),
    ("macro refers to itself", "- macro: etc_dir\n  condition: (fd.name startswith /etc/)",
     "- macro: etc_dir\n  condition: (fd.name startswith /etc/ or etc_dir)", "undefined macro 'etc_dir'"),
    ("unknown field", "(container.id != host)", "(container.idx != host)", "container.idx"),
    ("unknown field in a known class", "(fd.name startswith /etc/)", "(fd.nam startswith /etc/)", "fd.nam"),
    ("unknown field in a rule", "    and proc.tty != 0\n", "    and proc.ttyy != 0\n", "proc.ttyy"),
    ("field argument where none is allowed", "(fd.name startswith /etc/)", "(fd.name[1] startswith /etc/)",
     "fd.name"),
    ("unknown event type", "(evt.type in (symlink, symlinkat))", "(evt.type in (symlink, symlinkatt))",
     "unknown event type 'symlinkatt'"),
    ("unknown event type with =", "(evt.type in (execve, execveat))", "(evt.type = execv)",
     "unknown event type 'execv'"),
    ("bad %field in output", "terminal=%proc.tty exe_flags=%evt.arg.flags",
     "terminal=%proc.tt exe_flags=%evt.arg.flags", "%proc.tt"),
    ("% at the end of the output", "terminal=%proc.tty exe_flags=%evt.arg.flags", "terminal=%proc.tty exe_flags=%",
     "a % at the end"),
    ("unknown transformer", "(container.id != host)", "(tolowr(container.id) != host)", "expected a ')' token"),
    ("priority LOUD", TERMINAL_SHELL, TERMINAL_SHELL.replace("NOTICE", "LOUD"), "LOUD"),
    ("rule without output", "  output: A shell was spawned in a container with an attached terminal", "  outpt: x",
     "output"),
    ("rule without priority", TERMINAL_SHELL, TERMINAL_SHELL.replace("priority", "priorty"), "priority"),
    ("macro without condition", "- macro: etc_dir\n  condition: (fd.name startswith /etc/)",
     "- macro: etc_dir\n  conditions: (fd.name startswith /etc/)", "condition"),
    ("list items not a list", "- list: shell_binaries\n  items: [ash, bash, csh, ksh, sh, tcsh, zsh, dash]",
     "- list: shell_binaries\n  items: ash", "items"),
    ("append to a missing macro", "- macro: etc_dir\n", "- macro: etc_dir_x\n  condition: and evt.num > 0\n"
     "  append: true\n\n- macro: etc_dir\n", "no macro by that name exists before it"),
    ("append to a missing list", "- list: shell_binaries\n", "- list: shells_x\n  items: [fish]\n"
     "  override:\n    items: append\n\n- list: shell_binaries\n", "no list by that name exists before it"),
    ("override of a missing rule", "- rule: Terminal shell in container\n", "- rule: Terminal shell in containers\n"
     "  condition: and evt.num > 0\n  override:\n    condition: append\n\n- rule: Terminal shell in container\n",
     "no rule by that name exists before it"),
    ("append before the rule exists", "- rule: Terminal shell in container\n", "- rule: Terminal shell in container\n"
     "  condition: and evt.num > 0\n  append: true\n\n- rule: Terminal shell in container\n",
     "no rule by that name exists before it"),
    ("enabled-only for a missing rule", "- rule: Terminal shell in container\n", "- rule: Terminal shell in cont\n"
     "  enabled: false\n\n- rule: Terminal shell in container\n", "sets only enabled"),
    ("append and override together", "- macro: etc_dir\n  condition: (fd.name startswith /etc/)\n",
     "- macro: etc_dir\n  condition: (fd.name startswith /etc/)\n\n- macro: etc_dir\n  condition: or evt.num = 0\n"
     "  append: true\n  override:\n    condition: append\n", "append"),
    ("override with an unknown mode", "- macro: etc_dir\n  condition: (fd.name startswith /etc/)\n",
     "- macro: etc_dir\n  condition: (fd.name startswith /etc/)\n\n- macro: etc_dir\n  condition: or evt.num = 0\n"
     "  override:\n    condition: prepend\n", "prepend"),
    ("exception comps shorter than fields", *_exception("  - name: known\n    fields: [proc.name, fd.name]\n"
     "    comps: [=]\n    values: [[bash, /tmp/x]]\n"), "same length"),
    ("exception values row shorter than fields", *_exception("  - name: known\n    fields: [proc.name, fd.name]\n"
     "    values: [[bash]]\n"), "one per field"),
    ("exception with an unknown operator", *_exception("  - name: known\n    fields: [proc.name]\n"
     "    comps: [equals]\n    values: [[bash]]\n"), "not a comparison operator"),
    ("exception on an unknown field", *_exception("  - name: known\n    fields: [proc.nome]\n"
     "    values: [[bash]]\n"), "proc.nome"),
    ("exception single field with =", *_exception("  - name: known\n    fields: proc.name\n    comps: =\n"
     "    values: [bash]\n"), "with a single field"),
    ("exception without fields", *_exception("  - name: known\n    values: [[bash]]\n"), "needs fields"),
    ("engine version that is no version", "- required_engine_version: 0.57.0", "- required_engine_version: abc",
     "required_engine_version"),
    ("plugin version that is no version", "      version: 0.4.0\n", "      version: latest\n", "latest"),
    ("contains on a numeric field", "evt.is_open_write=true and fd.typechar='f' and fd.num>=0)",
     "evt.is_open_write=true and fd.typechar='f' and fd.num contains 0)", "not supported for numeric filters"),
    ("a word where a number belongs", "evt.is_open_write=true and fd.typechar='f' and fd.num>=0)",
     "evt.is_open_write=true and fd.typechar='f' and fd.num=zero)", "zero is not a valid number"),
    ("bcontains on a string field", "(fd.name startswith /etc/)", "(fd.name bcontains 2f657463)",
     "not supported for string filters"),
    ("tags not a list", TERMINAL_SHELL, TERMINAL_SHELL.replace("tags: [", "tags: x [").replace("T1059]", "T1059"),
     "tags"),
]  # fmt: skip


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _item_line(text: str, index: int) -> int:
    start = max(text.rfind("\n- ", 0, index), text.rfind("\n  - name:", 0, index))
    return _line_of(text, start + 1) if start >= 0 else 1


@pytest.mark.parametrize(("what", "old", "new", "fragment"), VARIANTS, ids=[variant[0] for variant in VARIANTS])
def test_broken_variant_is_refused_by_both_with_the_line_and_a_clear_message(
    falco_binaries: FalcoBinaries, tmp_path: Path, what: str, old: str, new: str, fragment: str
) -> None:
    original = DEFAULT.read_text()
    index = original.find(old)
    assert index >= 0, f"{what}: the anchor is not in falco_rules.yaml"
    mutated = original.replace(old, new, 1)
    path = tmp_path / "falco_rules.yaml"
    path.write_text(mutated)
    falco_ok, falco_says = falco_accepts([path], falco_binaries)
    assert not falco_ok, f"{what}: Falco loads it, so it is not a broken variant"
    errors = ours([(path.name, mutated.encode())], text=True)
    assert errors, f"{what}: accepted, Falco says: {falco_says}"
    assert fragment in errors[0].message, f"{what}: {errors[0]} (Falco: {falco_says})"
    span = range(_item_line(mutated, index), _line_of(mutated, index + len(new)) + 1)
    assert errors[0].line in span, (
        f"{what}: reported at line {errors[0].line}, not in lines {span.start}-{span.stop - 1}"
    )


def test_falco_compiles_after_each_file_and_so_does_the_check(falco_binaries: FalcoBinaries, tmp_path: Path) -> None:
    """Issue 23, case 9: what a file uses must be defined by the time it loads; a later file's definition does
    not help (``falco -V a.yaml -V b.yaml``), in the other order both load."""
    for what, (first, second, expected) in REFUSED_AT_THE_FIRST_FILE.items():
        a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
        a.write_text(first)
        b.write_text(second)
        falco_ok, falco_says = falco_accepts([a, b], falco_binaries)
        errors = ours([("a.yaml", first.encode()), ("b.yaml", second.encode())], text=True)
        assert not falco_ok, f"{what}: Falco loads a.yaml before b.yaml"
        assert len(errors) == 1, f"{what}: {errors} (Falco: {falco_says})"
        assert str(errors[0]).startswith(expected), f"{what}: {errors[0]} (Falco: {falco_says})"
        if "override" not in second:
            assert falco_accepts([b, a], falco_binaries)[0], f"{what}: Falco refuses b.yaml before a.yaml"
            assert ours([("b.yaml", second.encode()), ("a.yaml", first.encode())]) == [], what
    for what, (first, second, _) in LATER_CHANGES.items():
        a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
        a.write_text(first)
        b.write_text(second)
        falco_ok, falco_says = falco_accepts([a, b], falco_binaries)
        errors = ours([("a.yaml", first.encode()), ("b.yaml", second.encode())])
        assert falco_ok == (not errors), f"{what}: Falco {falco_says or 'accepts'}; ours: {errors}"
