"""Catalogue text is data: strip what could steer a generator, a path or a terminal out of it.

Names, trigger words and file names are written by strangers on Civitai. A trigger word of
``<lora:other:9>`` added to a prompt makes AUTOMATIC1111 load a LoRA the call never named; a file name of
``../../x`` becomes a path a generator opens; an escape sequence in a name clears the user's terminal.
These functions are the one place that knows what is dangerous; the catalogue calls them where text
enters (import and crawl), the agents where a prompt is assembled, the validator to check a final call,
and the output formats where a file name is written into a payload.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

__all__ = [
    "has_generator_syntax",
    "is_safe_file_name",
    "prompt_with_words",
    "strip_control",
    "strip_generator_syntax",
    "text_problem",
]

# Extra-network syntax as AUTOMATIC1111 parses it (``<TYPE:ARGS>``, any registered type: lora, lyco,
# hypernet, ...), and an opener left without its ``>``, which would swallow text up to the next tag a
# payload appends (``x:1><lora:../evil:5`` + `` <lora:file:1>``); ComfyUI's ``embedding:NAME``.
_EXTRA_NETWORK = re.compile(r"<\s*[A-Za-z_][\w-]*\s*:[^<>]*>")
_OPENER = re.compile(r"<\s*[A-Za-z_][\w-]*\s*:")
_EMBEDDING = re.compile(r"\bembedding\s*:\s*", re.IGNORECASE)

# ANSI / VT escape sequences: CSI (also the 8-bit one), OSC (set title, hyperlinks), and two-byte escapes.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[@-Z\\-_]"
)
# C0 and C1 controls, DEL, bidirectional overrides and isolates (which reorder what a terminal shows),
# and lone surrogates (which no terminal or file encoding accepts).
_CONTROLS = r"\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_CONTROL = re.compile(f"[{_CONTROLS}]")
_SPACES = re.compile(r"\s+")
_MAY_STEER = re.compile(f"[:{_CONTROLS}]")
"""Every tag, prefix and escape sequence above needs a colon or a control character."""

# A file name a payload may name: no directory part, nothing a shell, Windows or a prompt tag treats
# specially, not hidden and not ``.``/``..``.
_FILE_NAME_FORBIDDEN = re.compile(r'[/\\<>:"|?*' + _CONTROLS + "]")
MAX_FILE_NAME_BYTES = 255


def strip_control(text: str) -> str:
    """``text`` without escape sequences and control characters; whitespace controls become one space."""
    text = _ESCAPE_SEQUENCE.sub("", text)
    text = re.sub(r"[\t\n\r\v\f]+", " ", text)
    return _CONTROL.sub("", text)


@functools.lru_cache(maxsize=4096)  # the same prompt and negatives go into each alternative of an answer
def strip_generator_syntax(text: str) -> str:
    """``text`` without extra-network tags and ``embedding:`` prefixes, and without control characters,
    whitespace normalised: what a catalogue string may add to a prompt."""
    if _MAY_STEER.search(text):
        text = strip_control(text)
        text = _OPENER.sub(" ", _EXTRA_NETWORK.sub(" ", text))
        text = _EMBEDDING.sub("", text)
    text = re.sub(r"\s*,(\s*,)+", ",", _SPACES.sub(" ", text))  # ", ," left behind by a removed tag
    return text.strip(" ,")


def prompt_with_words(prompt: str, words: Iterable[str]) -> str:
    """``prompt`` with those catalogue ``words`` (trigger words) it lacks appended, all of it cleaned by
    :func:`strip_generator_syntax`: the one way an agent adds catalogue text to the prompt it sends."""
    prompt = strip_generator_syntax(prompt)
    lowered = prompt.lower()  # a plain substring test: a regex per word overflows re's cache (slow)
    missing: list[str] = []
    for word in map(strip_generator_syntax, words):
        for part in word.split(","):  # each comma-separated fragment once, never one the prompt has
            part = part.strip()
            if part and part.lower() not in lowered:
                missing.append(part)
                lowered += f", {part.lower()}"
    return ", ".join(part for part in (prompt, *missing) if part)


def has_generator_syntax(text: str) -> bool:
    """Whether ``text`` holds an extra-network tag (``<lora:...>``, ``<hypernet:...>``) or ``embedding:``."""
    return bool(_OPENER.search(text) or _EMBEDDING.search(text))


def is_safe_file_name(name: str) -> bool:
    """Whether ``name`` can be written into a payload as the file a generator loads: one plain name."""
    return (
        bool(name.strip())
        and name == name.strip()
        and not name.startswith(".")
        and not _FILE_NAME_FORBIDDEN.search(name)
        and len(name.encode("utf-8", "surrogatepass")) <= MAX_FILE_NAME_BYTES
    )


def text_problem(text: str) -> str | None:
    """Why catalogue ``text`` may not reach a prompt as it is, or None when it may."""
    if _CONTROL.search(text):  # every escape sequence starts with one
        return "control characters"
    if has_generator_syntax(text):
        return "generator syntax"
    return None
