"""Writes the database cannot take right now (disk full, I/O error, locked), held in order for later.

The daemon must keep detecting when the SD card fills up or the file is locked for longer than the
busy timeout: the store hands each write to ``HeldWrites`` as a self-contained operation (its SQL,
its rows, its commit), and while the database refuses writes they wait here, oldest first, and
are retried every ``retry_s``. Memory is bounded: past ``max_bytes`` the whole-night raw signal
goes first, then event snippets; events, nights and the user's marks are dropped only past
``max_ops`` (weeks of a full disk), and every drop is counted and logged.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: SQLite primary result codes that mean "not now" rather than "never".
_UNAVAILABLE = {
    5: "the database is locked by another process",  # SQLITE_BUSY
    6: "a table is locked",  # SQLITE_LOCKED
    10: "disk I/O error",  # SQLITE_IOERR
    13: "database or disk is full",  # SQLITE_FULL
}

#: What is dropped first when memory runs short: higher first.
KEEP_ALWAYS, SNIPPET, RAW_CHUNK = 0, 1, 2


def unavailable_reason(exc: BaseException) -> str | None:
    """Why SQLite refused a write if it may succeed later (full, I/O, locked), else None."""
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _UNAVAILABLE:
        return _UNAVAILABLE[code & 0xFF]
    text = str(exc).lower()
    for reason in _UNAVAILABLE.values():
        if reason in text:
            return reason
    return None


Operation = Callable[[], Awaitable[None]]


@dataclass
class _Held:
    op: Operation
    what: str
    size_bytes: int
    drop_rank: int


class HeldWrites:
    """An ordered queue of writes waiting for the database; ``problem`` says why, None when clear."""

    def __init__(self, *, retry_s: float = 2.0, max_bytes: int = 48 * 2**20, max_ops: int = 200_000) -> None:
        self.retry_s = retry_s
        self.max_bytes = max_bytes
        self.max_ops = max_ops
        self.problem: str | None = None
        self.dropped: dict[str, int] = {}
        self._queue: deque[_Held] = deque()
        self._bytes = 0
        self._last_try = 0.0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def held_bytes(self) -> int:
        return self._bytes

    async def run(
        self,
        op: Operation,
        what: str,
        *,
        size_bytes: int = 0,
        drop_rank: int = KEEP_ALWAYS,
        keep: bool = True,
    ) -> bool:
        """Write now, or hold it behind earlier held writes. True if it was written now.

        ``keep=False`` is for writes that a newer one replaces (the live state): refused, they are
        not held. Errors other than "not now" are raised as they are."""
        if self._queue:
            if keep:
                self._hold(_Held(op, what, size_bytes, drop_rank))
            await self.retry(due_only=True)
            return False
        try:
            await op()
        except sqlite3.OperationalError as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                raise
            self._refused(reason, what)
            if keep:
                self._hold(_Held(op, what, size_bytes, drop_rank))
            return False
        if self.problem is not None and not self._queue:
            self._cleared(0)
        return True

    async def retry(self, *, due_only: bool = False) -> int:
        """Write held operations in order until one is refused again; returns how many were written."""
        if not self._queue:
            return 0
        now = time.monotonic()
        if due_only and now - self._last_try < self.retry_s:
            return 0
        self._last_try = now
        written = 0
        while self._queue:
            item = self._queue[0]
            try:
                await item.op()
            except sqlite3.OperationalError as exc:
                reason = unavailable_reason(exc)
                if reason is None:
                    raise
                self.problem = reason
                break
            self._queue.popleft()
            self._bytes -= item.size_bytes
            written += 1
        if not self._queue:
            self._cleared(written)
        return written

    def _refused(self, reason: str, what: str) -> None:
        self._last_try = time.monotonic()
        if self.problem is None:
            logger.error(
                "database: %s (writing %s); detection goes on, writes are held in memory and retried "
                "every %.0f s",
                reason,
                what,
                self.retry_s,
            )
        self.problem = reason

    def _cleared(self, written: int) -> None:
        logger.warning("database: writable again; %d held write(s) saved", written)
        self.problem = None

    def _hold(self, item: _Held) -> None:
        self._queue.append(item)
        self._bytes += item.size_bytes
        while self._bytes > self.max_bytes and self._drop_one(lowest_rank=SNIPPET):
            pass
        while len(self._queue) > self.max_ops and self._drop_one(lowest_rank=KEEP_ALWAYS):
            pass

    def _drop_one(self, *, lowest_rank: int) -> bool:
        """Drop the oldest held write of the highest drop rank present (>= lowest_rank)."""
        ranks = [h.drop_rank for h in self._queue if h.drop_rank >= lowest_rank]
        if not ranks:
            return False
        rank = max(ranks)
        for i, h in enumerate(self._queue):
            if h.drop_rank == rank:
                del self._queue[i]
                self._bytes -= h.size_bytes
                first = h.what not in self.dropped
                self.dropped[h.what] = self.dropped.get(h.what, 0) + 1
                if first:
                    logger.error("database still refusing writes (%s): dropping held %s to bound memory",
                                 self.problem, h.what)  # fmt: skip
                return True
        return False

    def describe(self) -> str:
        """One line for logs: how much is held and what was dropped."""
        dropped = ", ".join(f"{n} {what}" for what, n in sorted(self.dropped.items()))
        return f"{len(self._queue)} write(s), {self._bytes / 2**20:.1f} MiB held" + (
            f"; dropped: {dropped}" if dropped else ""
        )
