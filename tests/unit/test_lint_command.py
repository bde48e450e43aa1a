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
