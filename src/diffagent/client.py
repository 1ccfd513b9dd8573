"""The Python API: ``DiffAgent().select("a prompt")`` answers like ``diffagent select`` does.

It opens the catalogue under ``DIFFAGENT_HOME``, builds DABench and the agent's index on first use (the
default agent trains its ranker then, about a minute on two cores), and keeps them for the next calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .agents import Agent, load_agent
from .bench import SPLITS, PairFiles
from .catalog import Store
from .config import store_path
from .errors import UserInputError
from .schema import Answer

__all__ = ["DiffAgent", "installed_versions", "open_agent"]


def open_agent(
    store: Store,
    name: str = "default",
    *,
    splits: Sequence[str] = SPLITS,
    progress: Callable[[int, int], None] | None = None,
    installed: bool = False,
    allow_nsfw: bool = False,
    allow_poi: bool = False,
    **options: Any,
) -> Agent:
    """Agent ``name`` over ``store``, learning from the DABench ``splits`` (built first if missing).

    The one place that wires catalogue, bench and agent together: the CLI, the service and
    :class:`DiffAgent` all come through here. Agents are safe by default: ``allow_nsfw`` lets them name
    explicit checkpoints and LoRAs, ``allow_poi`` real-person ones. ``installed`` restricts the default
    agent to the checkpoints and LoRAs of the user's library (``diffagent library scan``).
    """
    from .bench.build import ensure_bench  # numpy and scipy: only once an agent is wanted

    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise UserInputError(f"splits must be some of {', '.join(SPLITS)}, not {list(splits)}")
    store.require_models()
    if installed:  # checked before the first-use builds, which take a while
        if name != "default":
            raise UserInputError(f"--installed works with the default agent, not {name!r}")
        options = {"versions": installed_versions(store), **options}
    folder = ensure_bench(store, progress=progress)
    examples = PairFiles(folder, splits)
    if name == "default" and progress is not None:
        options = {"progress": progress, **options}
    options = {"allow_nsfw": allow_nsfw, "allow_poi": allow_poi, **options}
    return load_agent(name, store, examples, **options)


def installed_versions(store: Store) -> frozenset[int]:
    """Catalogue versions the user's library holds a file of; refuses when it holds no checkpoint."""
    from .library import Library

    with Library() as library:
        files = library.by_version(store)
    if not any(f.version is not None and f.version.model_type == "Checkpoint" for f in files.values()):
        raise UserInputError(
            "no installed checkpoint is in the catalogue: run `diffagent library scan DIR` on your models"
        )
    return frozenset(files)


class DiffAgent:
    """An agent over the catalogue in ``DIFFAGENT_HOME``; usable as a context manager.

    ``agent`` names any registered agent (``default``, ``tfidf``, ``llm`` ...); ``splits`` are the DABench
    splits it learns from (all of them, as ``diffagent select`` does); ``allow_nsfw`` and ``allow_poi``
    let it name explicit and real-person models (out by default); ``installed=True`` answers with the
    user's own scanned model files only; other keyword options go to the agent (the default agent takes
    ``base_models=["SD 1.5"]``, and ``workers=0`` to share large batches among one process per core).
    ``progress(done, total)`` follows the first-use builds.
    """

    def __init__(
        self,
        agent: str = "default",
        *,
        splits: Sequence[str] = SPLITS,
        progress: Callable[[int, int], None] | None = None,
        installed: bool = False,
        allow_nsfw: bool = False,
        allow_poi: bool = False,
        **options: Any,
    ) -> None:
        self.store = Store(store_path())
        try:
            self.agent: Agent = open_agent(
                self.store,
                agent,
                splits=splits,
                progress=progress,
                installed=installed,
                allow_nsfw=allow_nsfw,
                allow_poi=allow_poi,
                **options,
            )
        except BaseException:
            self.store.close()
            raise

    def select(self, prompt: str, k: int = 5) -> Answer:
        """The best API call for ``prompt``, ``k`` ranked alternatives and the evidence behind them."""
        return self.agent.select(prompt, k)

    def select_batch(self, prompts: Sequence[str], k: int = 5) -> list[Answer]:
        """Answers in the order of ``prompts``, computed together (much faster than one by one)."""
        if isinstance(prompts, str | bytes):  # a str is a sequence too: one answer per character
            raise TypeError("select_batch takes a list of prompts, not one prompt; use select(prompt)")
        return self.agent.select_batch(list(prompts), k)

    def close(self) -> None:
        self.agent.close()
        self.store.close()

    def __enter__(self) -> DiffAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
