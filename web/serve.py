"""Run the web app under waitress: blocking (``serve``) or in a background thread (``start_in_thread``).

The thread form is for tests and for a daemon that hosts the dashboard itself: it binds at
once (port 0 picks a free port, reported as ``.port``) and ``stop()`` closes the listening
socket and every connection, then joins the server's threads.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import TracebackType
from typing import Any

import waitress
from flask import Flask
from waitress import wasyncore
from waitress.server import BaseWSGIServer

from web import create_app

logger = logging.getLogger(__name__)


class _ClosedTabIsDebug(logging.Filter):
    """waitress logs "Client disconnected while serving /api/stream" at INFO each time a browser
    tab with a live stream closes: an everyday event, kept only when ``waitress`` logs at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.getMessage().startswith(
            "Client disconnected while serving"
        ):
            return logging.getLogger("waitress").isEnabledFor(logging.DEBUG)
        return True


CLOSED_TAB_FILTER = _ClosedTabIsDebug()
logging.getLogger("waitress").addFilter(CLOSED_TAB_FILTER)

DEFAULT_THREADS = 12
"""Waitress worker threads; each request and each open live stream (Tonight) holds one. At most
``STREAM_MAX_TOTAL`` (6) streams are open at once (web.stream), so 6 are always left for pages."""

MAX_BODY_BYTES_SERVER = 1024 * 1024
"""Waitress refuses a request body larger than this (413) before reading it. Above the app's own
``MAX_CONTENT_LENGTH`` (64 KiB), so a body between the two gets the app's JSON 413 under /api/."""

WAITRESS_SETTINGS: dict[str, Any] = {
    "ident": "bedside",
    "max_request_body_size": MAX_BODY_BYTES_SERVER,
    # Half-open and idle connections are closed after 20 s without a byte (checked every 5 s);
    # waitress's 120 s let 100 idle sockets lock everyone out for minutes. A live stream is not
    # idle: it is a request in progress, which this never cuts.
    "channel_timeout": 20,
    "cleanup_interval": 5,
    # Waitress stops accepting at this many open connections (its default 100 was reached by
    # 101 idle sockets); each costs a file descriptor and a few KiB.
    "connection_limit": 500,
    # A TLS proxy on this machine may say the request came over https (the cookie is then Secure).
    "trusted_proxy": "127.0.0.1",
    "trusted_proxy_headers": {"x-forwarded-proto"},
    "trusted_proxy_count": 1,
}
"""Waitress settings for both ``serve`` and ``start_in_thread``."""


def serve(
    database: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    unit_id: str = "bedside",
    *,
    require_login: bool = False,
    password_file: str | None = None,
    parent_pid: int | None = None,
    allowed_hosts: list[str] | None = None,
) -> None:
    """Serve the dashboard for ``database`` on ``host:port`` until interrupted (blocks).

    With ``parent_pid`` (the daemon that started it) the server stops once that process is gone,
    even killed with SIGKILL, so it never holds the port against the daemon's next start.

    ``host`` defaults to loopback, where no login is needed; any other address (``0.0.0.0``
    to reach it from a phone on the LAN) requires the password (``bedside set-password``), as
    does ``require_login``. Until a password is set such a server shows only the login page,
    which says how to set one. ``allowed_hosts``: names to answer to besides addresses,
    loopback and this machine's names (web.access).
    """
    app = create_app(
        app_config(
            database,
            host,
            unit_id,
            require_login=require_login,
            password_file=password_file,
            allowed_hosts=allowed_hosts,
        )
    )
    logger.info("serving Bedside web on %s:%d", host, port)
    if parent_pid is not None:
        threading.Thread(target=_stop_when_orphaned, args=(parent_pid,), daemon=True).start()
    waitress.serve(app, host=host, port=port, threads=DEFAULT_THREADS, **WAITRESS_SETTINGS)


