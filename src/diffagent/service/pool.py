"""Loaded agents, built once per catalogue revision and swapped for fresh ones when the catalogue changes.

An agent is named by its registry name and its filter options (``AgentKey``). Requests to a loaded agent
never wait for a build: a build holds only the lock of its own key (and the bench lock while DABench is
rebuilt), never the lock that guards the table of loaded agents.

Every ``revision_check_s`` a request compares the store's revision (one SQLite read) with the revision the
loaded agents were built from. When it has grown, one background thread builds a new agent for each key
loaded, while requests keep getting the old ones; then the whole table is replaced in one assignment, so
that a request is answered by agents of one revision only, never a mix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..agents import Agent
from ..bench import ensure_bench
from ..catalog import Store
from ..client import open_agent
from ..protocols import Progress

__all__ = ["AgentKey", "AgentPool"]

log = logging.getLogger("diffagent.service")


@dataclass(frozen=True)
class AgentKey:
    """Which agent: its registry name and the filters it was built with (the default agent takes them)."""

    name: str
    base_models: tuple[str, ...] = ()
    allow_nsfw: bool = False
    allow_poi: bool = False
    installed: bool = False
    """Only the checkpoints and LoRAs of the model library (``diffagent library scan``)."""

    def options(self) -> dict[str, Any]:
        safety = {"allow_nsfw": self.allow_nsfw, "allow_poi": self.allow_poi}
        if self.name != "default":
            return safety  # every served agent is safe by default; only the default one takes the rest
        return {"base_models": list(self.base_models) or None, **safety}


Opener = Callable[..., Agent]
"""``opener(store, key, progress=None)`` builds the agent for ``key``."""


def _open(store: Store, key: AgentKey, progress: Progress | None = None) -> Agent:
    return open_agent(store, key.name, progress=progress, installed=key.installed, **key.options())


class AgentPool:
    """Agents by :class:`AgentKey` for one store, at most ``max_agents`` of them (least recently used go)."""

    def __init__(
        self, store: Store, *, max_agents: int = 8, revision_check_s: float = 5.0, opener: Opener = _open
    ) -> None:
        self.store = store
        self.max_agents = max(1, max_agents)
        self.revision_check_s = revision_check_s
        self.opener = opener
        self.revision = store.revision
        """The catalogue revision every agent in ``loaded`` was built from."""
        self.loaded: OrderedDict[AgentKey, Agent] = OrderedDict()
        self._table = threading.Lock()  # guards loaded, revision, _key_locks; held for microseconds only
        self._key_locks: dict[AgentKey, threading.Lock] = {}
        self._bench = threading.Lock()  # DABench is one folder: one build at a time
        self._checked = time.monotonic()
        self._refresh: threading.Thread | None = None

    @property
    def refreshing(self) -> bool:
        """Whether agents for a newer revision are being built."""
        return self._refresh is not None and self._refresh.is_alive()

    def get(self, key: AgentKey, progress: Progress | None = None) -> Agent:
        """The agent for ``key``, built first if it is not loaded (only callers of this key wait for it).

        ``progress(done, total)`` follows the build, where the agent reports one."""
        self._check_revision()
        with self._table:
            agent = self.loaded.get(key)
            if agent is not None:
                self.loaded.move_to_end(key)
                return agent
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with self._table:
                agent = self.loaded.get(key)
                if agent is not None:
                    return agent
                revision = self.revision
            try:
                agent = self._build(key, progress)
            except BaseException:
                with self._table:
                    self._key_locks.pop(key, None)
                raise
            with self._table:
                if self.revision == revision:  # else a refresh swapped the table meanwhile: do not mix
                    self.loaded[key] = agent
                    while len(self.loaded) > self.max_agents:
                        self.loaded.popitem(last=False)
                # callers waiting on the lock hold it already; later ones find the agent loaded
                self._key_locks.pop(key, None)
            return agent

    def _build(self, key: AgentKey, progress: Progress | None = None) -> Agent:
        with self._bench:
            ensure_bench(self.store)
        return self.opener(self.store, key, progress=progress)

    def _check_revision(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.revision_check_s:
            return
        with self._table:
            if now - self._checked < self.revision_check_s or self.refreshing:
                return
            self._checked = now
            if self.store.revision == self.revision:
                return
            self._refresh = threading.Thread(target=self._rebuild, name="diffagent-refresh", daemon=True)
            self._refresh.start()

    def _rebuild(self) -> None:
        """Build every loaded key again on the store's current revision, then swap the table at once."""
        revision = self.store.revision
        with self._table:
            keys = list(self.loaded)
        fresh: OrderedDict[AgentKey, Agent] = OrderedDict()
        began = time.perf_counter()
        for key in keys:
            try:
                fresh[key] = self._build(key)
            except Exception:  # keep serving: the key is built again on its next request
                log.exception("rebuilding agent %s for catalogue revision %d failed", key.name, revision)
        with self._table:
            self.loaded = fresh
            self.revision = revision
        log.info(
            "catalogue revision %d: %d agents rebuilt in %.1f s",
            revision,
            len(fresh),
            time.perf_counter() - began,
        )

    def wait_refreshed(self, timeout: float | None = None) -> bool:
        """Wait for a refresh in progress to finish (for tests and warm-up); True when none is left."""
        thread = self._refresh
        if thread is not None:
            thread.join(timeout)
        return not self.refreshing
