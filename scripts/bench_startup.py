"""Warm start-up of the command line: ``diffagent select PROMPT --json`` against ``import diffagent.cli``.

Each command runs ``--runs`` times as a fresh process after one warm-up (the agent's cache exists, the files
are in the page cache), and the script prints the median and best wall time and CPU time of each, with the
load average, so that a figure measured on a shared machine says how shared it was.

    DIFFAGENT_HOME=.home .venv/bin/python scripts/bench_startup.py --runs 7 \
        --baseline OLD_CHECKOUT/src --baseline-home OLD_HOME

``--baseline`` runs the same two commands on another checkout's ``src`` (an earlier release) with its own
``DIFFAGENT_HOME``, in the same run, so that the figures sit side by side. The report ends with the median CPU
seconds of each stage of a warm select in this checkout (imports, loading the cached agent, the answer).
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

# Where a warm select spends its CPU, stage by stage, in a fresh process (printed as one JSON line).
_STAGES = """
import json, resource, sys
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
marks = [cpu()]
import diffagent.cli, diffagent.cli.select
from diffagent.catalog import Store
from diffagent.client import open_agent
from diffagent.config import store_path
marks.append(cpu())
import numpy, scipy.sparse
marks.append(cpu())
import diffagent.agents.default
marks.append(cpu())
store = Store(store_path())
agent = open_agent(store, "default")
marks.append(cpu())
agent.select(sys.argv[1]).model_dump_json()
marks.append(cpu())
names = ["import the CLI and its select command", "import numpy and scipy.sparse",
         "import the default agent", "open the store, load the cached agent", "answer"]
print(json.dumps({n: round(b - a, 3) for n, a, b in zip(names, marks, marks[1:])}))
"""


def _run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``command`` as a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--baseline", type=Path, help="the src folder of another checkout to time beside")
    parser.add_argument("--baseline-home", type=Path, help="DIFFAGENT_HOME for --baseline")
    args = parser.parse_args()
    select = [sys.executable, "-c", "from diffagent.cli import main; main()", "select", args.prompt, "--json"]
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "python -c 'import diffagent.cli'": ([sys.executable, "-c", "import diffagent.cli"], None),
        f"diffagent select {args.prompt!r} --json": (select, None),
    }
    if args.baseline is not None:
        env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve())}
        if args.baseline_home is not None:
            env["DIFFAGENT_HOME"] = str(args.baseline_home.resolve())
        for name, (command, _) in list(commands.items()):
            commands[f"baseline: {name}"] = (command, env)
    rows = {}
    for name, (command, env) in commands.items():
        _run(command, env)  # warm-up: builds the cache on a first use, fills the page cache
        samples = [_run(command, env) for _ in range(args.runs)]
        walls, cpus = [s[0] for s in samples], [s[1] for s in samples]
        rows[name] = {
            "wall_median_s": round(statistics.median(walls), 3),
            "wall_best_s": round(min(walls), 3),
            "cpu_median_s": round(statistics.median(cpus), 3),
        }
    stages = [
        json.loads(subprocess.run([sys.executable, "-c", _STAGES, args.prompt], check=True,
                                  capture_output=True, text=True).stdout)
        for _ in range(args.runs)
    ]  # fmt: skip
    cpu_by_stage = {name: round(statistics.median(s[name] for s in stages), 3) for name in stages[0]}
    report = {
        "runs": args.runs,
        "load_average": os.getloadavg(),
        "rows": rows,
        "cpu_by_stage_s": cpu_by_stage,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
