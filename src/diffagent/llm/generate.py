"""Writing answers token by token: greedy or sampled, constrained by the catalogue grammar or free."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .codec import LLMCodec
from .grammar import CallGrammar

__all__ = ["FREE_MAX_NEW_TOKENS", "answer_closed", "generate_answers"]

FREE_MAX_NEW_TOKENS = 128
"""Budget of free generation; a constrained answer's budget is the grammar's bound on its length."""


def answer_closed(text: str) -> bool:
    """Whether ``text`` holds a complete JSON array (brackets inside strings do not count)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            escaped, in_string = (False, in_string) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
            if depth == 0:
                return True
    return False


class _AnswerClosed(StoppingCriteria):
    """Ends free generation once the answer's array is closed: the parser ignores anything after it."""

    def __init__(self, codec: LLMCodec, prompt_length: int) -> None:
        self.codec, self.prompt_length = codec, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        rows = input_ids[:, self.prompt_length :].tolist()
        done = [answer_closed(self.codec.tokenizer.decode(row, skip_special_tokens=True)) for row in rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def generate_answers(
    model: Any,
    codec: LLMCodec,
    prompt_ids: Sequence[int],
    *,
    grammar: CallGrammar | None = None,
    num: int = 1,
    temperature: float | None = None,
) -> list[str]:
    """``num`` answer texts for one prompt: greedy when ``temperature`` is None, else sampled.

    With ``grammar`` every answer parses and names only catalogue models; without, anything may come out.
    """
    device = next(model.parameters()).device
    prompt = torch.tensor([list(prompt_ids)], device=device)
    options: dict[str, Any] = {
        "max_new_tokens": grammar.max_length if grammar is not None else FREE_MAX_NEW_TOKENS,
        "num_return_sequences": num,
        "eos_token_id": codec.eos_id,
        "pad_token_id": codec.tokenizer.pad_token_id
        if codec.tokenizer.pad_token_id is not None
        else codec.eos_id,
        "do_sample": temperature is not None,
    }
    if temperature is not None:
        options.update(temperature=temperature, top_k=0, top_p=1.0)
    else:
        options.update(temperature=None, top_k=None, top_p=None)
    if grammar is not None:
        options["prefix_allowed_tokens_fn"] = grammar.prefix_fn(prompt.shape[1])
    else:
        options["stopping_criteria"] = StoppingCriteriaList([_AnswerClosed(codec, prompt.shape[1])])
    with torch.inference_mode():
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), **options)
    texts = []
    for row in output[:, prompt.shape[1] :].tolist():
        if codec.eos_id in row:
            row = row[: row.index(codec.eos_id)]
        texts.append(codec.tokenizer.decode(row, skip_special_tokens=True))
    return texts
