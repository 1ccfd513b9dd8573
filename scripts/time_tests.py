"""Time the test suite with and without the shared Civitai dump, and with or without the slow tests.

Each variant runs pytest in a fresh process and reports its wall time, the CPU time the process and its
children used (a figure that depends less on what else the machine is doing), and pytest's own counts.
``DIFFAGENT_TEST_DUMP=none`` makes ``tests/conftest.py`` use the fixture catalogue in ``tests/fixtures``
even where ``../shared`` is present, which is how a clone without the shared data runs.

    python scripts/time_tests.py                      # four variants: {dump, fixture} x {all, not slow}
    python scripts/time_tests.py --variant fixture    # one of: dump, fixture, dump-fast, fixture-fast
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "dump": ({}, []),
    "fixture": ({"DIFFAGENT_TEST_DUMP": "none"}, []),
    "dump-fast": ({}, ["-m", "not slow"]),
    "fixture-fast": ({"DIFFAGENT_TEST_DUMP": "none"}, ["-m", "not slow"]),
}


def run(variant: str) -> dict:
    """One pytest run of the whole suite; its timings and counts."""
    extra_env, args = VARIANTS[variant]
    env = {**os.environ, **extra_env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    counts = {
        word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", summary)
    }
    return {
        "variant": variant,
        "exit": done.returncode,
        "wall_s": round(wall, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        **{k: counts.get(k, 0) for k in ("passed", "failed", "skipped", "deselected")},
        "summary": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append", help="default: all four")
    parser.add_argument("--json", action="store_true", help="one JSON object a line instead of a table")
    options = parser.parse_args()
    rows = []
    for variant in options.variant or list(VARIANTS):
        row = run(variant)
        rows.append(row)
        print(json.dumps(row) if options.json else row["summary"], file=sys.stderr, flush=True)
    if options.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(
        f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    print("| variant | passed | skipped | deselected | failed | wall s | CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['passed']} | {r['skipped']} | {r['deselected']} | {r['failed']} "
              f"| {r['wall_s']} | {r['cpu_s']} |")  # fmt: skip


if __name__ == "__main__":
    main()
