"""LambdaRank for the default agent: a LightGBM booster that orders each query's candidates.

The agent says what a query's candidates and features are (``featurize``); this module only fits and keeps
the booster, in LightGBM's own text format (no pickle).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightgbm as lgb
import numpy as np

from ..errors import UserInputError

__all__ = ["Ranker", "train_ranker"]

Progress = Callable[[int, int], None]

_PARAMS = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [1, 5],
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambdarank_truncation_level": 10,
    "seed": 0,
    "deterministic": True,
    "num_threads": 1,  # OpenMP threads spin when the cores are shared: 20x slower on a busy 2-core machine
    "verbosity": -1,
}


class Ranker:
    """A trained LightGBM LambdaRank booster over :data:`FEATURES`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.booster = lgb.Booster(model_str=model)

    def __getstate__(self) -> dict[str, str]:
        return {"model": self.model}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["model"])  # type: ignore[misc]

    def score(self, features: np.ndarray, n: int) -> np.ndarray:
        """(B, n) scores, higher is better."""
        return self.booster.predict(features, num_threads=1).reshape(-1, n)


def train_ranker(
    featurize: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
    n_examples: int,
    feature_names: Sequence[str],
    queries: int = 8000,
    rounds: int = 150,
    batch: int = 256,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[Ranker, dict[str, float]]:
    """Fit the ranker on up to ``queries`` examples drawn at random, each featurised out of its fold.

    ``featurize(indices)`` returns (picked candidates, features, true model positions) for those examples.
    A tenth of the drawn examples is held out for early stopping; the returned dict has its accuracy.
    """
    rng = np.random.default_rng(seed)
    drawn = rng.permutation(n_examples)[:queries]
    steps = -(-len(drawn) // batch) + rounds
    picked_all, features_all, truth_all = [], [], []
    for start in range(0, len(drawn), batch):
        picked, features, truth = featurize(drawn[start : start + batch])
        picked_all.append(picked)
        features_all.append(features)
        truth_all.append(truth)
        if progress is not None:
            progress(start // batch + 1, steps)
    picked = np.vstack(picked_all)
    n = picked.shape[1]
    features = np.vstack(features_all).reshape(len(picked), n, -1)
    labels = (picked == np.concatenate(truth_all)[:, None]).astype(np.float32)
    held = np.zeros(len(picked), dtype=bool)
    held[: max(1, len(picked) // 10)] = True
    useful = labels.any(axis=1)
    fit, hold = useful & ~held, useful & held
    if not fit.any():
        raise UserInputError(
            "cannot train the ranker: no training example has its checkpoint among the candidates"
        )

    def dataset(mask: np.ndarray, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        return lgb.Dataset(
            features[mask].reshape(-1, features.shape[2]),
            labels[mask].ravel(),
            group=[n] * int(mask.sum()),
            feature_name=list(feature_names),
            reference=reference,
            free_raw_data=False,
        )

    train_set = dataset(fit)
    valid_sets = [dataset(hold, train_set)] if hold.any() else []
    done = steps - rounds

    def tick(env: lgb.callback.CallbackEnv) -> None:
        if progress is not None:
            progress(done + env.iteration + 1, steps)

    callbacks = [tick]
    if valid_sets:
        callbacks.append(lgb.early_stopping(30, verbose=False))
    booster = lgb.train(_PARAMS, train_set, rounds, valid_sets=valid_sets, callbacks=callbacks)
    if progress is not None:
        progress(steps, steps)
    ranker = Ranker(booster.model_to_string())
    report = {"train_queries": float(fit.sum()), "candidate_recall": float(useful.mean())}
    if held.any():
        scores = ranker.score(features[held].reshape(-1, features.shape[2]), n)
        top = np.take_along_axis(picked[held], np.argsort(-scores, axis=1)[:, :5], 1)
        truth = np.concatenate(truth_all)[held]
        report["held_model@1"] = float((top[:, 0] == truth).mean())
        report["held_model@5"] = float((top == truth[:, None]).any(axis=1).mean())
    return ranker, report
