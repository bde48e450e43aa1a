"""Pairs of rules files for the load-order checks (issue 23, case 9), shared by the unit tests and the agreement
tests with real Falco: each verdict here is Falco 0.44.1's for the two files loaded in this order."""

from __future__ import annotations


def rule(name: str, condition: str) -> str:
    return f"- rule: {name}\n  desc: d\n  condition: {condition}\n  output: o\n  priority: NOTICE\n"


def macro(name: str, condition: str, override: str | None = None) -> str:
    text = f"- macro: {name}\n  condition: {condition}\n"
    return text + (f"  override:\n    condition: {override}\n" if override else "")


def rules_list(name: str, items: str, override: str | None = None) -> str:
    text = f"- list: {name}\n  items: [{items}]\n"
    return text + (f"  override:\n    items: {override}\n" if override else "")


# Pairs of files (loaded in this order) Falco refuses at the first file, although the whole set compiles; the
# first file, the second, and what our error says (Falco's words in the comment).
REFUSED_AT_THE_FIRST_FILE = {
    # Undefined macro 'later' used in filter.
    "macro of a later file": (rule("r", "evt.num > 0 and later"), macro("later", "evt.num > 1"),
                              "a.yaml:3:30: error: rule 'r': undefined macro 'later' (b.yaml defines it, but loads "
                              "after a.yaml: Falco compiles the rules after each file, so a file may use only the "
                              "macros defined in it or in a file that loads before it)"),
    # Undefined macro 'm1' used in filter.
    "macro using a macro of a later file": (macro("m2", "m1 and evt.num > 0"), macro("m1", "evt.num > 1"),
                                            "a.yaml:2:14: error: macro 'm2': undefined macro 'm1' (b.yaml defines "
                                            "it"),
    # filter_check called with nonexistent field proc.nam
    "broken macro a later file overrides": (macro("m", "proc.nam = x") + rule("r", "evt.num > 0 and m"),
                                            macro("m", "proc.name = x", override="replace"),
                                            "a.yaml:2:14: error: rule 'r' (through macro 'm'): unknown field proc.nam"),
    # unknown event type my_types
    "list of a later file": (rule("r", "evt.type in (my_types)"), rules_list("my_types", "open"),
                             "a.yaml:3:14: error: rule 'r': unknown event type 'my_types'"),
}  # fmt: skip


BASE = (rules_list("types", "open") + rules_list("more", "types, close") + macro("m", "evt.num > 0")
        + rule("by_macro", "m") + rule("by_list", "evt.type in (more)"))  # fmt: skip

# A later file that changes what items of the first file use, compiled before it; the first file, the second, and
# the end of our error (None: Falco loads both).
LATER_CHANGES = {
    # filter_check called with nonexistent field proc.nam
    "macro appended to": (BASE, macro("m", "and proc.nam = x", override="append"),
                          "rule 'by_macro' (through macro 'm'): unknown field proc.nam"),
    # unknown event type nope_type (the rule reaches types through more)
    "list appended to": (BASE, rules_list("types", "nope_type", override="append"),
                         "rule 'by_list': unknown event type 'nope_type'"),
    "rule appended to": (BASE, "- rule: by_macro\n  condition: and evt.type = nope_type\n  override:\n"
                               "    condition: append\n", "rule 'by_macro': unknown event type 'nope_type'"),
    "macro replaced with a good one": (BASE, macro("m", "evt.num > 3", override="replace"), None),
    "list appended to with an event type": (BASE, rules_list("types", "close", override="append"), None),
}  # fmt: skip
