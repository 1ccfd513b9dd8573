"""One rule for every file name diffagent writes or a payload names: catalogue text is data, never a path or
generator syntax (a base module: library downloads and execute payloads both use it).

A catalogue file called ``../../etc/passwd`` or ``x:9> <lora:evil`` must reach AUTOMATIC1111, ComfyUI and
diffusers as a plain name inside the generator's model folder, nothing else.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["safe_file_name", "safe_stem", "written_stem"]

_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{n}" for n in range(1, 10)),
    *(f"LPT{n}" for n in range(1, 10)),
}
"""Names Windows keeps for devices, whatever the extension (``nul.safetensors`` opens the null device)."""

_MAX_BYTES = 200
"""Below every common file system's 255-byte limit, with room for a ``.part`` suffix."""

# Path separators, A1111 tag syntax (< > :) and the characters Windows forbids become underscores;
# control characters are dropped and runs of white space become one space.
_UNSAFE = re.compile(r'[/\\<>:"|?*]+')


def safe_file_name(name: str, fallback: str = "model.safetensors") -> str:
    """``name`` as a single safe file name: no separators, no ``..``, no control or tag characters.

    Ordinary names (spaces, parentheses, any script) are kept, so a user's own file is named as it is.
    """
    text = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    text = re.sub(r"\s+", " ", _UNSAFE.sub("_", text))
    text = re.sub(r"\.{2,}", ".", text).strip(" ._")  # no '..', no hidden or dot-only names
    while len(text.encode()) > _MAX_BYTES:
        stem, dot, ext = text.rpartition(".")
        text = (stem[:-1] + dot + ext) if dot and len(ext) <= 12 and stem else text[:-1]
    if not re.search(r"\w", text):
        return fallback
    stem = text.split(".", 1)[0].upper()
    return f"_{text}" if stem in _RESERVED else text


def safe_stem(name: str) -> str:
    """The safe name without its extension: what ``<lora:NAME:W>`` takes."""
    clean = safe_file_name(name)
    stem, dot, _ = clean.rpartition(".")
    return stem if dot and stem else clean


def written_stem(name: str) -> str:
    """How a prompt names a file: its name without the last extension, lower-cased, not made safe
    (for matching what a user or an uploader wrote, never for writing)."""
    return re.sub(r"\.[^.]+$", "", name).lower()
