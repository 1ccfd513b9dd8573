"""One rule for every file name diffagent writes or a payload names: catalogue text is data, never a path or
generator syntax (a base module: library downloads and execute payloads both use it).

A catalogue file called ``../../etc/passwd`` or ``x:9> <lora:evil`` must reach AUTOMATIC1111, ComfyUI and
diffusers as a plain name inside the generator's model folder, nothing else.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["safe_file_name", "safe_stem"]

_MAX_BYTES = 200
"""Below every common file system's 255-byte limit, with room for a ``.part`` suffix."""

# Path separators, A1111 tag syntax (< > :), Windows-reserved characters, and ComfyUI's embedding
# delimiters (comma, parentheses) become underscores; control characters are dropped below.
_UNSAFE = re.compile(r"[/\\<>:\"|?*,()\[\]{}]+|\s+")


def safe_file_name(name: str, fallback: str = "model.safetensors") -> str:
    """``name`` as a single safe file name: no separators, no ``..``, no control or tag characters.

    Spaces become underscores too, so that the name survives a prompt tag or an ``embedding:`` word.
    """
    text = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    text = _UNSAFE.sub("_", text)
    text = re.sub(r"\.{2,}", ".", text).strip(" ._")  # no '..', no hidden or dot-only names
    while len(text.encode()) > _MAX_BYTES:
        stem, dot, ext = text.rpartition(".")
        text = (stem[:-1] + dot + ext) if dot and len(ext) <= 12 and stem else text[:-1]
    return text if re.search(r"\w", text) else fallback


def safe_stem(name: str) -> str:
    """The safe name without its extension: what ``<lora:NAME:W>`` and ``embedding:NAME`` take."""
    clean = safe_file_name(name)
    stem, dot, _ = clean.rpartition(".")
    return stem if dot and stem else clean
