"""Benchmark: validating Falco's default rules plus the incubating rules, cold and warm, next to ``falco -V``.

Cold: a fresh interpreter that imports the validator, loads the field catalogue and checks the files once (what
``falco-operator lint`` costs). Warm: the same check again in one process, on content it has not seen (each round
adds a comment line to each file, so the parsed-document memo does not answer): what an agent pays per change.
Falco: ``falco -V`` on the same files (the harness's Falco, with the container plugin).

Run: ``.venv/bin/python -m bench.rules_validation [--rounds 5]`` (figures depend on the machine; the ratio to
Falco is the figure to compare).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from e2e.falco import find_falco, validate_rules

RULES = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "falco-rules"
FILES = [RULES / "falco_rules.yaml", RULES / "falco-incubating_rules.yaml"]
COLD = """
import sys, time
started = time.perf_counter()
from falco_operator.artifacts import parse_rules
from falco_operator.artifacts.rules import RulesFile, check_rule_set
files = [RulesFile(p, parse_rules(open(p, 'rb').read())) for p in sys.argv[1:]]
errors = [f for f in check_rule_set(files) if f.severity == 'error']
assert not errors, errors
print(time.perf_counter() - started)
"""


def warm_once(round_number: int) -> tuple[float, float]:
    from falco_operator.artifacts import parse_rules
    from falco_operator.artifacts.rules import RulesFile, check_rule_set

    contents = [(path, path.read_bytes() + f"\n# round {round_number}\n".encode()) for path in FILES]
    started = time.perf_counter()
    files = [RulesFile(str(path), parse_rules(data)) for path, data in contents]
    parsed = time.perf_counter()
    errors = [finding for finding in check_rule_set(files) if finding.severity == "error"]
    assert not errors, errors
    return parsed - started, time.perf_counter() - parsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    cold = [float(subprocess.run([sys.executable, "-c", COLD, *map(str, FILES)], capture_output=True, text=True,
                                 check=True, cwd=root).stdout) for _ in range(args.rounds)]  # fmt: skip
    warm_once(0)
    warm = [warm_once(number) for number in range(1, args.rounds + 1)]
    binaries = find_falco()
    falco = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        assert validate_rules(FILES, binaries=binaries).successful
        falco.append(time.perf_counter() - started)
    yaml_ms = statistics.median(w[0] for w in warm) * 1000
    check_ms = statistics.median(w[1] for w in warm) * 1000
    falco_ms = statistics.median(falco) * 1000
    print(f"default + incubating rules ({sum(path.stat().st_size for path in FILES) // 1024} KiB), median of "
          f"{args.rounds}:")  # fmt: skip
    print(f"  cold (new process: imports, catalogue, YAML, check)   {statistics.median(cold) * 1000:7.0f} ms")
    print(f"  warm (YAML with line numbers + rule-set check)        {yaml_ms + check_ms:7.0f} ms "
          f"(YAML {yaml_ms:.0f} ms, check {check_ms:.0f} ms)")  # fmt: skip
    print(f"  falco -V (process start, load, compile)                {falco_ms:7.0f} ms")
    print(f"  warm / falco -V                                         {(yaml_ms + check_ms) / falco_ms:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
