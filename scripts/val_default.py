"""The default agent on DABench val, for deciding changes: accuracy, settings, the intent set, batch speed.

    DIFFAGENT_HOME=.home python scripts/val_default.py [--limit N] [--rebuild] [--answers PREFIX]

The agent learns from the train split (its cached index, built first if missing; ``--rebuild`` retrains
it). For the safe default and for ``--allow-nsfw --allow-poi`` it prints one JSON line of the harness
``diffagent eval`` uses (:func:`diffagent.bench.evaluate.evaluate`) on the val pairs (``--limit`` spreads N
of them over the file): model@1, model@5, params and the rest, the same on the val prompts that DABench's
rule would call novel against train (``novel/``), the user metrics on the labelled intent set
(``intents/``), and batch prompts per second. ``--answers PREFIX`` also writes every answer (the batch,
then the first 30 one at a time) to ``PREFIX-safe.jsonl`` and ``PREFIX-all.jsonl``, so that two
checkouts can be compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffagent.agents.default.agent import build_default_agent
from diffagent.bench import ensure_bench, load_pairs
from diffagent.bench.build import novel_flags
from diffagent.bench.evaluate import evaluate, spread
from diffagent.bench.intents import load_intent_set
from diffagent.bench.usersees import UserChecks
from diffagent.catalog import Store
from diffagent.config import store_path


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
    # DABench flags novelty on test only; val gets the same rule, so that the harness reports it too
    novel = novel_flags([p.instruction for p in val], [p.instruction for p in train])
    val = [pair.model_copy(update={"novel": flag}) for pair, flag in zip(val, novel, strict=True)]
    intents = [] if args.no_intents else load_intent_set()
    checks = UserChecks(store)
    for name, allow in (("safe", False), ("all", True)):
        agent = build_default_agent(
            store, train, allow_nsfw=allow, allow_poi=allow, rebuild=args.rebuild and name == "safe"
        )
        row = evaluate(agent, val, store, name=name, latency_prompts=20, intents=intents, checks=checks)
        print(json.dumps(row), flush=True)
        if args.answers is not None:
            prompts = [p.instruction for p in val]
            answers = [*agent.select_batch(prompts), *(agent.select(p) for p in prompts[:30])]
            out = args.answers.with_name(f"{args.answers.name}-{name}.jsonl")
            out.write_text("".join(a.model_dump_json() + "\n" for a in answers))


if __name__ == "__main__":
    main()
