"""Work shared among forked processes: the same results, in order, from copies of this process."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from diffagent import _fork
from diffagent._fork import ForkedWorkers, WorkerDied, can_fork, forked_map, worker_count
from diffagent.errors import UserInputError
from diffagent.train.ranker import train_ranker

pytestmark = pytest.mark.skipif(not can_fork(), reason="this system cannot fork")

_started: list[int] = []


def _mark_start() -> None:
    _started.append(os.getpid())


def test_forked_map_gives_maps_results_in_order_from_other_processes() -> None:
    table = {i: i * i for i in range(50)}  # reached through a lambda, which could not be pickled

    results = list(forked_map(lambda i: (os.getpid(), table[i]), range(50), 2))
    assert [value for _, value in results] == [i * i for i in range(50)]
    assert os.getpid() not in {pid for pid, _ in results}
    assert list(forked_map(lambda i: (os.getpid(), i), range(3), 1)) == [(os.getpid(), i) for i in range(3)]


def test_workers_start_once_each_and_a_workers_error_reaches_the_caller() -> None:
    def square_or_fail(x: int) -> tuple[int, list[int]]:
        if x < 0:
            raise ValueError("negative")
        return x * x, list(_started)

    workers = ForkedWorkers(square_or_fail, 2, start=_mark_start)
    try:
        assert len(set(workers.pids)) == 2
        results = list(workers.map(range(20)))
        assert [value for value, _ in results] == [x * x for x in range(20)]
        assert all(len(started) == 1 and started[0] in workers.pids for _, started in results)
        with pytest.raises(ValueError, match="negative"):
            list(workers.map([1, -1]))
    finally:
        workers.close()
    assert _started == []  # the start ran in the workers, not here
    assert _fork._function is None


def test_a_worker_that_dies_is_an_error_not_a_wait() -> None:
    def dies_at_three(x: int) -> int:
        if x == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
        return x

    with pytest.raises(WorkerDied, match="worker process died"):
        list(forked_map(dies_at_three, range(8), 2))


def test_worker_count() -> None:
    assert 1 <= worker_count(0) <= _fork.MAX_AUTO_WORKERS
    assert worker_count(3) == 3
    with pytest.raises(UserInputError, match="workers"):
        worker_count(-1)


def test_the_ranker_trained_with_workers_is_the_one_trained_alone() -> None:
    n_candidates, width = 8, 4

    def featurize(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        picked = np.stack([np.random.default_rng(int(r)).permutation(20)[:n_candidates] for r in rows])
        truth = picked[np.arange(len(rows)), rows % n_candidates]
        features = np.random.default_rng(int(rows[0])).normal(size=(len(rows) * n_candidates, width))
        features[:, 0] += 2 * (picked == truth[:, None]).ravel()  # a feature that tells the truth, noisily
        return picked, features.astype(np.float32), truth

    names = ["a", "b", "c", "d"]
    alone, report = train_ranker(featurize, 600, names, queries=600, rounds=20, batch=64)
    shared, _ = train_ranker(featurize, 600, names, queries=600, rounds=20, batch=64, workers=2)
    assert shared.model == alone.model
    assert report["held_model@1"] > 0.5
