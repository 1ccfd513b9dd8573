"""The hashes Civitai and the generators know a model file by, from one read of the file.

SHA256 is the file's; AutoV2 is its first 10 hex digits (AUTOMATIC1111's "Model hash"); AutoV3 is the
SHA256 of a ``.safetensors`` file's tensor data after its JSON header, so a file whose metadata was edited
keeps it (AUTOMATIC1111 writes its first 12 digits as a LoRA's hash in "Lora hashes").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileHashes", "hash_file"]

_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileHashes:
    sha256: str
    autov3: str | None
    """None for files without a safetensors header (``.ckpt``, ``.pt``)."""

    @property
    def autov2(self) -> str:
        return self.sha256[:10]


def _safetensors_offset(path: Path, size: int) -> int | None:
    """Where the tensor data starts (8 + header length), or None when the file is not safetensors."""
    with path.open("rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return None
    length = int.from_bytes(head[:8], "little")
    return 8 + length if head[8:9] == b"{" and 8 + length <= size else None


def hash_file(path: Path, progress: Callable[[int], None] | None = None) -> FileHashes:
    """SHA256 and (for safetensors) AutoV3 of ``path`` in one pass; ``progress(bytes)`` after each block."""
    size = path.stat().st_size
    offset = _safetensors_offset(path, size)
    whole, tensors = hashlib.sha256(), hashlib.sha256()
    seen = 0
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            whole.update(block)
            if offset is not None and seen + len(block) > offset:
                tensors.update(block[max(0, offset - seen) :])
            seen += len(block)
            if progress is not None:
                progress(len(block))
    return FileHashes(whole.hexdigest(), tensors.hexdigest() if offset is not None else None)
