"""DABench: instruction-API pairs built from the catalogue, and the harness that scores agents on them."""

from .build import BenchReport, build_bench, ensure_bench
from .pairs import SPLITS, Pair, PairSource, load_pairs, save_pairs

__all__ = [
    "SPLITS",
    "BenchReport",
    "Pair",
    "PairSource",
    "build_bench",
    "ensure_bench",
    "load_pairs",
    "save_pairs",
]
