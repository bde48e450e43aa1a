"""The set invariant as a property: over 500 random sequences of creates, deletes, relabels, pulls and plugin
changes (fixed seeds), every set the planner writes passes the full rules check with the plugins the same set
configures, also as Falco compiles it after each file; no plugin name is configured twice; and no artifact is
reported Installed whose files are not what is written."""

from __future__ import annotations

import time

from falco_operator.artifacts import (
    CONFIG_DIR,
    PLUGINS_CONFIG_FILE,
    PLUGINS_DIR,
    RULES_DIR,
    Plan,
    load_yaml,
    parse_plugin_library_file_name,
)
from falco_operator.artifacts.rules import LoadContext, RulesFile, check_rule_set
from falco_operator.artifacts.yamldoc import plain
from tests.set_sequences import sequence, written_plugins, written_rules

SEQUENCES = 500
STEPS = 8


def set_errors(result: Plan) -> list[str]:
    """Errors of the written set: the whole set, and each prefix (Falco compiles after every file)."""
    files = [RulesFile(name, load_yaml(data), data.decode()) for name, data in written_rules(result)]
    context = LoadContext(dict.fromkeys(written_plugins(result)))
    for end in range(len(files), 0, -1):
        errors = [str(f) for f in check_rule_set(files[:end], context=context) if f.severity == "error"]
        if errors:
            return errors
    return []


def reported_but_not_written(result: Plan) -> list[str]:
    entries = []
    fragment = result.directories[CONFIG_DIR].get(PLUGINS_CONFIG_FILE)
    if fragment is not None:
        entries = plain(load_yaml(fragment))["plugins"]
    wrong = []
    for outcome in result.outcomes:
        if outcome.state not in ("Installed", "Loaded"):
            continue
        for (directory, name), data in outcome.delivered.files.items():
            if result.directories[directory].get(name) != data:
                wrong.append(f"{outcome.key}: {directory}/{name}")
        entry = outcome.delivered.plugin_entry
        if entry is not None and dict(entry) not in entries:
            wrong.append(f"{outcome.key}: plugin entry {entry['name']}")
    return wrong


def test_every_written_set_passes_the_full_check_with_its_own_plugins() -> None:
    started = time.monotonic()
    withheld: dict[str, int] = {}
    sets = 0
    for seed in range(SEQUENCES):
        history: list[str] = []
        for step in sequence(seed, STEPS):
            history.append(step.what)
            result = step.result
            where = f"seed {seed}, after: " + "; ".join(history)
            errors = set_errors(result)
            assert errors == [], f"{where}\nthe written set fails: {errors}\n{dict(written_rules(result))}"
            plugins = written_plugins(result)
            assert len(plugins) == len(set(plugins)), f"{where}\nplugins configured twice: {plugins}"
            assert reported_but_not_written(result) == [], where
            for outcome in result.outcomes:
                if outcome.state not in ("Installed", "Loaded") and outcome.reason:
                    withheld[outcome.reason] = withheld.get(outcome.reason, 0) + 1
                if outcome.key.kind == "Plugin" and outcome.state == "Installed":
                    for directory, name in outcome.delivered.files:  # at most its library, named by content
                        assert directory == PLUGINS_DIR, name
                        assert getattr(parse_plugin_library_file_name(name), "name", None) == outcome.key.name, name
            sets += len(result.directories[RULES_DIR]) > 0
    elapsed = time.monotonic() - started
    # The sequences reach every way of being withheld (else the property proves little).
    for reason in ("DependencyGone", "DependencyPending", "RequirementsNotMet", "InvalidRules", "NameConflict"):
        assert withheld.get(reason, 0) > 0, f"no sequence gave {reason}: {withheld}"
    assert sets > SEQUENCES, "most passes write rules"
    assert elapsed < 60, f"{SEQUENCES} sequences took {elapsed:.1f} s"
