"""Print the result of ``make mutation`` per module, from what mutmut keeps in mutants/.

``python tests/mutation_summary.py [capture read/version.py ...]``: the modules (or
packages) under src/sqlalchemy_chronicle to count; all that were mutated without
arguments. Killed counts timeouts too (the tests did not pass); the percentage is of the
mutants that were run. Not a test module: pytest does not collect it.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path("mutants/src/sqlalchemy_chronicle")

# mutmut's exit codes (mutmut/stats.py), reduced to what the summary shows.
STATUS = {0: "survived", 1: "killed", 3: "killed", 33: "no tests", 5: "no tests",
          36: "killed", 24: "killed", -24: "killed", 152: "killed", 255: "killed",
          None: "not run"}
COLUMNS = ("killed", "survived", "no tests", "not run", "other")


def main(selection: list[str]) -> int:
    prefixes = [s.removesuffix(".py") for s in selection]
    rows = []
    for meta in sorted(ROOT.rglob("*.py.meta")):
        module = meta.relative_to(ROOT).as_posix().removesuffix(".py.meta")
        if prefixes and not any(module == p or module.startswith(p + "/") for p in prefixes):
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        counts = Counter(STATUS.get(code, "other") for code in codes.values())
        rows.append((module, len(codes), counts))
    if not rows:
        print("no mutmut results under mutants/: run `make mutation` first")
        return 1
    print(f"{'module':28} {'mutants':>7} " + " ".join(f"{c:>8}" for c in COLUMNS) + "   killed%")
    total: Counter[str] = Counter()
    for module, n, counts in rows:
        total.update(counts)
        print(_line(module, n, counts))
    print(_line("total", sum(n for _, n, _ in rows), total))
    return 0


def _line(name: str, n: int, counts: Counter[str]) -> str:
    run = counts["killed"] + counts["survived"]
    share = f"{100 * counts['killed'] / run:8.1f}" if run else "       -"
    return f"{name:28} {n:7} " + " ".join(f"{counts[c]:8}" for c in COLUMNS) + "  " + share


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
