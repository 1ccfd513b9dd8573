"""The default agent's ranker alone, trained several ways on the same features, scored on DABench val.

    DIFFAGENT_HOME=.home python scripts/ranker_variants.py

Features come from the train-split agent's index, rebuilt (about two minutes): every example, drawn in
the order the build draws them (it takes the first 24,000), each featurised against the other folds, and
the val prompts against all of them. Each variant trains LightGBM LambdaRank on those features and prints
one JSON line: model@1 and model@5 of the ranker's own order over the candidates (no style or fallback
rule), and the candidates' recall. Variants: the build's settings of the second pass (8,000 queries, 150
rounds) and now (24,000, 300), every example as a query, hash-resolved examples only, two and three
seeds summed, other LightGBM settings (leaves, learning rate, truncation, objective, leaf size), and 60
candidates instead of 40. ``--only seeds`` runs just the seeds: the build's setting with each of seeds 0-5
alone (how far one retrain moves the numbers), two triples of them summed, and two triples of 100-round
boosters at learning rate 0.3 summed (an ensemble for the training time of one booster).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np

from diffagent.agents.default.agent import build_default_agent
from diffagent.agents.default.ranker import N_CANDIDATES, N_CARD_CANDIDATES, candidates, feature_matrix
from diffagent.bench import ensure_bench, load_pairs
from diffagent.bench.text import clean_prompt
from diffagent.catalog import Store
from diffagent.config import store_path
from diffagent.train.ranker import _PARAMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("all", "seeds"), default="all", help="which variants to run")
    args = parser.parse_args()

    store = Store(store_path())
    bench = ensure_bench(store)
    # built afresh: only an index in memory after its build keeps the fold tables out-of-fold features need
    train = load_pairs(bench / "train.jsonl")
    agent = build_default_agent(store, train, allow_nsfw=True, allow_poi=True, rebuild=True)
    index = agent.index
    examples, checkpoints = index.examples, index.checkpoints
    everything = np.ones(len(checkpoints), dtype=bool)
    val = load_pairs(bench / "val.jsonl")
    val_texts = [clean_prompt(p.instruction) for p in val]
    val_truth = np.array([checkpoints.position.get(p.api.checkpoint.model_id, -1) for p in val])
    drawn = np.random.default_rng(0).permutation(len(examples))

    def featurise(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n_card = round(N_CARD_CANDIDATES * n / N_CANDIDATES)

        def rows(texts: Sequence[str], folds: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
            picked, features = [], []
            for start in range(0, len(texts), 256):
                sig = index.signals(
                    texts[start : start + 256], None if folds is None else folds[start : start + 256]
                )
                chosen = candidates(sig, everything, checkpoints, n=n, n_card=n_card)
                picked.append(chosen)
                features.append(feature_matrix(sig, chosen, checkpoints).reshape(len(chosen), n, -1))
            return np.vstack(picked), np.vstack(features)

        train_picked, train_features = rows([examples.texts[i] for i in drawn], examples.fold[drawn])
        val_picked, val_features = rows(val_texts, None)
        return train_picked, train_features, val_picked, val_features

    def fit(
        picked: np.ndarray,
        features: np.ndarray,
        queries: np.ndarray,
        rounds: int,
        seed: int,
        **changes: object,
    ) -> lgb.Booster:
        picked, features, truth = picked[queries], features[queries], examples.model[drawn][queries]
        labels = (picked == truth[:, None]).astype(np.float32)
        held = np.zeros(len(picked), dtype=bool)
        held[: len(picked) // 10] = True
        useful = labels.any(axis=1)
        n, width = features.shape[1], features.shape[2]

        def dataset(mask: np.ndarray, reference: lgb.Dataset | None = None) -> lgb.Dataset:
            return lgb.Dataset(
                features[mask].reshape(-1, width), labels[mask].ravel(), group=[n] * int(mask.sum()),
                reference=reference, free_raw_data=False,
            )  # fmt: skip

        train_set = dataset(useful & ~held)
        params = {**_PARAMS, "seed": seed, "bagging_seed": seed, "feature_fraction_seed": seed, **changes}
        early = [lgb.early_stopping(30, verbose=False)]
        return lgb.train(
            params, train_set, rounds, valid_sets=[dataset(useful & held, train_set)], callbacks=early
        )

    def report(name: str, picked: np.ndarray, scores: np.ndarray) -> None:
        top = np.take_along_axis(picked, np.argsort(-scores, axis=1)[:, :5], 1)
        print(json.dumps({
            "variant": name,
            "model@1": round(float((top[:, 0] == val_truth).mean()), 4),
            "model@5": round(float((top == val_truth[:, None]).any(axis=1).mean()), 4),
            "candidate_recall": round(float((picked == val_truth[:, None]).any(axis=1).mean()), 4),
        }), flush=True)  # fmt: skip

    def scored(booster: lgb.Booster, features: np.ndarray) -> np.ndarray:
        n = features.shape[1]
        return booster.predict(features.reshape(-1, features.shape[2]), num_threads=1).reshape(-1, n)

    train_picked, train_features, val_picked, val_features = featurise(N_CANDIDATES)
    every = np.arange(len(drawn))
    built = every[:24000]  # what the build trains on
    if args.only == "seeds":
        boosters = [fit(train_picked, train_features, built, 300, seed) for seed in range(6)]
        alone = [scored(booster, val_features) for booster in boosters]
        for seed, scores in enumerate(alone):
            report(f"seed {seed} alone", val_picked, scores)
        for first in (0, 3):
            report(f"seeds {first}-{first + 2} summed", val_picked, sum(alone[first : first + 3]))
            quick = [
                scored(fit(train_picked, train_features, built, 100, seed, learning_rate=0.3), val_features)
                for seed in range(first, first + 3)
            ]
            report(f"seeds {first}-{first + 2}, 100 rounds at 0.3, summed", val_picked, sum(quick))
        return
    strict = built[examples.kind[drawn[built]] == 0]
    for name, queries, rounds in (
        ("8,000 queries, 150 rounds (second pass)", every[:8000], 150),
        ("24,000 queries, 300 rounds (now)", built, 300),
        (f"every example as a query ({len(drawn):,}), 300 rounds", every, 300),
        ("hash-resolved queries only, 300 rounds", strict, 300),
    ):
        report(name, val_picked, scored(fit(train_picked, train_features, queries, rounds, 0), val_features))
    seeds = [scored(fit(train_picked, train_features, built, 300, seed), val_features) for seed in range(3)]
    report("two seeds, scores summed", val_picked, seeds[0] + seeds[1])
    report("three seeds, scores summed", val_picked, seeds[0] + seeds[1] + seeds[2])
    for name, rounds, changes in (
        ("31 leaves", 300, {"num_leaves": 31}),
        ("learning rate 0.05, 600 rounds", 600, {"learning_rate": 0.05}),
        ("truncation level 20", 300, {"lambdarank_truncation_level": 20}),
        ("rank_xendcg objective", 300, {"objective": "rank_xendcg"}),
        ("at least 100 rows a leaf", 300, {"min_data_in_leaf": 100}),
    ):
        booster = fit(train_picked, train_features, built, rounds, 0, **changes)
        report(name, val_picked, scored(booster, val_features))
    train_picked, train_features, val_picked, val_features = featurise(60)
    report(
        "60 candidates", val_picked, scored(fit(train_picked, train_features, built, 300, 0), val_features)
    )


if __name__ == "__main__":
    main()
