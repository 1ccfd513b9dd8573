"""Stage 1 of SFTA: supervised fine-tuning on DABench pairs, the loss on the answer's tokens only.

Each example is the chat prompt (instruction and retriever candidates) followed by the ground-truth call
in the answer format of :mod:`.codec`; the prompt's tokens carry no loss (labels -100 in Hugging Face's
terms): :func:`.losses.sft_batch_loss` scores only the answer after the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..bench.pairs import Pair
from ..catalog import Store
from ..errors import UserInputError
from ..llm.codec import CatalogNames, LLMCodec
from ..llm.config import PromptConfig
from ..llm.models import load_model, model_dir, save_model
from ..schema import APICall
from .adapters import make_trainable
from .config import SFTConfig
from .loop import Progress, TrainResult, train_loop
from .losses import sft_batch_loss

__all__ = ["SFTExample", "sft_examples", "train_sft"]

SFTExample = tuple[list[int], list[int]]
"""(prompt tokens, answer tokens ending with end-of-sequence)."""


def sft_examples(
    codec: LLMCodec, pairs: Sequence[Pair], candidates: Sequence[Sequence[APICall]]
) -> list[SFTExample]:
    return [
        (
            codec.prompt_ids(codec.prompt_text(pair.instruction, cands)),
            codec.encode(codec.spec_from_api(pair.api)),
        )
        for pair, cands in zip(pairs, candidates, strict=True)
    ]


def train_sft(
    config: SFTConfig,
    prompt: PromptConfig,
    store: Store,
    pairs: Sequence[Pair],
    candidates: Sequence[Sequence[APICall]],
    *,
    data_source: str = "",
    resume: bool = False,
    progress: Progress | None = None,
) -> tuple[Path, TrainResult]:
    """Fine-tune ``config.base_model`` on ``pairs`` and their prompt ``candidates``; save it as OUT."""
    out = model_dir(config.out)
    model, tokenizer, meta = load_model(config.base_model)
    if meta:
        raise UserInputError(f"{config.base_model!r} is a trained model: SFT starts from a base model")
    codec = LLMCodec(tokenizer, CatalogNames.from_store(store), prompt)
    examples = sft_examples(codec, pairs, candidates)
    model = make_trainable(model, config)
    result = train_loop(model, examples, sft_batch_loss, config, out, resume=resume, progress=progress)
    metadata = {
        "stage": "sft",
        "method": config.method,
        "base_model": config.base_model,
        "prompt": prompt.to_dict(),
        "config": config.to_dict(),
        "data": {
            "source": data_source,
            "pairs": len(pairs),
            "prompt_tokens_mean": round(sum(len(p) for p, _ in examples) / len(examples), 1),
            "answer_tokens_mean": round(sum(len(a) for _, a in examples) / len(examples), 1),
        },
        "result": result.summary(),
    }
    save_model(model, tokenizer, out, metadata)
    return out, result
