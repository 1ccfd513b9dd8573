"""The unified reward of candidate calls, on images: plan, render, score, in resumable shards.

RRHF needs the reward of k candidate calls for each of N instructions. :func:`plan_shards` seeds every
call with its instruction's seed (:func:`.render.seeded`), orders the N x k jobs by checkpoint so that a
worker loads each pipeline once per run of jobs, and cuts them into shards. :meth:`Scoring.score_shard`
renders a shard and scores each image against its instruction with the unified metric, and with the held-out
scorers (PickScore) beside it. A runner executes the shards: :func:`local_runner` in this process, or
:func:`.ray_job.ray_runner` on a Ray cluster. Both write each finished shard to a file named by its
content, so a run that fails part-way resumes with the shards it has not finished.

:class:`RenderedReward` puts it behind the :class:`~diffagent.protocols.Reward` protocol, plus
:meth:`RenderedReward.score_sets` that the RRHF trainer calls with every instruction at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_open
from ..errors import UserInputError
from ..schema import APICall
from .base import ImageScorer
from .render import DiffusersRenderer, PipelineFactory, seeded
from .unified import UnifiedMetric, unified_score

__all__ = [
    "Job",
    "RenderedReward",
    "Runner",
    "Scoring",
    "ScoringSpec",
    "local_runner",
    "plan_shards",
    "run_shards",
]


@dataclass(frozen=True)
class Job:
    """Response ``slot`` of instruction ``item``: its seeded call and the instruction it is scored against."""

    item: int
    slot: int
    instruction: str
    call: APICall

    def to_json(self) -> dict[str, Any]:
        return {"item": self.item, "slot": self.slot, "instruction": self.instruction,
                "call": self.call.model_dump(mode="json")}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(data["item"], data["slot"], data["instruction"], APICall.model_validate(data["call"]))


def plan_shards(
    items: Sequence[tuple[str, Sequence[APICall]]], *, seed: int = 0, shard_size: int = 16
) -> list[list[Job]]:
    """Jobs of ``(instruction, calls)`` items, seeded, ordered by checkpoint, in shards of ``shard_size``."""
    if shard_size < 1:
        raise UserInputError(f"shard_size must be at least 1, got {shard_size}")
    jobs = [
        Job(item, slot, instruction, seeded(call, instruction, seed))
        for item, (instruction, calls) in enumerate(items)
        for slot, call in enumerate(calls)
    ]
    first: dict[int, int] = {}
    for i, job in enumerate(jobs):
        first.setdefault(job.call.checkpoint.version_id, i)
    jobs.sort(key=lambda job: first[job.call.checkpoint.version_id])  # stable: item, slot order within
    return [jobs[start : start + shard_size] for start in range(0, len(jobs), shard_size)]


def shard_name(index: int, jobs: Sequence[Job]) -> str:
    """The file of a shard, named by its content: a changed plan never reuses another plan's results."""
    digest = hashlib.sha256(json.dumps([job.to_json() for job in jobs], sort_keys=True).encode()).hexdigest()
    return f"shard-{index:05d}-{digest[:16]}.jsonl"


def write_shard(path: str | Path, results: Sequence[dict[str, Any]]) -> None:
    with atomic_open(path) as handle:
        for result in results:
            handle.write(json.dumps(result, separators=(",", ":")) + "\n")


