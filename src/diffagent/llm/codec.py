"""How the LLM agent reads a request and writes an API call: catalogue names, prompt, answer JSON, tokens.

The answer is a compact JSON array that names models, not ids (ids are filled from the catalogue after)::

    ["Realistic Vision V2.0",[["add_detail",0.8]],"DPM++ 2M Karras",25,7,512,768,1]

that is ``[checkpoint, [[lora, weight], ...], sampler, steps, cfg_scale, width, height, clip_skip]``.
Positions instead of keys make it about a third shorter, and every token costs time on a CPU.

It is tokenized piece by piece (JSON punctuation, a name with its closing quote, a number one character at
a time), never across a piece boundary. Training targets, candidate scoring and constrained decoding
(:mod:`.grammar`) therefore see the very same token sequences, and a name slot is a plain token trie.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..catalog import CatalogFilter, ModelEntry, Store, default_size, family_spec, latest_versions, recipe
from ..catalog.validate import CFG_RANGE, CLIP_SKIP_RANGE, LORA_WEIGHT_RANGE, SIZE_RANGE, STEPS_RANGE
from ..errors import UserInputError
from ..schema import APICall, Checkpoint, LoRA, normalize_sampler
from ..textsafety import prompt_with_words, strip_generator_syntax
from .config import PromptConfig

__all__ = [
    "SYSTEM_PROMPT",
    "CallSpec",
    "CatalogNames",
    "LLMCodec",
    "NumberSlot",
]

SYSTEM_PROMPT = (
    "Pick a Stable Diffusion checkpoint, LoRAs and settings for the prompt. Reply with a JSON API call."
)

# The pieces of the answer, shared by the encoder and the grammar.
OPEN = '["'
LORAS = ",["
FIRST_LORA = '["'
NEXT_LORA = ',["'
LORA_WEIGHT = ","
LORA_CLOSE = "]"
SAMPLER = '],"'
STEPS = ","
CFG = ","
WIDTH = ","
HEIGHT = ","
CLIP = ","
CLOSE = "]"


@dataclass(frozen=True)
class NumberSlot:
    """A number in the answer: its digits, decimals, sign and the range it is clamped to."""

    int_digits: int
    decimals: int
    signed: bool
    low: float
    high: float

    def format(self, value: float) -> str:
        value = min(max(float(value), self.low), self.high)
        if self.decimals == 0:
            return str(round(value))
        text = f"{value:.{self.decimals}f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text


STEPS_SLOT = NumberSlot(3, 0, False, 1, 150)
CFG_SLOT = NumberSlot(2, 2, False, 0, 30)
WEIGHT_SLOT = NumberSlot(1, 2, True, -5, 5)
SIZE_SLOT = NumberSlot(4, 0, False, 64, 4096)
CLIP_SLOT = NumberSlot(2, 0, False, 1, 12)


class CatalogNames:
    """The checkpoint and LoRA names an answer may use, each the latest usable version of its model.

    Names are matched exactly. Where models share a name, the most downloaded one keeps it and the others
    are labelled ``NAME #MODEL_ID``, so that every label stands for one model.
    """

    def __init__(self, entries: Iterable[ModelEntry]) -> None:
        self.by_model: dict[int, ModelEntry] = {}
        self.labels: dict[int, str] = {}
        self.checkpoints: dict[str, ModelEntry] = {}
        self.loras: dict[str, ModelEntry] = {}
        for entry in sorted(entries, key=lambda e: (-e.downloads, e.model_id)):
            table = {"Checkpoint": self.checkpoints, "LORA": self.loras}.get(entry.type or "")
            if table is None or not entry.name:
                continue
            label = entry.name if entry.name not in table else f"{entry.name} #{entry.model_id}"
            table[label] = self.by_model[entry.model_id] = entry
            self.labels[entry.model_id] = label

    @classmethod
    def from_store(cls, store: Store, flt: CatalogFilter | None = None) -> CatalogNames:
        """The names of the models ``flt`` selects; by default DABench's (Civitai's own flags, not the
        derived safety levels), so that every training pair's checkpoint has a name."""
        entries = latest_versions(store, flt or CatalogFilter(rated_safety=False))
        if not any(e.type == "Checkpoint" for e in entries):
            raise UserInputError(
                "the catalogue has no usable checkpoint: run `diffagent catalog import PATH`"
            )
        return cls(entries)

    def name_of(self, model_id: int, fallback: str) -> str:
        """The label of a catalogue model, or ``fallback`` for a model outside the catalogue."""
        return self.labels.get(model_id, fallback)


