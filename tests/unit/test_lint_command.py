"""``falco-operator lint``: file:line:col messages and the exit code, over files and Rulesfile manifests."""

from __future__ import annotations

import io
from pathlib import Path

from falco_operator.cli import build_parser
from falco_operator.lint import run_lint

RULES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "falco-rules"
BROKEN = "- rule: Shell in app\n  desc: d\n  condition: >\n    evt.type = execve\n    and spawned_proces\n" \
         "  output: shell (%proc.name)\n  priority: NOTICE\n"  # fmt: skip


def lint(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run_lint(build_parser().parse_args(["lint", *argv]), out)
    return code, out.getvalue()


def test_published_rules_pass(tmp_path: Path) -> None:
    code, output = lint(str(RULES / "falco_rules.yaml"), str(RULES / "falco-incubating_rules.yaml"))
    assert (code, output) == (0, "")


def test_an_error_names_file_line_and_column(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(BROKEN)
    code, output = lint(str(RULES / "falco_rules.yaml"), str(mine))
    assert code == 1
    assert output == f"{mine}:5:9: error: rule 'Shell in app': undefined macro 'spawned_proces'\n"
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(BROKEN.replace("spawned_proces", "spawned_process"))
    assert lint(str(RULES / "falco_rules.yaml"), str(fixed)) == (0, "")


def test_rulesfile_manifests_are_linted_under_the_agents_file_name(tmp_path: Path) -> None:
    manifest = tmp_path / "rulesfile.yaml"
    indented = "".join(f"      {line}\n" for line in BROKEN.splitlines())
    manifest.write_text("apiVersion: artifact.falcosecurity.dev/v1alpha1\nkind: Rulesfile\nmetadata:\n"
                        f"  name: app-rules\nspec:\n  priority: 60\n  inlineRules: |\n{indented}")  # fmt: skip
    code, output = lint(str(RULES / "falco_rules.yaml"), "--rulesfile", str(manifest))
    assert code == 1
    assert output.startswith(f"{manifest}#60-03-app-rules-inline.yaml:5:9: error: rule 'Shell in app': undefined")


def test_plugins_given_check_requirements_and_plugin_fields_offline() -> None:
    audit = str(RULES / "k8s_audit_rules.yaml")
    assert lint(audit) == (0, ""), "without --plugin, plugins are not judged"
    assert lint(audit, "--plugin", "k8saudit:0.18.0", "--plugin", "json:0.7.4", "--engine-version", "0.62.0") == (0, "")
    code, output = lint(audit, "--plugin", "k8saudit:0.18.0", "--plugin", "json:0.7.4")
    assert (code, output) == (0, f"{audit}:19: warning: required_engine_version '15' is not checked: the engine "
                                 "version of the Falco that loads these rules is not known\n")  # fmt: skip
    code, output = lint(audit, "--plugin", "k8saudit:0.18.0", "--engine-version", "0.62.0")
    assert code == 1
    assert output == (f"{audit}:21: error: the rules require a plugin this Falco does not load: add a Plugin for json "
                      "(>= 0.7.0)\n")  # fmt: skip
    code, output = lint(audit, "--plugin", "k8saudit:0.17.2", "--plugin", "json:0.7.4")
    assert code == 1
    assert (
        "the rules require plugin k8saudit >= 0.18.0 (same major version), but this Falco loads k8saudit 0.17.2"
        in output
    )


def test_a_plugin_without_version_is_a_warning_and_fields_of_others_are_errors(tmp_path: Path) -> None:
    default = str(RULES / "falco_rules.yaml")
    code, output = lint(default, "--plugin", "container")
    assert code == 0
    assert "warning: the rules require plugin container >= 0.4.0; the version of container this Falco loads is not " \
           "known, so that is not checked" in output  # fmt: skip
    scoped = tmp_path / "scoped.yaml"
    scoped.write_text(BROKEN.replace("and spawned_proces", "and k8s.ns.name = team-a"))
    code, output = lint(str(scoped), "--plugin", "json:0.7.4")
    assert code == 1
    assert "error: rule 'Shell in app': field k8s.ns.name needs the container plugin, which this Falco does not " \
           "load" in output  # fmt: skip


def test_the_engine_version_given_checks_required_engine_version() -> None:
    default = str(RULES / "falco_rules.yaml")
    code, output = lint(default, "--plugin", "container:0.7.1", "--engine-version", "0.40.0")
    assert code == 1
    assert "the rules require Falco engine version 0.57.0, but this Falco's engine is 0.40.0" in output
    assert lint(default, "--plugin", "container:0.7.1", "--engine-version", "0.62.0") == (0, "")


def test_a_macro_only_a_later_file_defines_is_an_error_naming_the_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("- rule: r\n  desc: d\n  condition: evt.num > 0 and later\n  output: o\n  priority: NOTICE\n")
    second.write_text("- macro: later\n  condition: evt.num > 1\n")
    code, output = lint(str(first), str(second))
    assert code == 1
    assert output == (f"{first}:3:30: error: rule 'r': undefined macro 'later' ({second} defines it, but loads after "
                      f"{first}: Falco compiles the rules after each file, so a file may use only the macros defined "
                      "in it or in a file that loads before it)\n")  # fmt: skip
    assert lint(str(second), str(first)) == (0, "")
