"""DABench: instruction-API pairs built from the catalogue, and the harness that scores agents on them.

The builder (numpy, scipy) is imported on first use of its names, so that reading pairs stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .pairs import SPLITS, Pair, PairFiles, PairSource, load_pairs, save_pairs

if TYPE_CHECKING:
    from .build import BenchReport, build_bench, ensure_bench

__all__ = [
    "SPLITS",
    "BenchReport",
    "Pair",
    "PairFiles",
    "PairSource",
    "build_bench",
    "ensure_bench",
    "load_pairs",
    "save_pairs",
]

_LAZY = {"BenchReport": ".build", "build_bench": ".build", "ensure_bench": ".build"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
