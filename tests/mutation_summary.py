"""Print the result of ``make mutation`` per module, from what mutmut keeps in mutants/.

``python tests/mutation_summary.py [capture read/version.py ...]``: the modules (or
packages) under src/sqlalchemy_chronicle to count; all that were mutated without
arguments. Killed counts timeouts too (the tests did not pass); the percentage is of the
mutants that were run, those that no test reaches included. Not a test module: pytest
does not collect it.

``--every N`` prints instead the names of every Nth mutant of each function of those
modules (its 1st, N+1th, ...): a fixed sample, for a run shorter than all of them::

    python tests/mutation_summary.py --every 3 capture/writer.py \\
        | xargs -d '\\n' .venv/bin/mutmut run
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


def main(args: list[str]) -> int:
    every = 0
    if args[:1] == ["--every"]:
        every, args = int(args[1]), args[2:]
    prefixes = [s.removesuffix(".py") for s in args]
    rows = []
    for meta in sorted(ROOT.rglob("*.py.meta")):
        module = meta.relative_to(ROOT).as_posix().removesuffix(".py.meta")
        if prefixes and not any(module == p or module.startswith(p + "/") for p in prefixes):
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if every:
            for name in codes:
                if (int(name.rsplit("__mutmut_", 1)[1]) - 1) % every == 0:
                    print(name)
            continue
        if not codes:
            continue
        counts = Counter(STATUS.get(code, "other") for code in codes.values())
        rows.append((module, len(codes), counts))
    if every:
        return 0
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
    run = counts["killed"] + counts["survived"] + counts["no tests"] + counts["other"]
    share = f"{100 * counts['killed'] / run:8.1f}" if run else "       -"
    return f"{name:28} {n:7} " + " ".join(f"{counts[c]:8}" for c in COLUMNS) + "  " + share


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
