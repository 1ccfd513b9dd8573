"""The paper's agent: a language model, trained by SFT then RRHF, that writes the API call.

The prompt holds the user's instruction and the retriever's top candidates (see :mod:`diffagent.llm.codec`).
Three ways to decode:

- ``rerank`` (the default, constrained): the model scores the candidates' full calls in one batched forward
  pass over a shared prompt, and the one whose checkpoint name it finds likeliest is the answer (what SFT
  and RRHF train raises the likelihood of the right name); it is fast on a CPU.
- ``trie`` (constrained): the model writes the call token by token through the catalogue grammar, so it
  may name any catalogue checkpoint, never one outside it.
- ``free`` (``unconstrained=True``): plain greedy generation, parsed leniently; a name the catalogue lacks
  stays in the answer with ``model_id`` and ``version_id`` 0, so hallucination can be measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..bench.pairs import Pair
from ..catalog import Store, safety_columns
from ..errors import UserInputError
from ..llm.codec import CatalogNames, LLMCodec
from ..llm.config import PromptConfig
from ..llm.generate import generate_answers
from ..llm.grammar import CallGrammar
from ..llm.models import inference_dtype, load_model, model_dir
from ..protocols import Agent
from ..schema import VAE, Alternative, Answer, APICall
from ..train.data import answer_candidates
from ..train.losses import response_logprobs
from . import LLM_DECODINGS as DECODINGS
from .default.params import published_vaes

__all__ = ["DECODINGS", "LLMAgent", "build_llm_agent", "safe_ranked", "unsafe_models"]


class LLMAgent(Agent):
    name = "llm"

    def __init__(
        self,
        model: Any,
        codec: LLMCodec,
        retriever: Agent,
        decoding: str = "rerank",
        unsafe: frozenset[int] = frozenset(),
        vaes: Mapping[int, VAE] | None = None,
    ) -> None:
        if decoding not in DECODINGS:
            raise UserInputError(f"unknown decoding {decoding!r}: use one of {', '.join(DECODINGS)}")
        self.model = model
        self.codec = codec
        self.retriever = retriever
        self.decoding = decoding
        self.grammar = CallGrammar(codec) if decoding == "trie" else None
        self.unsafe = unsafe
        """Model ids the answer may not name (explicit or real-person ones not allowed, see
        :func:`unsafe_models`): the grammar and free decoding can write any catalogue name."""
        self.vaes = vaes or {}
        """Checkpoint version -> the VAE it is published with (:func:`published_vaes`): a decoded call
        names it as the retriever's calls do."""

    def select(self, prompt: str, k: int = 5) -> Answer:
        retrieved = self.retriever.select(prompt, k=max(k, self.codec.prompt.n_candidates))
        candidates = answer_candidates(retrieved, max(k, self.codec.prompt.n_candidates))
        shown = candidates[: self.codec.prompt.n_candidates]
        prompt_ids = self.codec.prompt_ids(self.codec.prompt_text(prompt, shown))
        if self.decoding == "rerank":
            ranked = self._rerank(prompt_ids, shown)
        else:
            (text,) = generate_answers(self.model, self.codec, prompt_ids, grammar=self.grammar)
            call = self.codec.to_api(self.codec.parse(text), prompt, shown[0] if shown else None)
            others = [c for c in candidates if c.checkpoint.model_id != call.checkpoint.model_id]
            ranked = [(call, 1.0)] + [(c, 0.0) for c in others]
        ranked = safe_ranked(ranked, self.unsafe) or [(c, 0.0) for c in candidates[:1]]
        ranked = [
            (call.model_copy(update={"vae": self.vaes.get(call.checkpoint.version_id)}), score)
            for call, score in ranked
        ]
        alternatives = [Alternative(**call.model_dump(), score=round(score, 6)) for call, score in ranked[:k]]
        return Answer(
            api=ranked[0][0],
            alternatives=alternatives,
            evidence=retrieved.evidence,
            low_confidence=retrieved.low_confidence,
        )

    def _rerank(self, prompt_ids: list[int], candidates: Sequence[APICall]) -> list[tuple[APICall, float]]:
        """Candidates by the log-likelihood of their checkpoint's name, best first (mean token
        log-likelihood of the whole answer breaks ties).

        The rest of each answer is the retriever's, so the name is the model's only choice; scoring the
        whole answer let parameter tokens outvote it (`diffagent eval --agent llm:sft30 --limit 100`, see
        docs/benchmarks.md: model@1 0.20 with the whole answer, 0.27 with the name).
        """
        specs = [self.codec.spec_from_api(c) for c in candidates]
        responses = [self.codec.encode(spec) for spec in specs]
        with torch.inference_mode():
            logprobs = response_logprobs(self.model, prompt_ids, responses)
        spans = [self.codec.checkpoint_span(spec) for spec in specs]
        names = [float(lp[span].sum()) for lp, span in zip(logprobs, spans, strict=True)]
        means = [float(lp.mean()) for lp in logprobs]
        order = sorted(range(len(candidates)), key=lambda i: (-names[i], -means[i]))
        return [(candidates[i], names[i]) for i in order]