def read_shard(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Scoring:
    """What a worker holds: a renderer and the metrics. One instance per process (or Ray actor)."""

    def __init__(
        self, renderer: DiffusersRenderer, metric: UnifiedMetric, held_out: Sequence[ImageScorer] = ()
    ) -> None:
        clash = [s.name for s in held_out if s.name in metric.stats.scorers]
        if clash:
            raise UserInputError(f"{', '.join(clash)} is in the unified metric: it cannot be held out too")
        self.renderer = renderer
        self.metric = metric
        self.held_out = list(held_out)

    def score_shard(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        """``{"item", "slot", "reward", "components": {...}, "held_out": {...}}`` per job, in job order."""
        if not jobs:
            return []
        images = self.renderer.render([job.call for job in jobs])
        prompts = [job.instruction for job in jobs]
        components = self.metric.components(prompts, images)
        rewards = unified_score(components, self.metric.stats)
        held = {scorer.name: scorer.score(prompts, images) for scorer in self.held_out}
        return [
            {
                "item": job.item,
                "slot": job.slot,
                "reward": rewards[i],
                "components": {name: values[i] for name, values in components.items()},
                "held_out": {name: values[i] for name, values in held.items()},
            }
            for i, job in enumerate(jobs)
        ]


@dataclass(frozen=True)
class ScoringSpec:
    """How to build a :class:`Scoring` from files: plain strings, so a Ray actor can build its own copy.

    ``checkpoints`` is a folder of diffusers pipelines, one per catalogue version id
    (:func:`.render.folder_pipeline_factory`), or ``factory`` any picklable pipeline factory (the library
    loader of ``diffagent generate``, for one); the scorer fields are local paths or Hub names (None: each
    scorer's published weights); ``pickscore`` None leaves the held-out check out; ``stats`` None uses the
    reference statistics in effect (:func:`.unified.ReferenceStats.load`).
    """

    checkpoints: str | None = None
    factory: PipelineFactory | None = None
    clip: str | None = None
    imagereward: str | None = None
    hpsv2: str | None = None
    pickscore: str | None = None
    stats: str | None = None
    max_steps: int | None = None
    max_side: int | None = None
    device: str | None = None

    def build(self) -> Scoring:
        from . import load_scorer
        from .render import folder_pipeline_factory
        from .unified import ReferenceStats

        stats = ReferenceStats.load(self.stats)
        stats.require()  # refuse before loading any weights
        options = {"device": self.device} if self.device else {}
        scorers = [load_scorer(name, getattr(self, name), **options) for name in stats.scorers]
        held = [load_scorer("pickscore", self.pickscore, **options)] if self.pickscore else []
        if self.factory is not None:
            factory = self.factory
        elif self.checkpoints is not None:
            factory = folder_pipeline_factory(self.checkpoints, self.device)
        else:
            raise UserInputError("the image reward needs pipelines: pass --checkpoints DIR")
        renderer = DiffusersRenderer(
            factory,
            max_steps=self.max_steps,
            max_side=self.max_side,
        )
        return Scoring(renderer, UnifiedMetric(scorers, stats), held)


Runner = Callable[[list[list[Job]]], list[list[dict[str, Any]]]]
"""Executes shards and returns each shard's results, in the order of the shards."""


def run_shards(
    shards: Sequence[Sequence[Job]],
    shard_dir: str | Path,
    work: Callable[[Sequence[Job]], list[dict[str, Any]]],
    progress: Callable[[int, int], None] | None = None,
) -> list[list[dict[str, Any]]]:
    """Each shard's results: read back where its file exists, else made by ``work`` and written."""
    folder = Path(shard_dir)
    out = []
    for index, jobs in enumerate(shards):
        path = folder / shard_name(index, jobs)
        if not path.is_file():
            write_shard(path, work(jobs))
        out.append(read_shard(path))
        if progress is not None:
            progress(index + 1, len(shards))
    return out


def local_runner(
    scoring: Scoring | Callable[[], Scoring],
    shard_dir: str | Path,
    progress: Callable[[int, int], None] | None = None,
) -> Runner:
    """Shards run one after another in this process (``scoring`` built on first use when a callable)."""
    held: list[Scoring] = [scoring] if isinstance(scoring, Scoring) else []

    def work(jobs: Sequence[Job]) -> list[dict[str, Any]]:
        if not held:
            held.append(scoring())  # type: ignore[operator]
        return held[0].score_shard(jobs)

    return lambda shards: run_shards(shards, shard_dir, work, progress)


class RenderedReward:
    """The unified reward of calls on the images they produce, as the RRHF trainer consumes it.

    ``version`` is the unified metric's version (the name of its reference statistics): the reward's name,
    ``image:VERSION``, goes into every row and every report.
    """

    def __init__(self, runner: Runner, version: str, *, seed: int = 0, shard_size: int = 16) -> None:
        self.runner = runner
        self.seed = seed
        self.shard_size = shard_size
        self.name = f"image:{version}"

    def score_sets(self, items: Sequence[tuple[str, Sequence[APICall]]]) -> list[dict[str, Any]]:
        """Per item ``{"scores": [...], "components": {name: [...]}, "held_out": {name: [...]}}``."""
        shards = plan_shards(items, seed=self.seed, shard_size=self.shard_size)
        out: list[dict[str, Any]] = [
            {"scores": [0.0] * len(calls), "components": {}, "held_out": {}} for _, calls in items
        ]
        seen = 0
        for results in self.runner(shards):
            for result in results:
                row = out[result["item"]]
                row["scores"][result["slot"]] = result["reward"]
                for group in ("components", "held_out"):
                    for name, value in result[group].items():
                        row[group].setdefault(name, [0.0] * len(row["scores"]))[result["slot"]] = value
                seen += 1
        expected = sum(len(calls) for _, calls in items)
        if seen != expected:
            raise UserInputError(f"the shards hold {seen} results for {expected} calls: a shard is stale")
        return out

    def score_calls(
        self, instruction: str, calls: Sequence[APICall], reference: APICall | None = None
    ) -> list[float]:
        if not calls:
            return []
        return self.score_sets([(instruction, calls)])[0]["scores"]
