"""Warm start-up of the command line: ``diffagent select PROMPT --json`` against ``import diffagent.cli``.

Each command runs ``--runs`` times as a fresh process after one warm-up (the agent's cache exists, the files
are in the page cache), and the script prints the median and best wall time and CPU time of each, with the
load average, so that a figure measured on a shared machine says how shared it was.

    DIFFAGENT_HOME=.home .venv/bin/python scripts/bench_startup.py --runs 7
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPT = "a cozy cabin in the woods"


def _run(command: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``command`` as a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--prompt", default=PROMPT)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    commands = {
        "python -c 'import diffagent.cli'": [sys.executable, "-c", "import diffagent.cli"],
        f"diffagent select {args.prompt!r} --json": [
            str(bin_dir / "diffagent"),
            "select",
            args.prompt,
            "--json",
        ],
    }
    rows = {}
    for name, command in commands.items():
        _run(command)  # warm-up: builds the cache on a first use, fills the page cache
        samples = [_run(command) for _ in range(args.runs)]
        walls, cpus = [s[0] for s in samples], [s[1] for s in samples]
        rows[name] = {
            "wall_median_s": round(statistics.median(walls), 3),
            "wall_best_s": round(min(walls), 3),
            "cpu_median_s": round(statistics.median(cpus), 3),
        }
    print(json.dumps({"runs": args.runs, "load_average": os.getloadavg(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
