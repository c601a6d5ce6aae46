"""Server-side revocation of logged-in sessions, kept in a file beside the database.

Flask's session is a signed cookie held by the browser, so clearing it on logout does not stop
a copy of the old cookie from working. Each login gets a random session id (``sid``); logout
puts the id here until the session could have expired anyway (``until``, epoch seconds), and a
session whose id is here is not logged in. The list lives in ``web-revoked-sessions`` (0600,
JSON ``{sid: until}``) beside the database, so a restart does not bring revoked cookies back.

A file that exists but cannot be read fails closed: every session issued before this process
started is refused (``not_before``), and the problem is logged. Thread-safe (waitress threads).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from service.store.files import read_regular_file, write_private_file

logger = logging.getLogger(__name__)

REVOKED_FILE_NAME = "web-revoked-sessions"


class RevokedSessions:
    """Revoked session ids with the time after which each may be forgotten."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self.not_before = 0.0
        """Sessions that logged in before this epoch time are refused (set when the file was unreadable)."""
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(read_regular_file(self.path).decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            self._until = {str(k): float(v) for k, v in data.items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError) as exc:
            self.not_before = self._clock()
            logger.error(
                "cannot read the revoked-sessions file %s (%s): every earlier login must log in again",
                self.path,
                exc,
            )

    def is_revoked(self, sid: str) -> bool:
        """Whether ``sid`` was logged out."""
        with self._lock:
            return sid in self._until

    def revoke(self, sid: str, until: float) -> None:
        """Refuse ``sid`` from now on (it may be forgotten after ``until``); saved at once."""
        with self._lock:
            now = self._clock()
            self._until = {k: v for k, v in self._until.items() if v > now}
            self._until[sid] = until
            text = json.dumps(self._until, sort_keys=True)
            try:
                write_private_file(self.path, text.encode("utf-8"))
            except OSError as exc:
                logger.error("cannot save %s (%s): the logout holds only until a restart", self.path, exc)
