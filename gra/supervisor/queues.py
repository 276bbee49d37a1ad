"""Tasks waiting for an agent: one FIFO per (model, role), and which of them to look at.

Only a task's own (model, role) can serve it, so dispatch never needs to
scan tasks that no free agent could take. A queue is marked *dirty* when a
task joins it or when an agent serving it frees credit; dispatch visits the
dirty queues only.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

Key = tuple[str, str]  # (model, role)


class HasKey(Protocol):
    @property
    def key(self) -> Key: ...


T = TypeVar("T", bound=HasKey)


class TaskQueues(Generic[T]):
    def __init__(self) -> None:
        self._queues: defaultdict[Key, deque[T]] = defaultdict(deque)
        self._size = 0
        self._dirty: set[Key] = set()

    def __len__(self) -> int:
        return self._size

    def push(self, task: T, *, front: bool = False) -> None:
        queue = self._queues[task.key]
        if front:
            queue.appendleft(task)
        else:
            queue.append(task)
        self._size += 1
        self._dirty.add(task.key)

    def restore(self, task: T) -> None:
        """Put a task that could not be sent back at the front, without marking its queue."""
        self._queues[task.key].appendleft(task)
        self._size += 1

    def pop(self, key: Key) -> T | None:
        queue = self._queues.get(key)
        if not queue:
            return None
        self._size -= 1
        return queue.popleft()

    def waiting(self, key: Key) -> int:
        queue = self._queues.get(key)
        return len(queue) if queue else 0

    def mark(self, keys: Iterable[Key]) -> None:
        """Something changed for these queues (an agent freed credit, joined...)."""
        self._dirty.update(keys)

    def mark_all(self) -> None:
        self._dirty.update(k for k, q in self._queues.items() if q)

    def take_dirty(self) -> list[Key]:
        """The dirty queues that hold tasks; all marks are cleared."""
        dirty = sorted(k for k in self._dirty if self._queues.get(k))
        self._dirty.clear()
        return dirty
