"""DABench pairs: one instruction and its ground-truth API call, as fixed in DESIGN.md."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from .._io import write_jsonl
from ..errors import UserInputError
from ..schema import APICall

__all__ = ["SPLITS", "Pair", "PairSource", "load_pairs", "save_pairs"]

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
