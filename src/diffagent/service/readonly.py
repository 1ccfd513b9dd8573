"""The catalogue as the service reads it: read-only, one SQLite connection per thread.

A request runs on a worker thread; one connection shared by all of them fails with "Recursive use of
cursors" under load. Each worker process opens its own (``--workers N`` shares only the file), and a
read-only connection cannot change the catalogue whatever the code above it does.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ..catalog import Store
from ..errors import UserInputError

__all__ = ["ReadOnlyStore"]


class ReadOnlyStore(Store):
    """A :class:`Store` over an existing file, opened read-only, with a connection for each thread."""

    def __init__(self, path: str | Path) -> None:  # no super().__init__: it creates the schema (a write)
        self.path = self._file = Path(path)
        if not self._file.is_file():
            raise UserInputError(
                f"no catalogue at {self.path}: run `diffagent catalog import PATH` or `make run` first"
            )
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self.conn.execute("SELECT 1 FROM models LIMIT 1")  # fail now, not on the first request

    @property
    def conn(self) -> sqlite3.Connection:  # type: ignore[override]
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = f"{self._file.resolve().as_uri()}?mode=ro"
            try:
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            except sqlite3.OperationalError as exc:
                raise UserInputError(f"cannot open the catalogue {self.path} read-only: {exc}") from None
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._guard:
                self._opened.append(conn)
        return conn

    def close(self) -> None:
        with self._guard:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
        self._local = threading.local()
