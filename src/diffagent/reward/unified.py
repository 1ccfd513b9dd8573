"""The unified image reward of DESIGN.md: CLIP score, ImageReward and HPS v2 on one scale.

Formula (version ``unified-v1``)::

    U(p, x) = (1 / K) * sum_k (s_k(p, x) - mu_k) / sigma_k,     k in {clip, imagereward, hpsv2}, K = 3

``s_k(p, x)`` is scorer k's score of prompt p and image x (``clip``: 100 * max(cos, 0) of CLIP;
``imagereward``: ImageReward's published standardised output; ``hpsv2``: HPS v2's cosine). ``mu_k`` and
``sigma_k`` are the mean and the sample standard deviation (ddof = 1) of ``s_k`` over one reference set R
of (prompt, image) pairs, the same R for every scorer. Each term is then a z-score: 0 is a typical
reference image, +1 one reference standard deviation better, and the three scorers weigh the same
whatever their native scales (CLIP score ~ 30, ImageReward ~ N(0, 1), HPS v2 ~ 0.27).

The statistics are data, versioned beside the formula in ``reference_stats.json``: its ``version`` names
the formula and the statistics together, and every report names that version. They can only be measured
with real weights on real images; :func:`compute_reference_stats` does it on a user's machine and
:meth:`ReferenceStats.save` writes a new versioned file. The packaged file carries the formula and no
statistics yet (these machines have no weights): the metric then refuses to run rather than guess.
PickScore stays out of the sum, as an independent check of it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .._io import atomic_open
from ..errors import UserInputError
from .base import ImageLike, ImageScorer

__all__ = [
    "HELD_OUT_SCORERS",
    "UNIFIED_SCORERS",
    "UNIFIED_VERSION",
    "ReferenceStats",
    "ScorerStats",
    "UnifiedMetric",
    "compute_reference_stats",
    "stats_in_effect",
    "unified_score",
    "user_stats_path",
]

UNIFIED_VERSION = "unified-v1"
UNIFIED_SCORERS = ("clip", "imagereward", "hpsv2")
HELD_OUT_SCORERS = ("pickscore",)
FORMULA = (
    "U = mean_k (s_k - mu_k) / sigma_k; "
    "mu_k, sigma_k: mean and sample std (ddof=1) of s_k over the reference set"
)
PACKAGED_STATS = Path(__file__).with_name("reference_stats.json")


def user_stats_path() -> Path:
    """Where ``diffagent reward stats`` writes the statistics in effect: ``DIFFAGENT_HOME/reward/``."""
    from ..config import home

    return home() / "reward" / "reference_stats.json"


def stats_in_effect() -> Path:
    """The statistics the metric uses when none are named: the user's measured ones, else the packaged."""
    path = user_stats_path()
    return path if path.is_file() else PACKAGED_STATS


@dataclass(frozen=True)
class ScorerStats:
    """One scorer's score distribution over the reference set; ``model`` says which weights produced it."""

    mean: float
    std: float
    n: int
    model: str | None = None


