"""Measure the default agent against the baselines: accuracy, parameters, hallucination, speed, build, memory.

    .venv/bin/python scripts/bench_default.py [--store PATH] [--bench DIR] [--agents default tfidf ...]

Steps, in one process: (1) build the default agent's index and train its ranker from scratch on the
bench's train split, once alone and once with the ranker's features made by ``--workers`` processes
(timed: the "build + train" target; the same ranker, checked); (2) score it and each other agent on the
test split with the same harness as ``diffagent eval`` (model@1/@5, params, hallucination, p50/p95
latency, prompts/s; everything also on the novel subset); (3) answer the 10,000 DiffusionDB prompts in
batch with the default agent (hallucination on out-of-catalogue prompts, throughput), in one process and
then shared among the workers (the same answers, checked); (4) report the peak resident memory after the
default agent's work, before other agents load, the largest worker's (which counts the pages it shares
with this process), and the largest total proportional set size of this process and its workers during
the shared batch (each shared page counted once). Prints a markdown table; ``--json`` writes every
number to a file.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

from diffagent.agents import load_agent
from diffagent.agents.default.agent import build_default_agent
from diffagent.bench import ensure_bench, load_pairs
from diffagent.bench.evaluate import evaluate, render_markdown, spread
from diffagent.catalog import Store, is_hallucination
from diffagent.config import store_path
from diffagent.reward import ProxyReward

DIFFUSIONDB = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "diffusiondb-prompts" / "prompts-10k.json"
)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _PeakPss:
    """The largest total proportional set size of ``pids`` (pages shared by n of them count 1/n to each),
    sampled every 0.2 s while the block runs: what a batch shared among workers really holds (Linux)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.peak, self._done = pids, 0.0, threading.Event()

    def _total(self) -> float:
        total = 0.0
        for pid in self.pids:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        return total

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            self.peak = max(self.peak, self._total())

    def __enter__(self) -> _PeakPss:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=None, help="catalogue (default: DIFFAGENT_HOME's)")
    parser.add_argument(
        "--bench", type=Path, default=None, help="DABench folder (default: built in the home)"
    )
    parser.add_argument("--split", default="test", help="pairs to score on (test, val)")
    parser.add_argument("--agents", nargs="+", default=["default", "tfidf", "keyword", "popular", "random"])
    parser.add_argument("--limit", type=int, default=None, help="score at most N pairs, spread over the file")
    parser.add_argument("--latency-prompts", type=int, default=200)
    parser.add_argument("--diffusiondb", type=Path, default=DIFFUSIONDB)
    parser.add_argument("--workers", type=int, default=2, help="processes for the shared build and batch")
    parser.add_argument("--json", type=Path, default=None, help="write all numbers here")
    args = parser.parse_args()

    store = Store(args.store or store_path())
    if store.is_empty():
        sys.exit("the catalogue is empty: run `diffagent catalog import PATH` first")
    bench = args.bench or ensure_bench(store)
    train = load_pairs(bench / "train.jsonl")
    pairs = spread(load_pairs(bench / f"{args.split}.jsonl"), args.limit)
    out: dict = {"store": str(store.path), "bench": str(bench), "split": args.split, "pairs": len(pairs)}
    reward = ProxyReward(store)
    rows = []
    for name in args.agents:
        began = time.perf_counter()
        if name == "default":
            alone = build_default_agent(store, train, rebuild=True).index
            out["default_build_s"] = round(time.perf_counter() - began, 1)
            out["default_report"] = alone.report
            model, alone = alone.ranker.model, None  # one index in memory at a time
            gc.collect()
            began = time.perf_counter()  # again, its ranker's features made by the workers
            shared = build_default_agent(store, train, rebuild=True, workers=args.workers)
            out[f"default_build_s_{shared.workers}_workers"] = round(time.perf_counter() - began, 1)
            out["same_ranker_shared"] = shared.index.ranker.model == model
            agent = build_default_agent(store, train)  # the same index, answering in this process
        else:
            agent = load_agent(name, store, train)
        print(f"{name}: ready in {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
        rows.append(
            evaluate(agent, pairs, store, name=name, latency_prompts=args.latency_prompts, reward=reward)
        )
        if name == "default" and args.diffusiondb.is_file():
            prompts = [item["text"] for item in json.loads(args.diffusiondb.read_text())]
            prompts = [p for p in prompts if p.strip()]
            began = time.perf_counter()
            answers = agent.select_batch(prompts)
            seconds = time.perf_counter() - began
            out["diffusiondb"] = {
                "prompts": len(prompts),
                "prompts_per_s": round(len(prompts) / seconds, 1),
                "hallucination": sum(is_hallucination(store, a.api) for a in answers) / len(answers),
                "low_confidence": sum(a.low_confidence for a in answers) / len(answers),
            }
            shared.select_batch(prompts[:256])  # the workers start (fork) outside the timing
            pids = [os.getpid(), *shared.worker_pids]
            with _PeakPss(pids) as pss:
                began = time.perf_counter()
                again = shared.select_batch(prompts)
                seconds = time.perf_counter() - began
            shared.close()
            out["shared_batch_pss_mb"] = round(pss.peak)
            out["diffusiondb"][f"prompts_per_s_{shared.workers}_workers"] = round(len(prompts) / seconds, 1)
            out["diffusiondb"]["same_answers_shared"] = again == answers
            out["worker_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
        if name == "default":
            out["default_peak_rss_mb"] = round(_peak_mb())
        print(f"{name}: scored", file=sys.stderr, flush=True)
    out["rows"] = rows
    out["cpu"] = f"{os.cpu_count()} cores"
    print(render_markdown(rows))
    for key, value in out.items():
        if key.startswith(("default_", "same_", "worker_", "shared_", "diffusiondb")):
            print(f"{key}: {json.dumps(value)}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
