"""Falco's condition language: what parses, the tree it gives, and where it stops with which message."""

from __future__ import annotations

import pytest

from falco_operator.artifacts.rules.condition import (
    BoolOp,
    Check,
    ConditionError,
    FieldRef,
    ListValue,
    MacroRef,
    Not,
    Transformer,
    Value,
    parse_condition,
    parse_field_prefix,
    walk,
)


@pytest.mark.parametrize(
    "condition",
    [
        "evt.type in (open, openat) and fd.name startswith /etc",
        "not proc.name in (sshd) or not(container.id = host)",
        "proc.aname[2] = bash and evt.arg.flags contains O_CREAT and evt.arg[1] exists",
        "k8s.pod.label[app.kubernetes.io/name] = nginx and json.value[/user/name] = 'x'",
        'proc.cmdline contains "python -c \\"print(1)\\"" and fd.name glob \'/home/*/.ssh/*\'',
        "tolower(proc.name) = bash and len(proc.args) > 3 and b64(fd.name) != x and basename(proc.exe) = sh",
        "proc.name = val(proc.pname) and proc.pid > 0x10 and proc.pid <= -1.5e+3",
        "fd.name startswith oneof (/etc, /usr) and proc.name icontains anyof (a, b)",
        "proc.args intersects (a, b) and fd.name pmatch (/etc, /usr) and fd.name regex '^/etc/.*'",
        "spawned_process and (shell_procs or never_true)",
        "evt.type = execve and proc.name in ()",
        "fd.name bstartswith 2f6574 and evt.buffer bcontains 6869",
        "(((evt.num > 0)))",
        "evt.type=execve and(proc.name=bash)or(proc.name=sh)",
    ],
)
def test_falco_conditions_parse(condition: str) -> None:
    parse_condition(condition)


def test_tree_shape() -> None:
    tree = parse_condition("spawned_process and not proc.name in (bash, 'sh') or tolower(fd.name) = x")
    assert isinstance(tree, BoolOp)
    assert tree.operator == "or"
    left, right = tree.children
    assert isinstance(left, BoolOp)
    assert isinstance(left.children[0], MacroRef)
    negated = left.children[1]
    assert isinstance(negated, Not)
    assert isinstance(negated.child, Check)
    assert negated.child.operator == "in"
    assert isinstance(negated.child.right, ListValue)
    assert negated.child.right.items == ("bash", "sh")
    assert isinstance(right, Check)
    assert isinstance(right.left, Transformer)
    assert isinstance(right.right, Value)
    fields = [node.name for node in walk(tree) if isinstance(node, FieldRef)]
    assert fields == ["proc.name", "fd.name"]


def test_field_arguments_and_modifiers() -> None:
    tree = parse_condition("proc.aname[2] = bash and fd.name startswith oneof (/a, /b)")
    checks = [node for node in walk(tree) if isinstance(node, Check)]
    assert isinstance(checks[0].left, FieldRef)
    assert (checks[0].left.name, checks[0].left.arg) == ("proc.aname", "2")
    assert checks[1].operator == "startswith oneof"


@pytest.mark.parametrize(
    ("condition", "message", "line", "col"),
    [
        ("", "filter input string is empty", 1, 1),
        ("(proc.name = bash", "expected a ')' token", 1, 18),
        ("proc.name = bash)", "unexpected token after 'bash', expecting 'or', 'and'", 1, 17),
        ("proc.name <> bash", "expected a number value", 1, 12),
        ("proc.name within (a)", "expected a valid check operator", 1, 11),
        ("proc.name startswith/etc", "expected a valid check operator", 1, 11),
        ("proc.name = a andproc.pid = 1", "expected blank or '(' after 'and'", 1, 18),
        ("proc.name = ", "expected a string value", 1, 13),
        ("proc.aname[2 = bash", "expected a ']' token", 1, 13),
        ("evt.type in (a, b", "expected a ')' token", 1, 18),
        ('proc.name = "a\\qb"', "unsupported string escape sequence: \\q", 1, 13),
        ("proc.name = 'a\\\"b'", "invalid \\\" escape in '-quoted string", 1, 13),
        ("evt.num > 1 and\n  (proc.name = ", "expected a string value", 2, 16),
        ("= bash", "expected a '(' token, a field check, or an identifier", 1, 1),
    ],
)
def test_errors_carry_falcos_message_and_position(condition: str, message: str, line: int, col: int) -> None:
    with pytest.raises(ConditionError) as raised:
        parse_condition(condition)
    assert message in raised.value.message
    assert (raised.value.position.line, raised.value.position.col) == (line, col)


def test_depth_is_capped() -> None:
    with pytest.raises(ConditionError, match="exceeded max depth"):
        parse_condition("(" * 200 + "evt.num > 0" + ")" * 200)


def test_output_tokens_take_the_longest_field() -> None:
    node, consumed = parse_field_prefix("proc.aname[2] rest")
    assert isinstance(node, FieldRef)
    assert (node.name, node.arg, consumed) == ("proc.aname", "2", 13)
