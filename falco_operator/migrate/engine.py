"""``driver.*`` -> ``spec.engine``."""

from __future__ import annotations

from typing import Any

from .findings import Context

Json = dict[str, Any]
ALIASES = {"module": "kmod", "modern-bpf": "modern_ebpf"}
SUPPORTED = ("kmod", "modern_ebpf", "auto")
# spec.engine's options and the chart's values that set them, per chart option group.
OPTIONS = {
    "bufSizePreset": "bufSizePreset",
    "dropFailedExit": "dropFailedExit",
    "cpusForEachBuffer": "cpusForEachBuffer",
}
GROUP_OPTIONS = {
    "kmod": ("bufSizePreset", "dropFailedExit"),
    "modernEbpf": ("bufSizePreset", "dropFailedExit", "cpusForEachBuffer"),
}
GROUPS_READ = {"kmod": ("kmod",), "modern_ebpf": ("modernEbpf",), "auto": ("modernEbpf", "kmod")}
"""The option groups the chart writes into falco.yaml's engine for each kind (auto: both)."""


def engine_kind(context: Context) -> str | None:
    """The engine kind the chart runs: nodriver without a driver, the kind (aliases resolved), None if refused."""
    if not context.get("driver.enabled"):
        return "nodriver"
    kind = str(context.get("driver.kind"))
    kind = ALIASES.get(kind, kind)
    return kind if kind in SUPPORTED else None


def engine_spec(context: Context) -> Json | None:
    context.handle("driver.enabled", "driver.kind", "driver.kmod", "driver.modernEbpf")
    kind = engine_kind(context)
    if kind is None:
        context.unmapped(
            "driver.kind",
            f"the chart refuses {context.get('driver.kind')!r} (it supports {', '.join(SUPPORTED)}): no engine is set",
        )
        return None
    engine: Json = {"kind": kind}
    read = GROUPS_READ.get(kind, ())
    for group, options in GROUP_OPTIONS.items():
        for option in options:
            path = f"driver.{group}.{option}"
            if not context.changed(path):
                continue
            if group not in read:
                context.unmapped(path, f"the chart ignores it with driver.kind {kind}, and so does the migration")
            elif group != read[0] and context.get(path) != context.get(f"driver.{read[0]}.{option}"):
                context.unmapped(
                    path, f"spec.engine has one {option} for every driver of {kind}: the driver.{read[0]} value is used"
                )
            else:
                engine[OPTIONS[option]] = context.get(path)
    if context.get("driver.modernEbpf.leastPrivileged"):
        if kind == "modern_ebpf":
            engine["leastPrivileged"] = True
        else:
            context.unmapped(
                "driver.modernEbpf.leastPrivileged",
                f"the chart applies it to modern_ebpf only, not to {kind}: ignored, as by the chart",
            )
    if context.changed("driver.modernEbpf.disableIterators"):
        context.unmapped(
            "driver.modernEbpf.disableIterators",
            "spec.engine has no such option, and engine is the operator's key of falco.yaml (a Config cannot set it)",
        )
    if context.changed("driver.modernEbpf.sysfsMount"):
        context.unmapped("driver.modernEbpf.sysfsMount", "the operator decides the host mounts of each engine kind")
    if context.changed("driver.sysfsMountPath"):
        context.unmapped("driver.sysfsMountPath", "the operator decides the host mounts of each engine kind")
    context.handle("driver.sysfsMountPath")
    return engine
