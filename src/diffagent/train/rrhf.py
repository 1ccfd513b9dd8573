"""Stage 2 of SFTA: RRHF (Rank Responses to align Human Feedback) on reward-scored candidate calls.

Two separate steps, joined by a file. :func:`rrhf_rows` gathers k responses per instruction (the ground
truth, constrained samples of the stage-1 model, the retriever's alternatives), has the reward score them
against the ground truth, and yields ``{"id", "query", "responses", "scores", "reward"}`` rows for a JSONL
file. :func:`train_rrhf` reads such rows and trains with :func:`.losses.rrhf_batch_loss`, so any reward (the
offline proxy here, image scorers elsewhere) plugs in without touching the trainer.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..bench.pairs import Pair
from ..errors import UserInputError
from ..llm.codec import LLMCodec
from ..llm.generate import generate_answers
from ..llm.grammar import CallGrammar
from ..llm.models import model_dir, save_model
from ..schema import APICall
from .config import RRHFConfig
from .loop import Progress, TrainResult, train_loop
from .losses import rrhf_batch_loss

__all__ = ["RRHFExample", "Reward", "held_out_agreement", "read_rrhf_rows", "rrhf_rows", "train_rrhf"]

RRHFExample = tuple[list[int], list[list[int]], list[float]]
"""(prompt tokens, response tokens each ending with end-of-sequence, reward of each response)."""


class Reward(Protocol):
    """What RRHF needs of a reward (``diffagent.reward.Reward``): scores of calls for one instruction."""

    name: str

    def score_calls(
        self, instruction: str, calls: Sequence[APICall], reference: APICall | None = None
    ) -> list[float]: ...


def rrhf_rows(
    model: Any,
    codec: LLMCodec,
    pairs: Sequence[Pair],
    candidates: Sequence[Sequence[APICall]],
    reward: Reward,
    config: RRHFConfig,
    progress: Progress | None = None,
) -> Iterator[dict[str, Any]]:
    """One row per pair: the prompt, distinct response texts (ground truth first) and their rewards.

    All responses are gathered first, then scored: a reward with ``score_sets`` (images rendered by
    checkpoint, see ``diffagent.reward.candidates``) gets every instruction at once; its held-out scores
    (PickScore) go into the row as ``held_out``, beside the training scores, never into them.
    """
    grammar = CallGrammar(codec) if config.samples else None
    gathered: list[tuple[Pair, str, dict[str, APICall]]] = []
    for done, (pair, cands) in enumerate(zip(pairs, candidates, strict=True), 1):
        query = codec.prompt_text(pair.instruction, cands)
        calls = [pair.api]
        if grammar is not None:
            texts = generate_answers(
                model, codec, codec.prompt_ids(query), grammar=grammar, num=config.samples,
                temperature=config.temperature,
            )  # fmt: skip
            fallback = cands[0] if cands else None
            calls += [codec.to_api(codec.parse(text), pair.instruction, fallback) for text in texts]
        calls += list(cands[: config.alternatives])
        responses: dict[str, APICall] = {}
        for call in calls:  # canonical texts; the first call of each text stays
            responses.setdefault(codec.render(codec.spec_from_api(call)), call)
        gathered.append((pair, query, responses))
        if progress is not None:
            progress(done, len(pairs))
    score_sets = getattr(reward, "score_sets", None)
    if score_sets is not None:
        scored = score_sets([(pair.instruction, list(responses.values())) for pair, _, responses in gathered])
    else:
        scored = [
            {"scores": reward.score_calls(pair.instruction, list(responses.values()), reference=pair.api)}
            for pair, _, responses in gathered
        ]
    for (pair, query, responses), result in zip(gathered, scored, strict=True):
        row: dict[str, Any] = {
            "id": pair.id,
            "query": query,
            "responses": list(responses),
            "scores": [round(float(s), 6) for s in result["scores"]],
            "reward": reward.name,
        }
        if result.get("held_out"):
            row["held_out"] = {
                name: [round(float(s), 6) for s in values] for name, values in result["held_out"].items()
            }
        yield row


def held_out_agreement(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per held-out scorer, the share of rows whose best response by the reward is also its best: the
    check against reward hacking (a policy that games the reward stops pleasing the held-out scorer)."""
    agree: dict[str, list[bool]] = {}
    for row in rows:
        scores = row["scores"]
        if len(scores) < 2:
            continue
        best = max(range(len(scores)), key=scores.__getitem__)
        for name, values in row.get("held_out", {}).items():
            agree.setdefault(name, []).append(max(range(len(values)), key=values.__getitem__) == best)
    return {name: sum(flags) / len(flags) for name, flags in agree.items()}


def read_rrhf_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an RRHF file; a malformed line is a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"no such RRHF file: {path}")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ok = (
                    isinstance(row.get("query"), str)
                    and isinstance(row.get("responses"), list)
                    and isinstance(row.get("scores"), list)
                    and len(row["responses"]) == len(row["scores"]) > 0
                    and all(isinstance(r, str) and r for r in row["responses"])
                    and all(isinstance(s, int | float) for s in row["scores"])
                )
            except (json.JSONDecodeError, AttributeError):
                ok = False
            if not ok:
                raise UserInputError(f"{path}:{number}: not an RRHF row {{query, responses, scores}}")
            rows.append(row)
    if not rows:
        raise UserInputError(f"{path} holds no RRHF rows")
    return rows


def train_rrhf(
    config: RRHFConfig,
    model: Any,
    tokenizer: Any,
    source_meta: dict[str, Any],
    codec: LLMCodec,
    rows: Sequence[dict[str, Any]],
    *,
    data_source: str = "",
    resume: bool = False,
    progress: Progress | None = None,
) -> tuple[Path, TrainResult]:
    """Train the stage-1 ``model`` (loaded trainable) on RRHF ``rows``; save it as ``config.out``.

    The method follows the source: its LoRA adapters keep training, or all its weights do.
    """
    config = dataclasses.replace(config, method=source_meta.get("method", "full"))
    out = model_dir(config.out)
    examples: list[RRHFExample] = [
        (codec.prompt_ids(row["query"]), [codec.encode_text(r) for r in row["responses"]], row["scores"])
        for row in rows
    ]
    if config.method == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    loss = functools.partial(rrhf_batch_loss, ft_weight=config.ft_weight)
    result = train_loop(model, examples, loss, config, out, resume=resume, progress=progress)
    rewards = sorted({row.get("reward", "unknown") for row in rows})
    metadata = {
        "stage": "rrhf",
        "method": config.method,
        "base_model": source_meta.get("base_model"),
        "source": config.source,
        "prompt": source_meta.get("prompt"),
        "config": config.to_dict(),
        "data": {
            "source": data_source,
            "rows": len(rows),
            "responses_mean": round(sum(len(r["responses"]) for r in rows) / len(rows), 2),
            "reward": ", ".join(rewards),
        },
        "result": result.summary(),
    }
    save_model(model, tokenizer, out, metadata)
    return out, result
