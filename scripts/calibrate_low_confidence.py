"""Calibrate the default agent's low-confidence threshold on DABench val: precision and recall per threshold.

    python scripts/calibrate_low_confidence.py [--split val] [--limit N]

An answer counts as wrong when its checkpoint misses the pair's (model@1). For each threshold on the
ranker's probability of its pick (``alternatives[0].score``), the table gives how many answers would be
flagged, the share of flagged answers that are wrong (precision) and the share of wrong answers flagged
(recall); ``LOW_CHANCE`` in ``agents/default/agent.py`` is set from it. The agent learns from train only.
"""

from __future__ import annotations

import argparse

from diffagent.agents.default.agent import build_default_agent
from diffagent.bench import ensure_bench, load_pairs
from diffagent.bench.evaluate import spread
from diffagent.catalog import Store
from diffagent.config import store_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    with Store(store_path()) as store:
        bench = ensure_bench(store)
        agent = build_default_agent(store, load_pairs(bench / "train.jsonl"))
        agent.general_fallback = False  # the ranker's own pick, whose probability the threshold reads
        pairs = spread(load_pairs(bench / f"{args.split}.jsonl"), args.limit)
        answers = agent.select_batch([p.instruction for p in pairs])
    wrong = [
        a.api.checkpoint.model_id != p.api.checkpoint.model_id for a, p in zip(answers, pairs, strict=True)
    ]
    chance = [a.alternatives[0].score for a in answers]
    flagged_now = [a.low_confidence for a in answers]
    print(f"{len(pairs)} {args.split} pairs, {sum(wrong)} wrong (model@1 {1 - sum(wrong) / len(pairs):.3f})")
    print(
        f"as shipped: {sum(flagged_now)} flagged, "
        f"precision {_share(flagged_now, wrong)}, recall {_share(wrong, flagged_now)}"
    )
    print("| threshold | flagged | precision | recall |\n|---:|---:|---:|---:|")
    for threshold in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5):
        flags = [c < threshold for c in chance]
        print(f"| {threshold:.2f} | {sum(flags)} | {_share(flags, wrong)} | {_share(wrong, flags)} |")


def _share(of: list[bool], hit: list[bool]) -> str:
    """Among the ``of`` answers, the share that are also ``hit``."""
    total = sum(of)
    return f"{sum(o and h for o, h in zip(of, hit, strict=True)) / total:.3f}" if total else "–"


if __name__ == "__main__":
    main()
