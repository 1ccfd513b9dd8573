"""How the default agent's accuracy grows with its training examples: model@1 / model@5 against data size.

    .venv/bin/python scripts/learning_curve.py [--store PATH] [--bench DIR] [--split val]

Builds the agent (index and ranker) from scratch on nested random subsets of the train split, whole
groups of equal normalised prompts at a time as DABench splits them, and scores each on the same split.
The slope of the last doublings says how much more data a target needs. The caches go to a temporary
``DIFFAGENT_HOME``, so the user's own are left alone. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from diffagent.agents.default.agent import build_default_agent
from diffagent.bench import ensure_bench, load_pairs
from diffagent.bench.metrics import candidate_models
from diffagent.bench.text import group_key
from diffagent.catalog import Store
from diffagent.config import store_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=None, help="catalogue (default: DIFFAGENT_HOME's)")
    parser.add_argument("--bench", type=Path, default=None, help="DABench folder (default: the home's)")
    parser.add_argument("--split", default="val", help="pairs to score on (val, test)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    store = Store(args.store or store_path())
    if store.is_empty():
        sys.exit("the catalogue is empty: run `diffagent catalog import PATH` first")
    bench = args.bench or ensure_bench(store)
    train = load_pairs(bench / "train.jsonl")
    scored = load_pairs(bench / f"{args.split}.jsonl")
    truth = [p.api.checkpoint.model_id for p in scored]
    groups = sorted({group_key(p.instruction) for p in train})
    random.Random(args.seed).shuffle(groups)
    os.environ["DIFFAGENT_HOME"] = tempfile.mkdtemp(prefix="diffagent-curve-")

    print(f"scored on {args.split}: {len(scored):,} pairs\n")
    print("| train pairs | share | model@1 | model@5 | build s |")
    print("|---:|---:|---:|---:|---:|")
    for fraction in sorted(args.fractions):
        keep = set(groups[: round(len(groups) * fraction)])
        subset = [p for p in train if group_key(p.instruction) in keep]
        began = time.perf_counter()
        agent = build_default_agent(store, subset, rebuild=True)
        built = time.perf_counter() - began
        ranked = [candidate_models(a) for a in agent.select_batch([p.instruction for p in scored], k=5)]
        at1 = sum(r[:1] == [t] for r, t in zip(ranked, truth, strict=True)) / len(truth)
        at5 = sum(t in r[:5] for r, t in zip(ranked, truth, strict=True)) / len(truth)
        print(f"| {len(subset):,} | {fraction:g} | {at1:.3f} | {at5:.3f} | {built:.0f} |", flush=True)


if __name__ == "__main__":
    main()