@dataclass(frozen=True)
class ReferenceStats:
    """A versioned set of reference statistics: what :class:`UnifiedMetric` standardises with."""

    version: str
    scorers: tuple[str, ...]
    stats: Mapping[str, ScorerStats | None]
    reference: str | None
    formula: str = FORMULA

    @classmethod
    def load(cls, path: str | Path | None = None) -> ReferenceStats:
        """The statistics in ``path``; when None, those in effect (:func:`stats_in_effect`)."""
        path = Path(path) if path is not None else stats_in_effect()
        if not path.is_file():
            raise UserInputError(f"no such reference statistics file: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            stats = {name: None if s is None else ScorerStats(**s) for name, s in data["stats"].items()}
            return cls(
                version=data["version"],
                scorers=tuple(data["scorers"]),
                stats=stats,
                reference=data.get("reference"),
                formula=data.get("formula", FORMULA),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserInputError(f"{path}: not a reference statistics file ({exc})") from None

    def save(self, path: str | Path) -> None:
        data = {
            "version": self.version,
            "formula": self.formula,
            "scorers": list(self.scorers),
            "reference": self.reference,
            "stats": {name: None if s is None else asdict(s) for name, s in self.stats.items()},
        }
        with atomic_open(path) as handle:
            handle.write(json.dumps(data, indent=2) + "\n")

    def require(self) -> dict[str, ScorerStats]:
        """Every scorer's statistics, or a clear error naming those not yet measured."""
        missing = [name for name in self.scorers if self.stats.get(name) is None]
        if missing:
            raise UserInputError(
                f"reference statistics {self.version} have no values for {', '.join(missing)}: measure them "
                "with `diffagent reward stats DIR` on real weights and a reference set of images"
            )
        return {name: self.stats[name] for name in self.scorers}  # type: ignore[misc]


def _check_scorer_names(names: Sequence[str]) -> None:
    held_out = [name for name in names if name in HELD_OUT_SCORERS]
    if held_out:
        raise UserInputError(
            f"{', '.join(held_out)} is held out of the unified metric (an independent check)"
        )
    if len(set(names)) != len(names):
        raise UserInputError(f"a scorer appears twice: {', '.join(names)}")


def unified_score(raw: Mapping[str, Sequence[float]], stats: ReferenceStats) -> list[float]:
    """The formula on raw scores: ``raw[name][i]`` is scorer ``name``'s score of pair i."""
    table = stats.require()
    if set(raw) != set(table):
        raise UserInputError(f"the unified metric {stats.version} needs scores of {', '.join(stats.scorers)}")
    lengths = {len(values) for values in raw.values()}
    if len(lengths) > 1:
        raise UserInputError("every scorer must score the same pairs")
    count = lengths.pop() if lengths else 0
    return [
        sum((raw[name][i] - s.mean) / s.std for name, s in table.items()) / len(table) for i in range(count)
    ]


def compute_reference_stats(
    scorers: Sequence[ImageScorer],
    prompts: Sequence[str],
    images: Sequence[ImageLike],
    *,
    version: str,
    reference: str,
    chunk: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> ReferenceStats:
    """Measure each scorer's mean and sample std over a reference set of (prompt, image) pairs.

    ``version`` names the new statistics (reports cite it); ``reference`` says what the set is, e.g.
    "1,000 DiffusionDB prompts rendered by SD 1.5, seeds 0..999". The scorers should be the unified ones.
    """
    names = [scorer.name for scorer in scorers]
    _check_scorer_names(names)
    ImageScorer.check_lengths(prompts, images)
    if len(prompts) < 2:
        raise UserInputError("a reference set needs at least two pairs")
    scores: dict[str, list[float]] = {name: [] for name in names}
    for start in range(0, len(prompts), chunk):
        for scorer in scorers:
            scores[scorer.name] += scorer.score(prompts[start : start + chunk], images[start : start + chunk])
        if progress is not None:
            progress(min(start + chunk, len(prompts)), len(prompts))
    stats = {}
    for scorer in scorers:
        values = scores[scorer.name]
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
        if not std > 0:
            raise UserInputError(
                f"{scorer.name} gives every reference pair the same score: cannot standardise"
            )
        stats[scorer.name] = ScorerStats(
            mean=mean, std=std, n=len(values), model=getattr(scorer, "source", None)
        )
    return ReferenceStats(version=version, scorers=tuple(names), stats=stats, reference=reference)


class UnifiedMetric(ImageScorer):
    """The unified reward as an image scorer: the mean z-score of its scorers under versioned statistics."""

    def __init__(self, scorers: Sequence[ImageScorer], stats: ReferenceStats | None = None) -> None:
        self.stats = stats if stats is not None else ReferenceStats.load()
        names = [scorer.name for scorer in scorers]
        _check_scorer_names(names)
        if set(names) != set(self.stats.scorers):
            raise UserInputError(
                f"the unified metric {self.stats.version} combines {', '.join(self.stats.scorers)}; "
                f"got {', '.join(names) or 'no scorers'}"
            )
        self.stats.require()
        self.scorers = list(scorers)
        self.name = self.stats.version

    def components(self, prompts: Sequence[str], images: Sequence[ImageLike]) -> dict[str, list[float]]:
        """Each scorer's raw scores, for reports that show the parts beside the sum."""
        self.check_lengths(prompts, images)
        return {scorer.name: scorer.score(prompts, images) for scorer in self.scorers}

    def score(self, prompts: Sequence[str], images: Sequence[ImageLike]) -> list[float]:
        return unified_score(self.components(prompts, images), self.stats)
