"""Score any agent on any DABench-format pairs file: accuracy, hallucination, parameters, reward, speed.

:func:`evaluate` returns one row per agent, a flat dict keyed by DESIGN.md's metric names:
``agent``, ``n``, ``model@1``, ``model@5``, ``base@1``, ``hallucination``, ``invalid``, ``sampler``,
``steps``, ``cfg``, ``params``, ``reward`` (with ``reward_name``; both left out where no reward model is
installed), ``latency_ms_p50``, ``latency_ms_p95`` and ``prompts_per_s``. Where the pairs carry ``novel``
flags (a DABench test split), every metric is repeated on the novel subset under the same name prefixed
with ``novel/`` (``novel/n``, ``novel/model@1``, ... ``novel/prompts_per_s``), so that each agent stays one
row of ``diffagent eval --json``. Every subset also carries the user-facing metrics of
:mod:`.usersees` (``unsafe``, ``neg_polluted``, ``params_outside_family``, ``prompt_bloat``,
``intent_match`` ...) and low-confidence precision and recall against model@1 misses; with a labelled
intent set, the same metrics on those prompts under ``intents/`` (misses there: the style).

Timing: after ``warmup`` calls, ``latency_ms_*`` time ``agent.select`` one prompt at a time on up to
``latency_prompts`` prompts spread evenly over the pairs (and as many over the novel subset), warm, in
this process. ``prompts_per_s`` times ``agent.select_batch`` over every prompt, in chunks (novel and
other prompts in separate chunks, so that the novel subset has its own throughput); the accuracy metrics
are computed on those batch answers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar

from ..catalog import Store
from ..protocols import Agent, Progress, Reward
from ..schema import Answer
from .metrics import PairScore, mean_scores, percentile, score_answer
from .pairs import Pair
from .usersees import UserChecks, UserScore, low_confidence_scores, mean_user_scores

__all__ = ["evaluate", "evaluate_intents", "render_markdown", "spread"]

T = TypeVar("T")

_BATCH_CHUNK = 512


def spread(items: Sequence[T], count: int | None) -> list[T]:
    """Up to ``count`` of ``items``, evenly spaced, in order (files are often sorted by model or image)."""
    if count is None or len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def _answered(answer: Answer | None) -> Answer:
    if answer is None:
        raise RuntimeError("an agent's select_batch left a prompt without an answer")
    return answer


def _speed(seconds: float, count: int) -> float | None:
    return count / seconds if seconds > 0 and count else None


def evaluate(
    agent: Agent,
    pairs: Sequence[Pair],
    store: Store,
    *,
    name: str | None = None,
    k: int = 5,
    latency_prompts: int = 200,
    warmup: int = 3,
    reward: Reward | None = None,
    progress: Progress | None = None,
    intents: Sequence[tuple[str, str]] = (),
    checks: UserChecks | None = None,
) -> dict[str, Any]:
    """Every metric of ``agent`` on ``pairs`` and their novel subset, as one row (see the module doc);
    with ``intents`` (prompt, style label), the user metrics on those prompts too, under ``intents/``."""
    checks = checks or UserChecks(store)
    n = len(pairs)
    novel = [i for i, pair in enumerate(pairs) if pair.novel]
    has_novel = any(pair.novel is not None for pair in pairs)
    groups = [novel, [i for i, pair in enumerate(pairs) if not pair.novel]] if has_novel else [list(range(n))]
    timed_all = spread(range(n), latency_prompts)
    timed_novel = spread(novel, latency_prompts)
    timed = sorted(set(timed_all) | set(timed_novel))
    total, done = 2 * n + len(timed), 0

    def tick(step: int) -> None:
        nonlocal done
        done += step
        if progress is not None:
            progress(done, total)

    for pair in pairs[:warmup]:
        agent.select(pair.instruction, k)

    answers: list[Answer | None] = [None] * n
    seconds = {"all": 0.0, "novel": 0.0}
    for group_number, group in enumerate(groups):
        for start in range(0, len(group), _BATCH_CHUNK):
            chunk = group[start : start + _BATCH_CHUNK]
            began = time.perf_counter()
            batch = agent.select_batch([pairs[i].instruction for i in chunk], k)
            elapsed = time.perf_counter() - began
            seconds["all"] += elapsed
            if has_novel and group_number == 0:
                seconds["novel"] += elapsed
            for i, answer in zip(chunk, batch, strict=True):
                answers[i] = answer
            tick(len(chunk))

    latency: dict[int, float] = {}
    for i in timed:
        began = time.perf_counter()
        agent.select(pairs[i].instruction, k)
        latency[i] = (time.perf_counter() - began) * 1000
        tick(1)

    scores: list[PairScore] = []
    seen: list[UserScore] = []
    for pair, maybe in zip(pairs, answers, strict=True):
        answer = _answered(maybe)
        value = reward.score_calls(pair.instruction, [answer.api], pair.api)[0] if reward else None
        scores.append(score_answer(store, answer, pair.api, reward=value))
        seen.append(checks.score(pair.instruction, answer))
        tick(1)

    def block(indices: Sequence[int], timed_here: Sequence[int], secs: float) -> dict[str, Any]:
        metrics = mean_scores([scores[i] for i in indices])
        if reward is None:
            metrics.pop("reward")
        flags = [seen[i].low_confidence for i in indices]
        return {
            "n": len(indices),
            **metrics,
            **mean_user_scores([seen[i] for i in indices]),
            **low_confidence_scores(flags, [not scores[i].model_at_1 for i in indices]),
            "latency_ms_p50": percentile((latency[i] for i in timed_here), 50),
            "latency_ms_p95": percentile((latency[i] for i in timed_here), 95),
            "prompts_per_s": _speed(secs, len(indices)),
        }

    row: dict[str, Any] = {"agent": name or getattr(agent, "name", type(agent).__name__)}
    row.update(block(range(n), timed_all, seconds["all"]))
    if reward is not None:
        row["reward_name"] = reward.name
    if has_novel:
        row.update(
            {f"novel/{key}": value for key, value in block(novel, timed_novel, seconds["novel"]).items()}
        )
    if intents:
        row.update(
            {f"intents/{key}": value for key, value in evaluate_intents(agent, intents, checks, k).items()}
        )
    return row


def evaluate_intents(
    agent: Agent, items: Sequence[tuple[str, str]], checks: UserChecks, k: int = 5
) -> dict[str, Any]:
    """The user metrics of ``agent`` on real prompts labelled with the style they ask for (no ground-truth
    API: a wrong answer is one whose checkpoint does not suit the label), with batch throughput."""
    began = time.perf_counter()
    answers: list[Answer] = []
    for start in range(0, len(items), _BATCH_CHUNK):
        answers += agent.select_batch([prompt for prompt, _ in items[start : start + _BATCH_CHUNK]], k)
    seconds = time.perf_counter() - began
    seen = [
        checks.score(prompt, answer, label) for (prompt, label), answer in zip(items, answers, strict=True)
    ]
    return {
        "n": len(items),
        **mean_user_scores(seen),
        **low_confidence_scores([s.low_confidence for s in seen], [s.intent_match is False for s in seen]),
        "prompts_per_s": _speed(seconds, len(items)),
    }


_COLUMNS = (
    ("n", "n", "{:,}"),
    ("model@1", "model@1", "{:.3f}"),
    ("model@5", "model@5", "{:.3f}"),
    ("base@1", "base@1", "{:.3f}"),
    ("hallucination", "halluc.", "{:.3f}"),
    ("invalid", "invalid", "{:.3f}"),
    ("sampler", "sampler", "{:.3f}"),
    ("steps", "steps", "{:.3f}"),
    ("cfg", "cfg", "{:.3f}"),
    ("params", "params", "{:.3f}"),
    ("reward", "reward", "{:.3f}"),
    ("unsafe", "unsafe", "{:.3f}"),
    ("neg_polluted", "neg polluted", "{:.3f}"),
    ("neg_embeddings", "neg emb.", "{:.3f}"),
    ("params_outside_family", "params outside", "{:.3f}"),
    ("prompt_bloat", "bloat", "{:.3f}"),
    ("intent_match", "intent", "{:.3f}"),
    ("low_confidence", "low conf", "{:.3f}"),
    ("low_conf_precision", "lc prec", "{:.3f}"),
    ("low_conf_recall", "lc rec", "{:.3f}"),
    ("latency_ms_p50", "p50 ms", "{:.1f}"),
    ("latency_ms_p95", "p95 ms", "{:.1f}"),
    ("prompts_per_s", "prompts/s", "{:,.0f}"),
)


def render_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table, one line per agent and subset, with a note on the reward used."""
    columns = [c for c in _COLUMNS if any(c[0] in row for row in rows)]
    lines = [
        "| agent | pairs | " + " | ".join(title for _, title, _ in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for row in rows:
        subsets = [("all", "")] + ([("novel", "novel/")] if "novel/n" in row else [])
        subsets += [("intents", "intents/")] if "intents/n" in row else []
        for subset, prefix in subsets:
            cells = []
            for key, _, fmt in columns:
                value = row.get(prefix + key)
                cells.append("–" if value is None else fmt.format(value))
            lines.append(f"| {row['agent']} | {subset} | " + " | ".join(cells) + " |")
    names = sorted({row["reward_name"] for row in rows if row.get("reward_name")})
    note = f"reward: {', '.join(names)}" if names else "reward: not reported (no reward was given)"
    return "\n".join([*lines, "", note]) + "\n"