@dataclass(frozen=True)
class CallSpec:
    """What the answer JSON says. Parsed from free generation, any field may be missing (None)."""

    checkpoint: str
    loras: tuple[tuple[str, float], ...] = ()
    sampler: str | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    clip_skip: int | None = None


def _quoted(name: str) -> str:
    """A JSON string's content with its closing quote: the unit a name slot holds."""
    return json.dumps(name, ensure_ascii=False)[1:]


def _layout(spec: CallSpec) -> Iterator[tuple[str, str]]:
    """The answer as ("lit" | "name" | "num", text) pieces, in order."""
    if None in (spec.sampler, spec.steps, spec.cfg_scale, spec.width, spec.height, spec.clip_skip):
        raise ValueError("an answer to write needs every field")
    yield "lit", OPEN
    yield "name", spec.checkpoint
    yield "lit", LORAS
    for index, (name, weight) in enumerate(spec.loras):
        yield "lit", FIRST_LORA if index == 0 else NEXT_LORA
        yield "name", name
        yield "lit", LORA_WEIGHT
        yield "num", WEIGHT_SLOT.format(weight)
        yield "lit", LORA_CLOSE
    yield "lit", SAMPLER
    yield "name", spec.sampler  # type: ignore[misc]
    for literal, slot, value in (
        (STEPS, STEPS_SLOT, spec.steps),
        (CFG, CFG_SLOT, spec.cfg_scale),
        (WIDTH, SIZE_SLOT, spec.width),
        (HEIGHT, SIZE_SLOT, spec.height),
        (CLIP, CLIP_SLOT, spec.clip_skip),
    ):
        yield "lit", literal
        yield "num", slot.format(value)  # type: ignore[arg-type]
    yield "lit", CLOSE


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def _clip_skip(checkpoint: Checkpoint) -> int:
    spec = family_spec(checkpoint.base_model or None)
    return spec.clip_skip if spec else 1


def _side(value: int) -> int:
    """An image side a generator accepts: a multiple of 8 within the allowed range."""
    return round(_clamp(value, SIZE_RANGE) / 8) * 8


def _integer(value: Any) -> int | None:
    number = _number(value)
    return round(number) if number is not None else None


