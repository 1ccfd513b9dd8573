"""What the default agent's answers carry, beside the user metrics: negatives and well-known picks.

    DIFFAGENT_HOME=.home python scripts/audit_answers.py --dump answers.jsonl   # answer, then write
    python scripts/audit_answers.py --score answers.jsonl [more.jsonl ...]     # score with these rules

``--dump`` answers DABench test and the labelled intent set with the train-split agent (safe default) and
writes, a line each, the checkpoint's model id, its VAE and the negative prompt of the chosen call and of
every alternative. ``--score`` reads such files with the negative-prompt rules of the diffagent it imports
(``catalog/safety.py``) and prints, per file, how many answers carry a banned term or an embedding name
in the chosen call's negative and in any alternative's, the share of intent-set picks among the N
most downloaded checkpoints, the intent set's most picked checkpoints, and how many chosen calls name a
VAE. Dump with an older checkout on
``PYTHONPATH`` and score with this one to judge old answers by today's rules.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from diffagent.agents.default.agent import build_default_agent
from diffagent.bench import ensure_bench, load_pairs
from diffagent.bench.intents import load_intent_set
from diffagent.catalog import Store
from diffagent.catalog.safety import embedding_term, negative_polluted, negative_terms
from diffagent.config import store_path

_TOPS = (100, 300)
_MOST_PICKED = 10


def _dump(path: Path) -> None:
    store = Store(store_path())
    bench = ensure_bench(store)
    agent = build_default_agent(store, load_pairs(bench / "train.jsonl"), workers=1)
    test = [p.instruction for p in load_pairs(bench / "test.jsonl")]
    intents = [prompt for prompt, _ in load_intent_set()]
    with path.open("w") as out:
        for n, answer in enumerate(agent.select_batch(test + intents)):
            negatives = [answer.api.negative_prompt] + [a.negative_prompt for a in answer.alternatives]
            line = {
                "intent_set": n >= len(test),
                "model_id": answer.api.checkpoint.model_id,
                "vae": answer.api.vae.name if answer.api.vae is not None else None,
            }
            out.write(json.dumps({**line, "negatives": negatives}) + "\n")


def _has_embedding(negative: str) -> bool:
    return any(embedding_term(term) for term in negative_terms(negative))


def _newest(store: Store, model_id: int) -> int | None:
    row = store.conn.execute(
        "SELECT id FROM versions WHERE model_id = ? ORDER BY position LIMIT 1", (model_id,)
    ).fetchone()
    return row[0] if row else None


def _score(paths: list[Path]) -> None:
    store = Store(store_path())
    by_downloads = [
        mid for (mid,) in store.conn.execute(
            "SELECT id FROM models WHERE type = 'Checkpoint' ORDER BY download_count DESC, id"
        )
    ]  # fmt: skip
    rank = {mid: i for i, mid in enumerate(by_downloads)}
    names = dict(store.conn.execute("SELECT id, name FROM models WHERE type = 'Checkpoint'"))
    published = store.vae_files()
    newest = sum(
        file.version.version_id == _newest(store, file.version.model_id) for file in published.values()
    )
    print(
        f"catalogue: {len(published)} checkpoint versions list a VAE file, {newest} the newest of their model"
    )
    for path in paths:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        first = [r["negatives"][0] for r in rows]
        print(
            f"{path}: {len(rows):,} answers; banned term in the negative {sum(map(negative_polluted, first))}"
            f" (any alternative {sum(any(map(negative_polluted, r['negatives'])) for r in rows)}),"
            f" embedding name {sum(map(_has_embedding, first))}"
            f" (any alternative {sum(any(map(_has_embedding, r['negatives'])) for r in rows)})"
        )
        chosen = Counter(r["model_id"] for r in rows if r["intent_set"])
        often = ", ".join(f"{names.get(m, m)} {n}" for m, n in chosen.most_common(_MOST_PICKED))
        print(f"  intent set, most picked: {often}")
        picks = [rank.get(r["model_id"], len(rank)) for r in rows if r["intent_set"]]
        shares = ", ".join(f"top {n}: {sum(p < n for p in picks) / len(picks):.3f}" for n in _TOPS)
        print(f"  intent-set picks among the most downloaded checkpoints ({len(picks)}): {shares}")
        vaes = [r.get("vae") for r in rows if r.get("vae")]
        common = ", ".join(f"{name} {n}" for name, n in Counter(vaes).most_common(3))
        print(f"  chosen calls naming the VAE their checkpoint is published with: {len(vaes)} ({common})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dump", type=Path, help="answer and write this file")
    parser.add_argument("--score", type=Path, nargs="+", default=[], help="score these files")
    args = parser.parse_args()
    if args.dump is None and not args.score:
        parser.error("give --dump FILE or --score FILE ...")
    if args.dump is not None:
        _dump(args.dump)
    _score(args.score)


if __name__ == "__main__":
    main()
