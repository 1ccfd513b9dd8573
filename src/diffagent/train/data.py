"""Training data for the LLM agent: which DABench pairs, and the retriever candidates shown in their prompts.

At inference the prompt lists what the retriever found for an unseen request. A retriever built on the
training pairs would find each training instruction itself and hand its answer to the model, which would
then learn to copy the first candidate. So training candidates come from a retriever built on the other
folds; folds split by normalised prompt, so repeats of a prompt stay in one fold.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

from ..bench.pairs import Pair
from ..bench.text import group_key
from ..protocols import Agent
from ..schema import Answer, APICall

__all__ = ["answer_candidates", "fold_candidates", "sample_pairs"]

BuildRetriever = Callable[[Sequence[Pair]], Agent]
Progress = Callable[[float, float], None]


def sample_pairs(pairs: Sequence[Pair], limit: int | None, seed: int) -> list[Pair]:
    """All pairs, or a seeded random sample of ``limit`` of them (file order is by model, not random)."""
    if limit is None or limit >= len(pairs):
        return list(pairs)
    return random.Random(seed).sample(list(pairs), limit)


def answer_candidates(answer: Answer, n: int) -> list[APICall]:
    """The calls of an answer's first ``n`` distinct checkpoints: its call, then its alternatives."""
    calls: list[APICall] = []
    seen: set[int] = set()
    for item in [answer.api, *answer.alternatives]:
        if item.checkpoint.model_id not in seen:
            seen.add(item.checkpoint.model_id)
            calls.append(APICall.model_validate(item.model_dump(exclude={"score"})))
        if len(calls) == n:
            break
    return calls


def _fold(pair: Pair, folds: int) -> int:
    digest = hashlib.blake2b(group_key(pair.instruction).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % folds


def fold_candidates(
    pool: Sequence[Pair],
    targets: Sequence[Pair],
    build_retriever: BuildRetriever,
    n: int,
    folds: int = 2,
    progress: Progress | None = None,
) -> list[list[APICall]]:
    """Candidates for each of ``targets``, from a retriever built on the ``pool`` pairs of other folds."""
    if folds < 2:
        raise ValueError("candidates for training pairs need at least two folds")
    result: list[list[APICall]] = [[] for _ in targets]
    done = 0
    for fold in range(folds):
        mine = [i for i, pair in enumerate(targets) if _fold(pair, folds) == fold]
        if not mine:
            continue
        retriever = build_retriever([p for p in pool if _fold(p, folds) != fold])
        answers = retriever.select_batch([targets[i].instruction for i in mine], k=n)
        for index, answer in zip(mine, answers, strict=True):
            result[index] = answer_candidates(answer, n)
        done += len(mine)
        if progress is not None:
            progress(done, len(targets))
    return result
