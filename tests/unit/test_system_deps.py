"""scripts/system-deps.sh: what `make demo` and `make test` need from the machine, checked before anything else."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "system-deps.sh"
MISSING = "falco-operator-no-such-package"


def run_as_a_user(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the script as an unprivileged user (``nobody`` through ``setpriv`` when the tests run as root); the
    ``sudo `` prefix the printed command should then have."""
    command = [str(SCRIPT), *args]
    env = dict(os.environ)
    prefix = "sudo "
    if os.getuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv:
            command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        else:  # root without setpriv: the switch that keeps root from installing, and no sudo in the command
            env["SYSTEM_DEPS_INSTALL"] = "no"
            prefix = ""
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, cwd="/")
    return result, prefix


def test_a_user_missing_a_package_gets_the_one_apt_command_to_run_and_a_failure() -> None:
    result, sudo = run_as_a_user(MISSING)
    assert result.returncode == 1, result
    expected = f"{sudo}apt-get update && {sudo}apt-get install -y --no-install-recommends {MISSING}\n"
    assert expected in result.stderr, result.stderr
    assert "docker-registry" not in result.stderr  # installed here: only what is missing is named


def test_root_told_not_to_install_reports_instead_of_installing() -> None:
    env = dict(os.environ, SYSTEM_DEPS_INSTALL="no")
    result = subprocess.run([str(SCRIPT), MISSING], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1, result
    assert f"apt-get install -y --no-install-recommends {MISSING}" in result.stderr
    assert "installing" not in result.stderr


def test_with_everything_installed_it_says_nothing_and_is_quick() -> None:
    started = time.monotonic()
    result, _ = run_as_a_user()
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert time.monotonic() - started < 2


def test_make_demo_and_make_test_check_the_machine_first_and_ci_uses_the_same_script() -> None:
    # Run as a user would, not as a sub-make of `make test` (which prints "Entering directory" lines).
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    for target in ("demo", "test"):
        planned = subprocess.run(
            ["make", "--dry-run", target], capture_output=True, text=True, cwd=ROOT, timeout=60, env=env
        )
        assert planned.stdout.splitlines()[0] == "scripts/system-deps.sh", planned.stdout
    assert "scripts/system-deps.sh make git" in (ROOT / ".ci" / "run").read_text()