def _stop_when_orphaned(parent_pid: int, every_s: float = 1.0) -> None:
    """SIGTERM this process once ``parent_pid`` is no longer its parent (it died and this process
    was handed to init or a subreaper): what the daemon's own stop would have sent."""
    while os.getppid() == parent_pid:
        time.sleep(every_s)
    logger.warning("the daemon (pid %d) is gone; the dashboard stops", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def app_config(
    database: str,
    host: str,
    unit_id: str = "bedside",
    *,
    require_login: bool = False,
    password_file: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> dict[str, Any]:
    """The app's config for serving on ``host``: the login is required unless ``host`` is loopback."""
    config: dict[str, Any] = {
        "DATABASE": database,
        "UNIT_ID": unit_id,
        "LOGIN_REQUIRED": require_login or not is_loopback(host),
        "LISTEN_HOST": host,
        "ALLOWED_HOSTS": list(allowed_hosts or []),
    }
    if password_file:
        config["PASSWORD_FILE"] = password_file
    return config


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.x``, ``::1``) or ``localhost``."""
    import ipaddress

    bare = host.strip().strip("[]")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


class ServerHandle:
    """A waitress server running in a background thread; see ``start_in_thread``.

    ``host`` and ``port`` are the bound address (the real port when 0 was asked for);
    ``url`` is ``http://host:port``. Usable as a context manager that stops on exit.
    """

    def __init__(self, server: BaseWSGIServer, thread_name: str) -> None:
        self._server = server
        self.host: str = server.effective_host
        self.port: int = int(server.effective_port)
        self._stopped = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        try:
            self._server.run()
        except Exception:
            logger.exception("web server on port %d stopped with an error", self.port)

    def _start(self) -> None:
        self._thread.start()
        logger.info("web server listening on %s", self.url)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving: close the socket and all connections, join the threads. Idempotent.

        Safe from any thread but the server's own. Requests still running get up to
        ``timeout_s`` to finish.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        socket_map: dict[Any, Any] = self._server._map
        if self._thread.is_alive():
            # The map belongs to the server's loop thread: close everything there, which
            # empties the map and ends the loop.
            try:
                self._server.trigger.pull_trigger(lambda: wasyncore.close_all(socket_map, ignore_all=True))
            except OSError:
                # The loop is already closing its own sockets (its trigger is gone): let it finish.
                wasyncore.close_all(socket_map, ignore_all=True)
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("web server thread did not stop within %.1f s", timeout_s)
        else:
            wasyncore.close_all(socket_map, ignore_all=True)
        self._server.task_dispatcher.shutdown(timeout=timeout_s)
        logger.info("web server on port %d stopped", self.port)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_in_thread(
    app: Flask,
    host: str = "127.0.0.1",
    port: int = 0,
    threads: int = DEFAULT_THREADS,
) -> ServerHandle:
    """Serve ``app`` from a daemon thread and return at once, already listening.

    ``port`` 0 picks a free port (read it from the handle). ``host`` must be one address
    (``127.0.0.1``, ``::1``, ``0.0.0.0``), not a name that resolves to several: waitress would
    open one socket per address. Raises ``OSError`` if the port is taken.
    """
    server = waitress.create_server(app, host=host, port=port, threads=threads, **WAITRESS_SETTINGS)
    if not isinstance(server, BaseWSGIServer):
        server.close()
        raise ValueError(f"host {host!r} resolves to several addresses; give one address")
    handle = ServerHandle(server, thread_name=f"bedside-web-{server.effective_port}")
    handle._start()
    return handle


def main(argv: list[str] | None = None) -> None:
    """``python -m web.serve --db PATH [--host H] [--port N] [--unit ID]``."""
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="python -m web.serve", description=__doc__)
    parser.add_argument(
        "--db",
        default=os.environ.get("BEDSIDE_STORAGE__DB_PATH", "./var/bedside.sqlite3"),
        help="the daemon's SQLite file (default: $BEDSIDE_STORAGE__DB_PATH or ./var/bedside.sqlite3)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument("--unit", default="bedside", help="unit id whose live state to show")
    parser.add_argument("--require-login", action="store_true", help="require the login on loopback too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    serve(args.db, host=args.host, port=args.port, unit_id=args.unit, require_login=args.require_login)


if __name__ == "__main__":
    main()
