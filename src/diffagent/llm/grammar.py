"""Constrained decoding: the model can only write an answer that parses and names catalogue models.

The answer's JSON skeleton is forced; name slots walk a token trie over catalogue names (LoRAs only those
compatible with the chosen checkpoint's base model, samplers only known ones); number slots take digits.
So hallucination is 0 by construction, whatever the weights. The grammar is a generator that yields the
allowed next tokens and receives the chosen one; replaying the generated tokens gives the current state,
so it plugs into ``generate(prefix_allowed_tokens_fn=...)`` without per-sequence bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

from ..catalog import family
from ..schema import KNOWN_SAMPLERS
from . import codec as c

__all__ = ["CallGrammar", "TokenTrie"]

Program = Generator[list[int], int, Any]


class _Node:
    __slots__ = ("children", "ids", "value")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.ids: list[int] = []
        self.value: Any = None


class TokenTrie:
    """Token sequences of prefix-free strings (JSON strings with their closing quote) and their values."""

    def __init__(self, items: Iterable[tuple[Sequence[int], Any]]) -> None:
        self.root = _Node()
        self.max_length = 0
        for ids, value in items:
            if not ids:
                raise ValueError("empty token sequence")
            node = self.root
            for token in ids:
                if node.value is not None:
                    raise ValueError(f"{value!r} extends another entry: the set is not prefix-free")
                node = node.children.setdefault(token, _Node())
            if node.children or node.value is not None:
                raise ValueError(f"{value!r} is a prefix of another entry or a duplicate")
            node.value = value
            self.max_length = max(self.max_length, len(ids))
        self._freeze(self.root)

    def _freeze(self, root: _Node) -> None:
        stack = [root]
        while stack:
            node = stack.pop()
            node.ids = list(node.children)
            stack.extend(node.children.values())

    def __bool__(self) -> bool:
        return bool(self.root.children)

    def walk(self) -> Program:
        """Yield the allowed tokens until a leaf; return its value."""
        node = self.root
        while node.value is None:
            token = yield node.ids
            if token not in node.children:
                raise ValueError(f"token {token} leaves the trie")
            node = node.children[token]
        return node.value


class CallGrammar:
    """The answer language of :class:`~.codec.LLMCodec` over one catalogue, at token level."""

    def __init__(self, codec: c.LLMCodec) -> None:
        self.codec = codec
        catalog = codec.catalog
        names = list(catalog.checkpoints)
        self._checkpoints = TokenTrie(zip(codec.names_ids(names), names, strict=True))
        self._samplers = TokenTrie(zip(codec.names_ids(KNOWN_SAMPLERS), KNOWN_SAMPLERS, strict=True))
        loras = list(catalog.loras)
        self._lora_ids = dict(zip(loras, codec.names_ids(loras), strict=True))
        self._lora_tries: dict[str | None, TokenTrie] = {}
        sampler = codec.piece_ids("lit", c.SAMPLER)
        self._first = TokenTrie([(codec.piece_ids("lit", c.FIRST_LORA), True), (sampler, False)])
        self._next = TokenTrie([(codec.piece_ids("lit", c.NEXT_LORA), True), (sampler, False)])
        self._done = TokenTrie([(sampler, False)])
        digits = [codec.char_ids[d] for d in "0123456789"]
        self._digits = digits
        self._dot, self._minus = codec.char_ids["."], codec.char_ids["-"]
        self.max_length = self._max_length()
        """An upper bound on an answer's tokens, for ``max_new_tokens``."""

    def _loras_for(self, checkpoint: str) -> TokenTrie:
        """LoRAs that suit the checkpoint's base-model family (all of them for an unknown family)."""
        fam = family(self.codec.catalog.checkpoints[checkpoint].base_model)
        if fam not in self._lora_tries:
            names = [
                n
                for n, e in self.codec.catalog.loras.items()
                if fam is None or family(e.base_model) in (fam, None)
            ]
            self._lora_tries[fam] = TokenTrie((self._lora_ids[n], n) for n in names)
        return self._lora_tries[fam]

    def _literal(self, text: str) -> Program:
        for expected in self.codec.piece_ids("lit", text):
            token = yield [expected]
            if token != expected:
                raise ValueError(f"token {token} breaks the literal {text!r}")

    def _number(self, slot: c.NumberSlot, follow: str) -> Program:
        """Digits of ``slot``, then the literal ``follow`` (whose first token ends the number)."""
        stop, *rest = self.codec.piece_ids("lit", follow)
        int_digits = decimals = 0
        dotted = signed = zero = False  # zero: the integer part is a leading 0 (JSON allows no 07)
        while True:
            allowed: list[int] = []
            if not dotted and not zero and int_digits < slot.int_digits:
                allowed += self._digits
            if dotted and decimals < slot.decimals:
                allowed += self._digits
            if slot.signed and not signed and int_digits == 0:
                allowed.append(self._minus)
            if int_digits and not dotted and slot.decimals:
                allowed.append(self._dot)
            if int_digits and (not dotted or decimals):
                allowed.append(stop)
            token = yield allowed
            if token not in allowed:
                raise ValueError(f"token {token} is not allowed in a number")
            if token == stop:
                break
            if token == self._minus:
                signed = True
            elif token == self._dot:
                dotted = True
            elif dotted:
                decimals += 1
            else:
                zero = int_digits == 0 and token == self._digits[0]
                int_digits += 1
        for expected in rest:
            token = yield [expected]
            if token != expected:
                raise ValueError(f"token {token} breaks the literal {follow!r}")

    def program(self) -> Program:
        """The whole answer, ending with the end-of-sequence token."""
        yield from self._literal(c.OPEN)
        checkpoint = yield from self._checkpoints.walk()
        loras = self._loras_for(checkpoint)
        yield from self._literal(c.LORAS)
        count = 0
        while True:
            options = self._first if count == 0 else self._next
            more = yield from (
                options if loras and count < self.codec.prompt.max_loras else self._done
            ).walk()
            if not more:
                break
            yield from loras.walk()
            yield from self._literal(c.LORA_WEIGHT)
            yield from self._number(c.WEIGHT_SLOT, c.LORA_CLOSE)
            count += 1
        yield from self._samplers.walk()
        yield from self._literal(c.STEPS)
        yield from self._number(c.STEPS_SLOT, c.CFG)
        yield from self._number(c.CFG_SLOT, c.WIDTH)
        yield from self._number(c.SIZE_SLOT, c.HEIGHT)
        yield from self._number(c.SIZE_SLOT, c.CLIP)
        yield from self._number(c.CLIP_SLOT, c.CLOSE)
        yield [self.codec.eos_id]

    def allowed(self, generated: Sequence[int]) -> list[int]:
        """The tokens that may follow ``generated`` (only end-of-sequence once the answer is complete)."""
        cursor = _Cursor(self)
        cursor.feed(generated)
        return cursor.allowed

    def prefix_fn(self, prompt_length: int) -> Callable[[int, Any], list[int]]:
        """A ``prefix_allowed_tokens_fn`` for ``generate`` on prompts of ``prompt_length`` tokens.

        A cursor is kept per generated prefix and advanced by the newest token, so a step costs O(1)
        rather than a replay (``generate`` gives no stable row id; rows that share a prefix replay).
        """
        cursors: dict[tuple[int, ...], _Cursor] = {}

        def allowed(batch_id: int, input_ids: Any) -> list[int]:
            generated = tuple(input_ids[prompt_length:].tolist())
            cursor = cursors.pop(generated[:-1], None) if generated else None
            if cursor is None:
                cursor = _Cursor(self)
                cursor.feed(generated)
            else:
                cursor.feed(generated[-1:])
            cursors[generated] = cursor
            return cursor.allowed

        return allowed

    def _max_length(self) -> int:
        pieces = self.codec.piece_ids
        fixed = (c.OPEN, c.LORAS, c.SAMPLER, c.STEPS, c.CFG, c.WIDTH, c.HEIGHT, c.CLIP, c.CLOSE)
        lora_name = max((len(ids) for ids in self._lora_ids.values()), default=0)
        lora = sum(len(pieces("lit", x)) for x in (c.NEXT_LORA, c.LORA_WEIGHT, c.LORA_CLOSE)) + lora_name + 5
        numbers = 3 + 5 + 4 + 4 + 2
        return (
            sum(len(pieces("lit", x)) for x in fixed)
            + self._checkpoints.max_length
            + self.codec.prompt.max_loras * lora
            + self._samplers.max_length
            + numbers
            + 1
        )


class _Cursor:
    """A position in the grammar, advanced one token at a time."""

    def __init__(self, grammar: CallGrammar) -> None:
        self.eos = grammar.codec.eos_id
        self.program = grammar.program()
        self.allowed: list[int] = next(self.program)
        self.done = False

    def feed(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            if self.done:
                continue
            try:
                self.allowed = self.program.send(token)
            except StopIteration:
                self.done, self.allowed = True, [self.eos]
