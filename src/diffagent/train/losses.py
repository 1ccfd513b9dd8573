"""Log-likelihoods of responses after a shared prompt, and the SFT and RRHF losses built on them.

The trainer's losses take a list of examples: one instruction runs its prompt once with a KV cache; several
are packed into one padded forward pass, which keeps a GPU busy where one instruction at a time leaves it
waiting on kernel launches. Either way each example's loss is the same, up to float rounding.

Only torch here (no package-relative imports), so that ``scripts/gpu_train_speed.py`` can load this file
on a machine that has torch and transformers but not diffagent's other dependencies.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "packed_response_logprobs",
    "response_logprobs",
    "rrhf_batch_loss",
    "rrhf_loss",
    "sft_batch_loss",
    "sft_loss",
]

Item = tuple[Sequence[int], Sequence[Sequence[int]]]
"""One instruction for :func:`packed_response_logprobs`: (prompt tokens, its responses' tokens)."""


def _cache_names(model: Any) -> tuple[str, str]:
    """The keyword a model's forward takes its KV cache by, and the output field it returns it in.

    transformers 5.2x renamed ``past_key_values`` to ``cache``; both spellings are still in use.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    parameters = inspect.signature(type(inner).forward).parameters
    return ("cache", "cache") if "cache" in parameters else ("past_key_values", "past_key_values")


def response_logprobs(
    model: Any, prompt_ids: Sequence[int], responses: Sequence[Sequence[int]]
) -> list[torch.Tensor]:
    """Per-token log-probabilities of each response after ``prompt_ids``; the prompt is run once.

    The prompt's last logits predict each response's first token; response position t predicts token
    t + 1. Responses are right-padded in one batch, so padding only ever follows the real tokens and
    never changes their values. Differentiable: the same function scores at inference and trains.
    """
    if not responses or any(len(r) == 0 for r in responses):
        raise ValueError("every response needs at least one token")
    device = next(model.parameters()).device
    kwarg, field = _cache_names(model)
    prompt = torch.tensor([list(prompt_ids)], device=device)
    head = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    cache = getattr(head, field)
    k, longest = len(responses), max(len(r) for r in responses)
    if k > 1:
        cache.batch_repeat_interleave(k)
    batch = torch.zeros((k, longest), dtype=torch.long, device=device)
    for row, response in enumerate(responses):
        batch[row, : len(response)] = torch.tensor(list(response), device=device)
    tail = model(input_ids=batch, use_cache=True, **{kwarg: cache})
    logits = torch.cat([head.logits[:, -1:, :].expand(k, 1, -1), tail.logits[:, :-1, :]], dim=1)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, batch.unsqueeze(-1)).squeeze(-1)
    return [logp[row, : len(response)] for row, response in enumerate(responses)]


def packed_response_logprobs(model: Any, items: Sequence[Item]) -> list[list[torch.Tensor]]:
    """:func:`response_logprobs` of several instructions in one forward pass: item i's list at index i.

    Each (prompt + response) is one row of a right-padded batch, with its attention mask and positions from
    0, so padding only ever follows a row's real tokens and never changes their positions or values.
    Logits are kept only from the shortest prompt's last token on, which bounds the memory of the vocabulary
    projection. Prompts are repeated once per response: that costs compute, not kernel launches. A single
    item takes :func:`response_logprobs` (prompt once, with a KV cache): micro-batches of one stay as cheap
    as before.
    """
    if not items:
        raise ValueError("nothing to score")
    if len(items) == 1:
        return [response_logprobs(model, *items[0])]
    rows = [(list(prompt), list(response)) for prompt, responses in items for response in responses]
    if any(not prompt for prompt, _ in rows) or any(not responses for _, responses in items):
        raise ValueError("every item needs a prompt and at least one response")
    if any(not response for _, response in rows):
        raise ValueError("every response needs at least one token")
    device = next(model.parameters()).device
    width = max(len(prompt) + len(response) for prompt, response in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for row, (prompt, response) in enumerate(rows):
        ids[row, : len(prompt) + len(response)] = torch.tensor(prompt + response, device=device)
        mask[row, : len(prompt) + len(response)] = 1
    positions = torch.arange(width, device=device).expand(len(rows), -1)
    first = min(len(prompt) for prompt, _ in rows) - 1  # the first column that predicts a response token
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=False,
        logits_to_keep=width - first,
    )
    # kept column c is sequence position first + c, which predicts the token at first + c + 1
    logits = out.logits[:, :-1, :]
    targets = ids[:, first + 1 :]
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    scored = iter(
        logp[row, len(prompt) - 1 - first : len(prompt) - 1 - first + len(response)]
        for row, (prompt, response) in enumerate(rows)
    )
    return [[next(scored) for _ in responses] for _, responses in items]


def sft_loss(logprobs: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of one answer's tokens (the prompt carries no loss)."""
    return -logprobs.mean()


def rrhf_loss(
    logprobs: Sequence[torch.Tensor], scores: Sequence[float], ft_weight: float = 1.0
) -> torch.Tensor:
    """RRHF for one query: ranking hinge on length-normalised log-likelihoods plus NLL of the best response.

    ``sum over pairs with score_i < score_j of max(0, p_i - p_j)`` where ``p`` is the mean token
    log-probability, plus ``ft_weight`` times the mean token NLL of the highest-scored response (the first
    of equals). Pairs with equal scores carry no ranking loss.
    """
    if len(logprobs) != len(scores) or not scores:
        raise ValueError("one score per response, at least one response")
    p = torch.stack([lp.mean() for lp in logprobs])
    s = torch.tensor(list(scores), dtype=torch.float64, device=p.device)
    worse = s[:, None] < s[None, :]  # worse[i, j]: response i scored below response j
    rank = torch.relu(p[:, None] - p[None, :])[worse].sum()
    best = int(torch.argmax(s))
    return rank + ft_weight * -p[best]


def sft_batch_loss(model: Any, examples: Sequence[tuple[Sequence[int], Sequence[int]]]) -> torch.Tensor:
    """Mean :func:`sft_loss` of (prompt, answer) examples, scored in one pass."""
    logprobs = packed_response_logprobs(model, [(prompt, [answer]) for prompt, answer in examples])
    return torch.stack([sft_loss(answer) for (answer,) in logprobs]).mean()


def rrhf_batch_loss(
    model: Any,
    examples: Sequence[tuple[Sequence[int], Sequence[Sequence[int]], Sequence[float]]],
    ft_weight: float = 1.0,
) -> torch.Tensor:
    """Mean :func:`rrhf_loss` of (prompt, responses, scores) examples, scored in one pass."""
    logprobs = packed_response_logprobs(model, [(prompt, responses) for prompt, responses, _ in examples])
    return torch.stack(
        [rrhf_loss(lp, scores, ft_weight) for lp, (_, _, scores) in zip(logprobs, examples, strict=True)]
    ).mean()
