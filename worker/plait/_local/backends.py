"""Local stores for durable runs: :class:`InMemoryBackend` and :class:`SqliteBackend`.

A backend keeps, per instance, the latest checkpoint (the engine snapshot's JSON data), an inbox of
external requests not yet applied (signals, pause, unpause, cancel, in arrival order) and the
latest output of each task id (for ``WorkflowClient.get_task_result``). The local runner is the
only writer of checkpoints; clients only append to inboxes, as on Kubernetes, where signals and
annotations wait for the controller.
"""

from __future__ import annotations

import dataclasses
import json
import marshal
import sqlite3
import threading
from abc import ABC, abstractmethod
from operator import attrgetter
from pathlib import Path
from typing import Any

from plait._core.snapshot import Snapshot
from plait.errors import BackendError

#: A snapshot's fields as a tuple, in the order ``Snapshot(*fields)`` takes them.
_snapshot_fields = attrgetter(*(f.name for f in dataclasses.fields(Snapshot)))
#: Where those fields hold named tuples (timers, signal waits), which ``marshal`` takes as plain ones.
_NAMED_TUPLE_MAPS = tuple(
    i for i, f in enumerate(dataclasses.fields(Snapshot)) if f.name in ("timers", "waiting_signals")
)


def _marshalled(snapshot: Snapshot) -> bytes:
    fields = list(_snapshot_fields(snapshot))
    for i in _NAMED_TUPLE_MAPS:
        if fields[i]:
            fields[i] = {path: tuple(value) for path, value in fields[i].items()}
    return marshal.dumps(fields)


