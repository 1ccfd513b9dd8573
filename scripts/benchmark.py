"""Benchmark agents on the DABench test split (all pairs and the novel subset) and write a markdown report.

    python scripts/benchmark.py --out docs/benchmarks.md            # the four baselines (+ default)
    python scripts/benchmark.py --agent tfidf --agent default --out /tmp/b.md

Agents learn from the bench's train split only (as ``diffagent eval`` does), or with ``--learn-from
train+val`` from train and val (the final fit once val has chosen the settings: test's ``novel`` flags
are then taken against both, so that a test prompt close to a val one is not called novel). The report
carries the exact command, the date, the machine (CPU model, cores, memory, load), the catalogue and bench
it ran on, and the table of ``diffagent eval`` (see ``diffagent.bench.evaluate`` for every column).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from diffagent._fork import usable_cores, worker_count
from diffagent._io import atomic_open
from diffagent.agents import AGENT_NAMES, load_agent
from diffagent.bench import ensure_bench, load_pairs
from diffagent.bench.build import novel_flags
from diffagent.bench.evaluate import evaluate, render_markdown, spread
from diffagent.bench.intents import INTENT_LABELS, load_intent_set
from diffagent.bench.pairs import PairFiles
from diffagent.bench.usersees import UserChecks
from diffagent.catalog import Store
from diffagent.cli._common import progress_bar
from diffagent.cli.evaluate import default_agents
from diffagent.config import store_path
from diffagent.reward import ProxyReward


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def machine() -> str:
    """One line on the hardware and how busy it was, since latency and throughput depend on both."""
    cores = usable_cores()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{_cpu_model()}, {cores} cores available, {_memory_gib()} RAM, load average at start {load}; "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--agent", action="append", choices=AGENT_NAMES, help="repeatable (default: baselines)"
    )
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    parser.add_argument("--limit", type=int, default=None, help="score at most N test pairs, spread evenly")
    parser.add_argument("--latency-prompts", type=int, default=200, help="prompts timed one at a time")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--allow-nsfw", action="store_true", help="let agents name explicit models")
    parser.add_argument("--allow-poi", action="store_true", help="let agents name real-person models")
    parser.add_argument(
        "--learn-from", choices=("train", "train+val"), default="train", help="the splits agents learn from"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes sharing the default agent's batches (0: per core)"
    )
    parser.add_argument(
        "--intent-prompts",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared/data/diffusiondb-prompts/prompts-10k.json",
        help="DiffusionDB prompts for the labelled intent set (rows 'intents'); skipped when missing",
    )
    args = parser.parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    started = dt.datetime.now(dt.UTC)
    host = machine()

    with Store(store_path()) as store:
        if store.is_empty():
            print("error: the catalogue is empty: run `diffagent catalog import PATH` first", file=sys.stderr)
            return 2
        with progress_bar("building DABench") as update:
            folder = ensure_bench(store, progress=update)
        splits = args.learn_from.split("+")
        train = PairFiles(folder, splits)
        test = load_pairs(folder / "test.jsonl")
        if splits != ["train"]:
            novel = novel_flags([p.instruction for p in test], [p.instruction for p in train])
            test = [pair.model_copy(update={"novel": flag}) for pair, flag in zip(test, novel, strict=True)]
        test = spread(test, args.limit)
        reward = ProxyReward(store)
        checks = UserChecks(store)
        intents = load_intent_set(INTENT_LABELS, args.intent_prompts) if args.intent_prompts.is_file() else []
        safety = {"allow_nsfw": args.allow_nsfw, "allow_poi": args.allow_poi}
        rows = []
        for name in args.agent or default_agents():
            began = time.perf_counter()
            options = {} if name == "llm" else dict(safety)
            if name == "default":
                options["workers"] = args.workers
            agent = load_agent(name, store, train, **options)
            built = time.perf_counter() - began
            with progress_bar(f"evaluating {name}") as update:
                row = evaluate(
                    agent,
                    test,
                    store,
                    name=name,
                    latency_prompts=args.latency_prompts,
                    reward=reward,
                    progress=update,
                    intents=intents,
                    checks=checks,
                )
            print(f"{name}: built in {built:.1f} s, evaluated in {time.perf_counter() - began - built:.1f} s",
                  file=sys.stderr)  # fmt: skip
            agent.close()
            rows.append(row)
        stats = store.stats()
        revision = store.revision

    manifest = json.loads((folder / "manifest.json").read_text())
    workers = worker_count(args.workers)
    shared = f", the default agent's shared among {workers} processes" if workers > 1 else ""
    report = [
        "## DABench test split",
        "",
        f"- command: `{command}`",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {host}",
        f"- catalogue: {stats['models']:,} models, {stats['versions']:,} versions, "
        f"{stats['images']:,} images (store revision {revision})",
        f"- bench: {manifest['pairs']['train']:,} train / {manifest['pairs']['val']:,} val / "
        f"{manifest['pairs']['test']:,} test pairs; scored: {len(test):,} test pairs, "
        f"{sum(bool(p.novel) for p in test):,} of them novel; agents learn from {' and '.join(splits)}",
        f"- latency: warm, one prompt at a time, on up to {args.latency_prompts} prompts (and as many "
        f"novel ones); prompts/s: `select_batch` over every scored prompt{shared}",
        f"- safety: explicit models {'allowed' if args.allow_nsfw else 'out'}, real-person models "
        f"{'allowed' if args.allow_poi else 'out'}; `intents`: {len(intents)} labelled DiffusionDB prompts "
        "(docs/intent-rules.md), user metrics only",
        "",
        render_markdown(rows).rstrip("\n"),
        "",
    ]
    with atomic_open(args.out) as handle:
        handle.write("\n".join(report))
    if args.json_out is not None:
        with atomic_open(args.json_out) as handle:
            json.dump({"rows": rows}, handle, indent=1)
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