def safe_ranked(
    ranked: Sequence[tuple[APICall, float]], unsafe: frozenset[int]
) -> list[tuple[APICall, float]]:
    """``ranked`` without the calls whose checkpoint is in ``unsafe`` and without such LoRAs in the rest."""
    out = []
    for call, score in ranked:
        if call.checkpoint.model_id in unsafe:
            continue
        if any(lora.model_id in unsafe for lora in call.loras):
            call = call.model_copy(update={"loras": [lo for lo in call.loras if lo.model_id not in unsafe]})
        out.append((call, score))
    return out


def unsafe_models(store: Store, allow_nsfw: bool = False, allow_poi: bool = False) -> frozenset[int]:
    """Ids of the catalogue's explicit models (unless ``allow_nsfw``) and real-person ones (unless
    ``allow_poi``), by the levels :mod:`diffagent.catalog.safety` derives."""
    if allow_nsfw and allow_poi:
        return frozenset()
    rows = store.conn.execute(f"SELECT m.id, {safety_columns()} FROM models m")
    return frozenset(
        int(model_id)
        for model_id, explicit, person in rows
        if (explicit and not allow_nsfw) or (person and not allow_poi)
    )


def _default_model() -> str:
    for name in ("rrhf", "sft"):
        if (model_dir(name) / "diffagent.json").is_file():
            return name
    raise UserInputError("no trained LLM: run `diffagent train sft` (and `train rrhf`), or pass --model NAME")


def build_llm_agent(
    store: Store,
    examples: Sequence[Pair],
    *,
    model: str | None = None,
    unconstrained: bool = False,
    decoding: str | None = None,
    retriever: str | Agent | None = None,
    dtype: str = "auto",
    allow_nsfw: bool = False,
    allow_poi: bool = False,
) -> LLMAgent:
    """The LLM agent with trained model ``model`` (default: ``rrhf``, else ``sft``, under DIFFAGENT_HOME).

    ``unconstrained`` decodes freely; otherwise ``decoding`` is ``rerank`` (default) or ``trie``. The
    retriever that lists candidates defaults to the one the model was trained with; it learns from
    ``examples`` like any agent. ``dtype``: ``auto`` (bfloat16 where the CPU has native support),
    ``float32`` or ``bfloat16``. Safe by default like every agent: the retriever lists no explicit
    (``allow_nsfw``) or real-person (``allow_poi``) models, and an answer decoded to one is dropped.
    """
    if unconstrained and decoding not in (None, "free"):
        raise UserInputError(f"--unconstrained contradicts decoding {decoding!r}")
    dtypes = {"auto": inference_dtype(), "float32": torch.float32, "bfloat16": torch.bfloat16}
    if dtype not in dtypes:
        raise UserInputError(f"unknown dtype {dtype!r}: use {', '.join(dtypes)}")
    lm, tokenizer, meta = load_model(model or _default_model(), dtype=dtypes[dtype])
    prompt = PromptConfig.from_dict(meta.get("prompt"))
    if not isinstance(retriever, Agent):
        from . import load_agent

        retriever = load_agent(
            retriever or prompt.retriever, store, examples, allow_nsfw=allow_nsfw, allow_poi=allow_poi
        )
    codec = LLMCodec(tokenizer, CatalogNames.from_store(store), prompt)
    decoded = "free" if unconstrained else (decoding or "rerank")
    unsafe = unsafe_models(store, allow_nsfw, allow_poi)
    return LLMAgent(lm, codec, retriever, decoded, unsafe, published_vaes(store))
