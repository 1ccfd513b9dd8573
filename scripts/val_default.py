"""The default agent on DABench val, for deciding changes: accuracy, settings, the intent set, batch speed.

    DIFFAGENT_HOME=.home python scripts/val_default.py [--limit N] [--rebuild] [--answers PREFIX]

The agent learns from the train split (its cached index, built first if missing; ``--rebuild`` retrains
it). For the safe default and for ``--allow-nsfw --allow-poi`` it prints one JSON line: model@1, model@5,
params and its parts on the val pairs (``--limit`` spreads N of them over the file), model@1 and model@5 on
the val prompts that DABench's rule would call novel against train, the user metrics on the labelled
intent set, and prompts per second of ``select_batch`` on the val prompts. ``--answers PREFIX`` also
writes every answer (the batch, then the first 30 one at a time) to ``PREFIX-safe.jsonl`` and
``PREFIX-all.jsonl``, so that two checkouts can be compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from diffagent.agents.default.agent import build_default_agent
from diffagent.bench import ensure_bench, load_pairs
from diffagent.bench.build import novel_flags
from diffagent.bench.evaluate import spread
from diffagent.bench.intents import load_intent_set
from diffagent.bench.metrics import PairScore, score_answer
from diffagent.bench.usersees import UserChecks, mean_user_scores
from diffagent.catalog import Store
from diffagent.config import store_path


def _share(scores: list[PairScore], attribute: str) -> float:
    return round(float(np.mean([getattr(s, attribute) for s in scores])), 4) if scores else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="score N val pairs spread over the file")
    parser.add_argument("--rebuild", action="store_true", help="retrain the agent's index and ranker first")
    parser.add_argument("--answers", type=Path, default=None, help="write the answers to PREFIX-*.jsonl")
    parser.add_argument("--no-intents", action="store_true", help="skip the labelled intent set")
    args = parser.parse_args()

    store = Store(store_path())
    bench = ensure_bench(store)
    train = load_pairs(bench / "train.jsonl")
    val = spread(load_pairs(bench / "val.jsonl"), args.limit)
    novel = novel_flags([p.instruction for p in val], [p.instruction for p in train])
    intents = [] if args.no_intents else load_intent_set()
    checks = UserChecks(store)
    prompts = [p.instruction for p in val]
    for name, allow in (("safe", False), ("all", True)):
        agent = build_default_agent(
            store, train, allow_nsfw=allow, allow_poi=allow, rebuild=args.rebuild and name == "safe"
        )
        agent.select_batch(prompts[:50])  # warm
        began = time.perf_counter()
        answers = agent.select_batch(prompts)
        speed = len(prompts) / (time.perf_counter() - began)
        scores = [score_answer(store, a, p.api) for a, p in zip(answers, val, strict=True)]

        row: dict = {
            "agent": name,
            "pairs": len(val),
            "novel": int(sum(novel)),
            "prompts_per_s": round(speed),
        }
        for attribute in ("model_at_1", "model_at_5", "params", "sampler", "steps", "cfg"):
            row[attribute] = _share(scores, attribute)
        novel_scores = [s for s, n in zip(scores, novel, strict=True) if n]
        row["novel_model_at_1"] = _share(novel_scores, "model_at_1")
        row["novel_model_at_5"] = _share(novel_scores, "model_at_5")
        if intents:
            seen = agent.select_batch([prompt for prompt, _ in intents])
            user = [checks.score(p, a, label) for (p, label), a in zip(intents, seen, strict=True)]
            row.update(
                {f"intents/{k}": round(v, 4) for k, v in mean_user_scores(user).items() if v is not None}
            )
        print(json.dumps(row), flush=True)
        if args.answers is not None:
            singles = [agent.select(p) for p in prompts[:30]]
            out = args.answers.with_name(f"{args.answers.name}-{name}.jsonl")
            out.write_text("".join(a.model_dump_json() + "\n" for a in [*answers, *singles]))


if __name__ == "__main__":
    main()
