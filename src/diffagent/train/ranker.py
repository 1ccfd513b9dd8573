"""LambdaRank for the default agent: a LightGBM booster that orders each query's candidates.

The agent says what a query's candidates and features are (``featurize``); this module only fits and keeps
the booster, in LightGBM's own text format (no pickle).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._fork import forked_map
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


@dataclass
class Ranker:
    """A trained LambdaRank model, kept as LightGBM's model text.

    Importing LightGBM (which imports scikit-learn) takes longer than a warm answer may, so a few rows are
    scored by walking the trees with numpy: every split of the text format is numerical ``x <= threshold``
    under LightGBM's missing-value rules, and the score is the sum of the leaves reached. Large batches,
    where the import is paid once for thousands of prompts, go to LightGBM's own predictor, 4x faster per
    row. A test holds the two equal.
    """

    model: str

    BATCH_ROWS: ClassVar[int] = 4096
    """From this many rows on, LightGBM scores them."""

    def __post_init__(self) -> None:
        self._trees = _Trees.parse(self.model)
        self._booster: Any = None

    def score(self, features: np.ndarray, n: int) -> np.ndarray:
        """(B, n) scores, higher is better."""
        if len(features) < self.BATCH_ROWS:
            return self._trees.predict(features).reshape(-1, n)
        if self._booster is None:
            import lightgbm as lgb

            self._booster = lgb.Booster(model_str=self.model)
        return self._booster.predict(features, num_threads=1).reshape(-1, n)


_ZERO = 1e-35
"""LightGBM's kZeroThreshold: values this close to zero count as zero for its Zero missing type."""


class _Trees:
    """The nodes of every tree of a LightGBM model in flat arrays; a child is a node index, or ``~leaf``."""

    def __init__(self, fields: list[dict[str, list[float]]]) -> None:
        feature: list[int] = []
        threshold: list[float] = []
        left: list[int] = []
        right: list[int] = []
        default_left: list[bool] = []
        missing: list[int] = []
        leaves: list[float] = []
        roots: list[int] = []
        for f in fields:
            base, leaf_base = len(feature), len(leaves)
            leaves += f["leaf_value"]
            count = len(f.get("split_feature", []))
            if count == 0:  # a tree of one leaf
                roots.append(~leaf_base)
                continue
            roots.append(base)
            decision = [int(d) for d in f["decision_type"]]
            if any(d & 1 for d in decision):
                raise ValueError("categorical splits are not supported by this scorer")
            feature += [int(v) for v in f["split_feature"]]
            threshold += f["threshold"]
            for out, children in ((left, f["left_child"]), (right, f["right_child"])):
                out += [base + int(c) if c >= 0 else ~(leaf_base + ~int(c)) for c in children]
            default_left += [bool(d & 2) for d in decision]
            missing += [(d >> 2) & 3 for d in decision]
        self.feature = np.array(feature, dtype=np.int64)
        self.threshold = np.array(threshold, dtype=np.float64)
        self.left = np.array(left, dtype=np.int64)
        self.right = np.array(right, dtype=np.int64)
        self.default_left = np.array(default_left, dtype=bool)
        self.missing = np.array(missing, dtype=np.int64)
        """LightGBM's missing type per node: 0 none (NaN counts as 0), 1 zero, 2 NaN."""
        self.leaf = np.array(leaves, dtype=np.float64)
        self.roots = np.array(roots, dtype=np.int64)

    @classmethod
    def parse(cls, text: str) -> _Trees:
        fields: list[dict[str, list[float]]] = []
        current: dict[str, list[float]] | None = None
        wanted = ("split_feature", "threshold", "decision_type", "left_child", "right_child", "leaf_value")
        for line in text.splitlines():
            if line.startswith("Tree="):
                current = {}
                fields.append(current)
            elif line.startswith("end of trees"):
                break
            elif current is not None and "=" in line:
                key, _, value = line.partition("=")
                if key in wanted:
                    current[key] = [float(v) for v in value.split()]
        if not fields:
            raise ValueError("the ranker model has no trees")
        return cls(fields)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The sum over trees of the leaf each row reaches; paths that reached a leaf drop out each step."""
        x = np.asarray(features, dtype=np.float64)
        n, width = x.shape
        special = bool(self.missing.any())
        flat = x.ravel() if special else np.nan_to_num(x, nan=0.0).ravel()
        node = np.tile(self.roots, n)
        offset = np.repeat(np.arange(n, dtype=np.int64) * width, len(self.roots))
        active = np.flatnonzero(node >= 0)
        while active.size:
            at = node[active]
            value = flat[offset[active] + self.feature[at]]
            go_left = value <= self.threshold[at]
            if special:
                missing = self.missing[at]
                value = np.where(np.isnan(value) & (missing != 2), 0.0, value)
                default = ((missing == 1) & (np.abs(value) <= _ZERO)) | ((missing == 2) & np.isnan(value))
                go_left = np.where(default, self.default_left[at], value <= self.threshold[at])
            step = np.where(go_left, self.left[at], self.right[at])
            node[active] = step
            active = active[step >= 0]
        return self.leaf[~node].reshape(n, len(self.roots)).sum(axis=1)


def train_ranker(
    featurize: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
    n_examples: int,
    feature_names: Sequence[str],
    queries: int = 24000,
    rounds: int = 300,
    batch: int = 256,
    seed: int = 0,
    progress: Progress | None = None,
    workers: int = 1,
) -> tuple[Ranker, dict[str, float]]:
    """Fit the ranker on up to ``queries`` examples drawn at random, each featurised out of its fold.

    ``featurize(indices)`` returns (picked candidates, features, true model positions) for those examples;
    ``workers`` forked processes share that work (the same features as one process). A tenth of the drawn
    examples is held out for early stopping; the returned dict has its accuracy.
    """
    rng = np.random.default_rng(seed)
    drawn = rng.permutation(n_examples)[:queries]
    chunks = [drawn[start : start + batch] for start in range(0, len(drawn), batch)]
    steps = len(chunks) + rounds
    picked_all, features_all, truth_all = [], [], []
    for finished, (picked, features, truth) in enumerate(forked_map(featurize, chunks, workers), 1):
        picked_all.append(picked)
        features_all.append(features)
        truth_all.append(truth)
        if progress is not None:
            progress(finished, steps)
    import lightgbm as lgb  # here: the scorer above needs none, and the workers are gone before its threads

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
