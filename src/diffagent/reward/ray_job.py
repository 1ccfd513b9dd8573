"""Candidate rendering and scoring as a Ray Data job: the same shards and files as the local runner.

Each row of the dataset is one pending shard of :func:`.candidates.plan_shards` (jobs ordered by
checkpoint). An actor builds its own :class:`.candidates.Scoring` from a :class:`.candidates.ScoringSpec`
(so weights load on the worker, never pickled from the driver), holds one pipeline at a time, and writes
each finished shard to its file in ``shard_dir`` (a folder every worker can reach: local disk for local
Ray, shared storage on a cluster). The driver reads the files back in shard order, so a job that died
part-way is rerun with only its unfinished shards, and the rows are those of the local path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..extras import require
from .candidates import Job, Runner, ScoringSpec, read_shard, shard_name, write_shard

__all__ = ["ShardWorker", "ray_runner"]


class ShardWorker:
    """A Ray Data actor: builds the scoring once, then renders, scores and writes whole shards."""

    def __init__(self, spec: ScoringSpec | Callable[[], Any]) -> None:
        self.scoring = spec.build() if isinstance(spec, ScoringSpec) else spec()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        counts = []
        for path, jobs_json in zip(batch["path"], batch["jobs"], strict=True):
            jobs = [Job.from_json(item) for item in json.loads(str(jobs_json))]
            write_shard(str(path), self.scoring.score_shard(jobs))
            counts.append(len(jobs))
        return {"path": list(batch["path"]), "jobs": counts}


def ray_runner(
    spec: ScoringSpec | Callable[[], Any],
    shard_dir: str | Path,
    *,
    address: str | None = None,
    actors: int = 1,
    gpus_per_actor: float = 0.0,
    num_cpus: int | None = None,
) -> Runner:
    """A runner on Ray: ``address`` ``local`` (or None) starts a local Ray (``num_cpus`` of them), any
    other value joins that cluster (``auto``, ``ray://HOST:PORT``); ``actors`` workers, each with
    ``gpus_per_actor`` GPUs. ``spec`` may be any picklable callable that returns a ``Scoring``."""
    require("ray", "the Ray reward job")
    folder = Path(shard_dir)

    def run(shards: list[list[Job]]) -> list[list[dict[str, Any]]]:
        import ray

        if not ray.is_initialized():
            if address in (None, "local"):
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        paths = [folder / shard_name(index, jobs) for index, jobs in enumerate(shards)]
        pending = [
            {"path": str(path), "jobs": json.dumps([job.to_json() for job in jobs])}
            for path, jobs in zip(paths, shards, strict=True)
            if not path.is_file()
        ]
        if pending:
            folder.mkdir(parents=True, exist_ok=True)
            dataset = ray.data.from_items(pending, override_num_blocks=len(pending))
            resources: dict[str, Any] = {"num_gpus": gpus_per_actor} if gpus_per_actor else {}
            dataset.map_batches(
                ShardWorker, fn_constructor_kwargs={"spec": spec}, batch_size=1,
                concurrency=max(1, min(actors, len(pending))), **resources,
            ).materialize()  # fmt: skip
        return [read_shard(path) for path in paths]

    return run