class LLMCodec:
    """Prompt and answer <-> text <-> tokens for one tokenizer and one catalogue."""

    def __init__(self, tokenizer: Any, catalog: CatalogNames, prompt: PromptConfig | None = None) -> None:
        self.tokenizer = tokenizer
        self.catalog = catalog
        self.prompt = prompt or PromptConfig()
        if tokenizer.eos_token_id is None:
            raise UserInputError("the model's tokenizer has no end-of-sequence token")
        self.eos_id: int = tokenizer.eos_token_id
        self._cache: dict[str, list[int]] = {}
        self.char_ids: dict[str, int] = {}
        for char in "0123456789.-":
            ids = self._encode(char)
            if len(ids) != 1:
                raise UserInputError(f"the tokenizer splits {char!r} into several tokens: use a BPE model")
            self.char_ids[char] = ids[0]
        for probe in (OPEN, _quoted("Réalistic Vision V3.0"), SAMPLER, LORAS):
            if self.tokenizer.decode(self._encode(probe)) != probe:
                raise UserInputError("the tokenizer does not round-trip text: use a byte-level BPE model")

    # -- tokens --------------------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def piece_ids(self, kind: str, text: str) -> list[int]:
        """Tokens of one answer piece: a literal, a name (its closing quote included) or a number."""
        if kind == "num":
            return [self.char_ids[char] for char in text]
        key = _quoted(text) if kind == "name" else text
        if key not in self._cache:
            self._cache[key] = self._encode(key)
        return self._cache[key]

    def names_ids(self, names: Sequence[str]) -> list[list[int]]:
        """Tokens of many name slots at once (batched tokenization, for building tries)."""
        if not names:
            return []
        return self.tokenizer([_quoted(n) for n in names], add_special_tokens=False)["input_ids"]

    def encode(self, spec: CallSpec) -> list[int]:
        """The answer's tokens followed by end-of-sequence: the training target and the scored response."""
        return [t for kind, text in _layout(spec) for t in self.piece_ids(kind, text)] + [self.eos_id]

    def checkpoint_span(self, spec: CallSpec) -> slice:
        """Where the checkpoint's name (its closing quote included) lies in :meth:`encode`'s tokens."""
        start = len(self.piece_ids("lit", OPEN))
        return slice(start, start + len(self.piece_ids("name", spec.checkpoint)))

    def encode_text(self, text: str) -> list[int]:
        """Tokens of an answer text (as stored in RRHF files): canonical when it is, else plain."""
        spec = self.parse(text)
        if spec is not None:
            try:
                if self.render(spec) == text:
                    return self.encode(spec)
            except ValueError:
                pass
        return [*self._encode(text), self.eos_id]

    # -- text ----------------------------------------------------------------------------------------

    def render(self, spec: CallSpec) -> str:
        return "".join(_quoted(text) if kind == "name" else text for kind, text in _layout(spec))

    def spec_from_api(self, api: APICall) -> CallSpec:
        """The answer that writes ``api``, with catalogue names (LoRAs beyond ``max_loras`` dropped)."""
        sampler = normalize_sampler(api.sampler) or api.sampler
        return CallSpec(
            checkpoint=self.catalog.name_of(api.checkpoint.model_id, api.checkpoint.name),
            loras=tuple(
                (self.catalog.name_of(lora.model_id, lora.name), lora.weight)
                for lora in api.loras[: self.prompt.max_loras]
            ),
            sampler=sampler,
            steps=api.steps,
            cfg_scale=api.cfg_scale,
            width=api.width,
            height=api.height,
            clip_skip=api.clip_skip,
        )

    @staticmethod
    def parse(text: str) -> CallSpec | None:
        """The fields of a generated answer, leniently: missing or mistyped fields become None.

        None when not even a checkpoint name can be found.
        """
        start = text.find("[")
        value: Any = None
        if start >= 0:
            try:
                value, _ = json.JSONDecoder().raw_decode(text[start:])
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, list) or not value or not isinstance(value[0], str):
            found = re.search(r'"((?:[^"\\]|\\.)*)"', text)
            if not found:
                return None
            try:
                return CallSpec(checkpoint=json.loads(f'"{found.group(1)}"'))
            except json.JSONDecodeError:
                return CallSpec(checkpoint=found.group(1))
        fields = [*value, *[None] * 8][:8]
        loras = []
        for item in fields[1] if isinstance(fields[1], list) else []:
            if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str):
                weight = _number(item[1])
                loras.append((item[0], 1.0 if weight is None else weight))
        return CallSpec(
            checkpoint=fields[0],
            loras=tuple(loras),
            sampler=fields[2] if isinstance(fields[2], str) else None,
            steps=_integer(fields[3]),
            cfg_scale=_number(fields[4]),
            width=_integer(fields[5]),
            height=_integer(fields[6]),
            clip_skip=_integer(fields[7]),
        )

    def to_api(self, spec: CallSpec | None, instruction: str, fallback: APICall | None = None) -> APICall:
        """The executable call an answer stands for; ids come from the catalogue by exact name.

        A name the catalogue lacks keeps its text with ``model_id`` and ``version_id`` 0 (a hallucination
        for the metrics). Missing parameters and the negative prompt come from ``fallback``, the
        retriever's top candidate; numbers are clamped to what a generator accepts.
        """
        spec = spec or CallSpec(checkpoint="")
        entry = self.catalog.checkpoints.get(spec.checkpoint)
        checkpoint = (
            Checkpoint(model_id=entry.model_id, version_id=entry.version_id, name=entry.name,
                       base_model=entry.base_model or "Other")
            if entry is not None
            else Checkpoint(model_id=0, version_id=0, name=spec.checkpoint, base_model="")
        )  # fmt: skip
        loras: list[LoRA] = []
        words: list[str] = []
        for name, weight in dict(spec.loras).items():
            found = self.catalog.loras.get(name)
            loras.append(
                LoRA(model_id=found.model_id if found else 0, version_id=found.version_id if found else 0,
                     name=found.name if found else name, weight=_clamp(weight, LORA_WEIGHT_RANGE),
                     trigger_words=[w for w in map(strip_generator_syntax, found.trained_words) if w]
                     if found else [])
            )  # fmt: skip
            if found and found.trained_words:
                words.append(found.trained_words[0])
        missing = [w for w in words if w.lower() not in instruction.lower()]
        usual = recipe(checkpoint.base_model or None, checkpoint.name)
        width, height = default_size(checkpoint.base_model or None)
        if fallback is not None:
            width, height = fallback.width, fallback.height
        fallback_clip = fallback.clip_skip if fallback else _clip_skip(checkpoint)
        fallback_cfg = fallback.cfg_scale if fallback else usual.cfg_scale
        cfg = spec.cfg_scale if spec.cfg_scale is not None else fallback_cfg
        return APICall(
            checkpoint=checkpoint,
            loras=loras,
            prompt=prompt_with_words(instruction, missing),
            negative_prompt=fallback.negative_prompt if fallback else "",
            sampler=normalize_sampler(spec.sampler)
            or spec.sampler
            or (fallback.sampler if fallback else usual.sampler),
            steps=round(_clamp(spec.steps or (fallback.steps if fallback else usual.steps), STEPS_RANGE)),
            cfg_scale=_clamp(cfg, CFG_RANGE),
            width=_side(spec.width or width),
            height=_side(spec.height or height),
            clip_skip=round(_clamp(spec.clip_skip or fallback_clip, CLIP_SKIP_RANGE)),
            seed=-1,
        )

    # -- prompt --------------------------------------------------------------------------------------

    def _candidate_line(self, index: int, call: APICall) -> str:
        """``N. NAME (BASE; TAG, TAG) SAMPLER, STEPS steps, cfg CFG, WxH[, loras: NAME, ...]``"""
        entry = self.catalog.by_model.get(call.checkpoint.model_id)
        name = self.catalog.name_of(call.checkpoint.model_id, call.checkpoint.name)
        tags = f"; {', '.join(entry.tags[:2])}" if entry and entry.tags else ""
        line = (
            f"{index}. {name} ({call.checkpoint.base_model}{tags}) {call.sampler}, {call.steps} steps, "
            f"cfg {CFG_SLOT.format(call.cfg_scale)}, {call.width}x{call.height}"
        )
        if call.loras:
            named = (self.catalog.name_of(lo.model_id, lo.name) for lo in call.loras[: self.prompt.max_loras])
            line += f", loras: {', '.join(named)}"
        return line

    def prompt_text(self, instruction: str, candidates: Sequence[APICall]) -> str:
        """The chat prompt: the instruction (cut to ``max_instruction_tokens``) and the candidates."""
        ids = self._encode(instruction.strip())
        if len(ids) > self.prompt.max_instruction_tokens:
            instruction = self.tokenizer.decode(ids[: self.prompt.max_instruction_tokens])
        lines = [f"Prompt: {instruction.strip()}", "Candidates:"]
        lines += [self._candidate_line(i, c) for i, c in enumerate(candidates[: self.prompt.n_candidates], 1)]
        user = "\n".join(lines)
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{SYSTEM_PROMPT}\n\n{user}\n\nAnswer: "

    def prompt_ids(self, text: str) -> list[int]:
        return self._encode(text)
