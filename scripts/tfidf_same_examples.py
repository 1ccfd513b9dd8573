"""TF-IDF nearest-neighbour vote over the default agent's own examples, against the agent, on DABench test.

    DIFFAGENT_HOME=.home python scripts/tfidf_same_examples.py [--learn-from train|train+val]

The ``tfidf`` baseline of ``scripts/benchmark.py`` learns from DABench's pairs only, while the default agent
also learns from the catalogue's other images (the safe images of checkpoint pages). This script scores
the baseline's rule over the agent's examples: the 25 most similar example prompts (the agent's own word
TF-IDF, among its 100 nearest) vote with their similarity for the checkpoint that made them, with
explicit and real-person models allowed (the setting of the issue's accuracy targets). It prints model@1
overall and on the novel test pairs, for the vote over every example, over the pairs only (about the
baseline's own figure), and for the agent itself.
"""

from __future__ import annotations

import argparse

import numpy as np

from diffagent.agents.default.agent import build_default_agent
from diffagent.bench import ensure_bench, load_pairs
from diffagent.catalog import Store
from diffagent.config import store_path

_VOTERS = 25
"""As many neighbours as the tfidf baseline's vote."""
_PAIR = 0
"""``Examples.kind`` of a DABench pair (1: a checkpoint-page image)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learn-from", default="train", choices=("train", "train+val"))
    args = parser.parse_args()
    store = Store(store_path())
    bench = ensure_bench(store)
    learn = [p for split in args.learn_from.split("+") for p in load_pairs(bench / f"{split}.jsonl")]
    test = load_pairs(bench / "test.jsonl")
    agent = build_default_agent(store, learn, allow_nsfw=True, allow_poi=True, workers=1)
    index = agent.index
    model_ids = index.checkpoints.model_ids
    truth = np.array([p.api.checkpoint.model_id for p in test])
    novel = np.array([bool(p.novel) for p in test])
    picks: dict[str, list[int]] = {"every example": [], "DABench pairs only": []}
    for start in range(0, len(test), 256):
        sig = index.signals([p.instruction for p in test[start : start + 256]])
        for neighbours, sims in zip(sig.neighbours, sig.sims, strict=True):
            for name, keep in zip(picks, (None, _PAIR), strict=True):
                mine = (
                    np.ones(len(neighbours), dtype=bool)
                    if keep is None
                    else index.examples.kind[neighbours] == keep
                )
                near, weight = neighbours[mine][:_VOTERS], sims[mine][:_VOTERS]
                shared = weight > 0
                votes = np.bincount(
                    index.examples.model[near[shared]], weights=weight[shared], minlength=len(model_ids)
                )
                picks[name].append(int(model_ids[np.argmax(votes)]) if shared.any() else -1)
    answers = agent.select_batch([p.instruction for p in test])
    agent.close()
    picks["default agent"] = [a.api.checkpoint.model_id for a in answers]
    print(
        f"DABench test, {len(test):,} pairs ({novel.sum():,} novel),"
        f" learning from {args.learn_from}, both flags"
    )
    for name, chosen in picks.items():
        hit = np.array(chosen) == truth
        print(f"{name:>20}: model@1 {hit.mean():.3f}, novel model@1 {hit[novel].mean():.3f}")


if __name__ == "__main__":
    main()
