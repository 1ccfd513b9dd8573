"""DABench pairs: one instruction and its ground-truth API call, as fixed in DESIGN.md."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

from pydantic import BaseModel, ValidationError

from .._io import write_jsonl
from ..errors import UserInputError
from ..schema import APICall

__all__ = ["SPLITS", "Pair", "PairFiles", "PairSource", "load_pairs", "save_pairs"]

SPLITS = ("train", "val", "test")


class PairSource(BaseModel):
    model_id: int
    version_id: int
    image_id: int


class Pair(BaseModel):
    id: str
    instruction: str
    api: APICall
    source: PairSource
    novel: bool | None = None
    """Only in test: no near-duplicate of this prompt in train."""


def load_pairs(path: str | Path) -> list[Pair]:
    """Read a pairs file; a line that is not a valid pair is a one-line error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"no such pairs file: {path}")
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                pairs.append(Pair.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValidationError) as exc:
                reason = str(exc).splitlines()[0]
                raise UserInputError(f"{path}:{number}: not a DABench pair ({reason})") from None
    return pairs


def save_pairs(path: str | Path, pairs: Iterable[Pair]) -> int:
    return write_jsonl(path, (pair.model_dump(exclude_none=True) for pair in pairs))


class PairFiles(Sequence[Pair]):
    """The pairs of some splits of a built DABench folder, read only when first used.

    ``fingerprint`` names their content without reading them (the bench manifest and the split files'
    sizes), so an agent whose index for these pairs is cached never parses the 30,000 lines.
    """

    def __init__(self, folder: Path, splits: Sequence[str]) -> None:
        self.paths = [folder / f"{split}.jsonl" for split in dict.fromkeys(splits)]
        digest = hashlib.blake2b(digest_size=12)
        manifest = folder / "manifest.json"
        digest.update(manifest.read_bytes() if manifest.is_file() else b"no manifest")
        for path in self.paths:
            digest.update(f"|{path.name}:{path.stat().st_size if path.is_file() else -1}".encode())
        self.fingerprint = digest.hexdigest()
        self._pairs: list[Pair] | None = None

    def _load(self) -> list[Pair]:
        if self._pairs is None:
            self._pairs = [pair for path in self.paths for pair in load_pairs(path)]
        return self._pairs

    @overload
    def __getitem__(self, index: int) -> Pair: ...
    @overload
    def __getitem__(self, index: slice) -> list[Pair]: ...
    def __getitem__(self, index: int | slice) -> Pair | list[Pair]:
        return self._load()[index]

    def __len__(self) -> int:
        return len(self._load())

    def __iter__(self) -> Iterator[Pair]:
        return iter(self._load())
