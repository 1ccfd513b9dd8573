"""DABench: instruction-API pairs built from the catalogue, and the harness that scores agents on them."""

from .pairs import SPLITS, Pair, PairSource, load_pairs, save_pairs

__all__ = ["SPLITS", "Pair", "PairSource", "load_pairs", "save_pairs"]