class Backend(ABC):
    """What the local runner needs from a store."""

    @abstractmethod
    def load(self, instance_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def save(self, instance_id: str, snapshot: dict[str, Any]) -> None: ...

    def save_snapshot(self, instance_id: str, snapshot: Snapshot) -> None:
        """Checkpoint ``snapshot`` (what the runner calls); a store may skip the JSON data form."""
        self.save(instance_id, snapshot.to_data())

    @abstractmethod
    def delete(self, instance_id: str) -> None: ...

    @abstractmethod
    def append_inbox(self, instance_id: str, request: dict[str, Any]) -> None: ...

    @abstractmethod
    def pending_inbox(self, instance_id: str) -> list[tuple[int, dict[str, Any]]]:
        """Requests not yet acknowledged, oldest first, with their sequence numbers."""

    @abstractmethod
    def ack_inbox(self, instance_id: str, upto: int) -> None:
        """Drop requests up to sequence ``upto``: a checkpoint holding their effect is saved."""

    @abstractmethod
    def record_output(self, instance_id: str, task_id: str, output: Any) -> None: ...

    @abstractmethod
    def task_output(self, instance_id: str, task_id: str) -> Any | None: ...

    def require(self, instance_id: str) -> dict[str, Any]:
        snapshot = self.load(instance_id)
        if snapshot is None:
            raise BackendError(f"Snapshot not found: {instance_id}")
        return snapshot


class InMemoryBackend(Backend):
    """Checkpoints kept in this process; for tests and prototypes.

    What is stored is serialized, so a saved checkpoint or output is a copy that later changes
    cannot reach (an output that is a string, a number, a boolean or null is kept as it is: it
    cannot change). The data is JSON-ready already (the runner made it so), and for such data
    ``marshal`` gives back equal values, about ten times faster than ``json``. A snapshot is kept
    as the tuple of its fields, which is half the work of its keyed data form.
    """

    def __init__(self) -> None:
        self._snapshots: dict[str, bytes] = {}
        self._inboxes: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._sequence = 0
        self._outputs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def load(self, instance_id: str) -> dict[str, Any] | None:
        raw = self._snapshots.get(instance_id)
        return None if raw is None else Snapshot(*marshal.loads(raw)).to_data()

    def save(self, instance_id: str, snapshot: dict[str, Any]) -> None:
        self.save_snapshot(instance_id, Snapshot.from_data(snapshot))

    def save_snapshot(self, instance_id: str, snapshot: Snapshot) -> None:
        self._snapshots[instance_id] = _marshalled(snapshot)

    def delete(self, instance_id: str) -> None:
        with self._lock:
            self._snapshots.pop(instance_id, None)
            self._inboxes.pop(instance_id, None)
            self._outputs.pop(instance_id, None)

    def append_inbox(self, instance_id: str, request: dict[str, Any]) -> None:
        with self._lock:
            self._sequence += 1
            self._inboxes.setdefault(instance_id, []).append((self._sequence, json.loads(json.dumps(request))))

    def pending_inbox(self, instance_id: str) -> list[tuple[int, dict[str, Any]]]:
        if instance_id not in self._inboxes:
            return []
        with self._lock:
            return list(self._inboxes.get(instance_id, []))

    def ack_inbox(self, instance_id: str, upto: int) -> None:
        with self._lock:
            remaining = [entry for entry in self._inboxes.get(instance_id, []) if entry[0] > upto]
            if remaining:
                self._inboxes[instance_id] = remaining
            else:
                self._inboxes.pop(instance_id, None)

    def record_output(self, instance_id: str, task_id: str, output: Any) -> None:
        stored = marshal.dumps(output) if isinstance(output, (dict, list)) else output
        self._outputs.setdefault(instance_id, {})[task_id] = stored

    def task_output(self, instance_id: str, task_id: str) -> Any | None:
        stored = self._outputs.get(instance_id, {}).get(task_id)
        return marshal.loads(stored) if isinstance(stored, bytes) else stored

    def __repr__(self) -> str:
        return f"InMemoryBackend(instances={len(self._snapshots)})"


class SqliteBackend(Backend):
    """Checkpoints in a SQLite file: survives the process, so ``resume_workflow`` works after a crash."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        with self._connection() as db:
            db.executescript(
                """
                PRAGMA journal_mode=WAL;
                CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, snapshot TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,
                                                  request TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS outputs (id TEXT NOT NULL, task TEXT NOT NULL, output TEXT NOT NULL,
                                                    PRIMARY KEY (id, task));
                """
            )

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            except sqlite3.Error as error:
                raise BackendError(f"cannot open SQLite store {self.path}: {error}") from error
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def load(self, instance_id: str) -> dict[str, Any] | None:
        row = self._connection().execute("SELECT snapshot FROM instances WHERE id = ?", (instance_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def save(self, instance_id: str, snapshot: dict[str, Any]) -> None:
        self._connection().execute(
            "INSERT INTO instances (id, snapshot) VALUES (?, ?) "
            "ON CONFLICT(id) DO UPDATE SET snapshot = excluded.snapshot",
            (instance_id, json.dumps(snapshot, separators=(",", ":"))),
        )

    def delete(self, instance_id: str) -> None:
        db = self._connection()
        db.execute("BEGIN")
        for table in ("instances", "inbox", "outputs"):
            db.execute(f"DELETE FROM {table} WHERE id = ?", (instance_id,))
        db.execute("COMMIT")

    def append_inbox(self, instance_id: str, request: dict[str, Any]) -> None:
        self._connection().execute("INSERT INTO inbox (id, request) VALUES (?, ?)", (instance_id, json.dumps(request)))

    def pending_inbox(self, instance_id: str) -> list[tuple[int, dict[str, Any]]]:
        rows = (
            self._connection()
            .execute("SELECT seq, request FROM inbox WHERE id = ? ORDER BY seq", (instance_id,))
            .fetchall()
        )
        return [(int(seq), json.loads(request)) for seq, request in rows]

    def ack_inbox(self, instance_id: str, upto: int) -> None:
        self._connection().execute("DELETE FROM inbox WHERE id = ? AND seq <= ?", (instance_id, upto))

    def record_output(self, instance_id: str, task_id: str, output: Any) -> None:
        self._connection().execute(
            "INSERT INTO outputs (id, task, output) VALUES (?, ?, ?) "
            "ON CONFLICT(id, task) DO UPDATE SET output = excluded.output",
            (instance_id, task_id, json.dumps(output)),
        )

    def task_output(self, instance_id: str, task_id: str) -> Any | None:
        row = (
            self._connection()
            .execute("SELECT output FROM outputs WHERE id = ? AND task = ?", (instance_id, task_id))
            .fetchone()
        )
        return None if row is None else json.loads(row[0])

    def __repr__(self) -> str:
        return f"SqliteBackend({self.path!r})"
