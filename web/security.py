"""Login, CSRF tokens, the login rate limit and the session key.

The model (docs/dashboard.md has it in words):

- ``LOGIN_REQUIRED`` is set by whoever serves the app: ``web.serve`` turns it on whenever the
  listening address is not loopback (or ``web.require_login`` asks for it). Then every page and
  API call but ``/login``, ``/healthz``, ``/static/`` and the OpenAPI document needs a logged-in
  session; pages redirect to ``/login``, the API answers 401 JSON. With no password set yet,
  ``/login`` explains how to set one (``bedside set-password``) and everything else is refused.
- The password is stored only as a Werkzeug hash (scrypt) in ``PASSWORD_FILE`` (default
  ``web-password`` beside the database), written 0600 by :func:`write_password_file`.
- Every POST/PUT/PATCH/DELETE needs the session's CSRF token, in the form field ``csrf_token``
  or the ``X-CSRF-Token`` header: missing gives 400, wrong gives 403. This holds on loopback
  too, where no login is needed (a web page elsewhere must not be able to write through a
  browser on the Pi).
- Failed logins are counted per client address: ``LOGIN_MAX_FAILURES`` (5) within
  ``LOGIN_WINDOW_S`` (60 s) and further attempts get 429 until the window has passed.
- The session key comes from ``$BEDSIDE_SECRET_KEY`` or a random key kept 0600 in
  ``web-secret-key`` beside the database, so sessions survive a restart.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import BadRequest, Forbidden
from werkzeug.security import check_password_hash, generate_password_hash

logger = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

PASSWORD_FILE_NAME = "web-password"
SECRET_KEY_FILE_NAME = "web-secret-key"
MIN_PASSWORD_CHARS = 8
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_ENDPOINTS = frozenset({"auth.login", "static", "health.healthz", "api.openapi"})
"""Endpoints reachable without a login (the CSRF check still applies to their writes)."""


class PasswordError(ValueError):
    """A password that cannot be set (too short, empty), or a password file that cannot be read."""


class CSRFMissing(BadRequest):
    """A state-changing request without a CSRF token (400)."""

    description = (
        f"CSRF token missing: send the session's token in the {CSRF_FIELD!r} form field or the "
        f"{CSRF_HEADER} header (GET /api/session gives it)"
    )


class CSRFInvalid(Forbidden):
    """A state-changing request whose CSRF token is not the session's (403)."""

    description = "CSRF token does not match this session's; reload the page and try again"


def password_file_beside(database: str | Path) -> Path:
    """The default password file: ``web-password`` in the database's directory."""
    return Path(database).resolve().parent / PASSWORD_FILE_NAME


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_password_file(path: str | Path, password: str) -> None:
    """Store a scrypt hash of ``password`` in ``path`` (0600). Raises PasswordError if too short."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordError(f"password must be at least {MIN_PASSWORD_CHARS} characters long")
    _write_private(Path(path), generate_password_hash(password, method="scrypt") + "\n")


def read_password_hash(path: str | Path) -> str | None:
    """The stored hash, or None when no password has been set (file missing or empty)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PasswordError(f"cannot read password file {p}: {exc}") from exc
    return text or None


def load_secret_key(database: str | Path) -> str | None:
    """``$BEDSIDE_SECRET_KEY``, else the key kept in ``web-secret-key`` beside the database.

    The file is created (0600, 64 hex digits) on first use. Returns None when the directory
    cannot be written (the caller then uses a key for this run only).
    """
    from_env = os.environ.get("BEDSIDE_SECRET_KEY")
    if from_env:
        return from_env
    path = Path(database).resolve().parent / SECRET_KEY_FILE_NAME
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    except OSError as exc:
        logger.warning("cannot read %s (%s); sessions will end when the web process restarts", path, exc)
        return None
    if existing:
        return existing
    key = secrets.token_hex(32)
    try:
        _write_private(path, key + "\n")
    except OSError as exc:
        logger.warning("cannot write %s (%s); sessions will end when the web process restarts", path, exc)
        return None
    logger.info("created the session key file %s", path)
    return key


class LoginLimiter:
    """Failed logins per client address in a sliding window; thread-safe (waitress threads)."""

    def __init__(
        self, max_failures: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def retry_after_s(self, client: str) -> float:
        """0 if ``client`` may try now, else the seconds until its oldest counted failure expires."""
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if len(times) < self.max_failures:
                if not times:
                    self._failures.pop(client, None)
                return 0.0
            return max(0.0, self.window_s - (now - times[0]))

    def failed(self, client: str) -> None:
        """Count one failed attempt."""
        with self._lock:
            now = self._clock()
            self._recent(client, now).append(now)

    def succeeded(self, client: str) -> None:
        """Forget the client's failures."""
        with self._lock:
            self._failures.pop(client, None)


def csrf_token() -> str:
    """This session's CSRF token, created on first use (a Jinja global for forms)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def _check_csrf() -> None:
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    if not sent:
        raise CSRFMissing()
    expected = session.get(CSRF_FIELD)
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CSRFInvalid()


def logged_in() -> bool:
    """Whether this request may see the dashboard: login not required, or a logged-in session."""
    return not current_app.config["LOGIN_REQUIRED"] or session.get("logged_in") is True


def password_hash() -> str | None:
    """The configured password hash (None: not set yet)."""
    return read_password_hash(current_app.config["PASSWORD_FILE"])


def _is_api() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def _gate() -> ResponseReturnValue | None:
    """``before_request``: the CSRF check for writes, then the login check.

    A request that matched no route (404, 405) passes through to its routing error.
    """
    if request.routing_exception is not None:
        return None
    if request.method in UNSAFE_METHODS:
        _check_csrf()
    if request.endpoint in OPEN_ENDPOINTS or logged_in():
        return None
    if password_hash() is None:
        message = "no dashboard password is set: run `bedside set-password` on the Pi, then log in"
        if _is_api():
            return jsonify(error=message), 503
        return redirect(url_for("auth.login"))
    if _is_api():
        return jsonify(error="login required: log in at /login"), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no ``//host``) may be the page after login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("dashboard.tonight")


def _client() -> str:
    return request.remote_addr or "unknown"


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The login form (or, with no password set, how to set one); POST checks the password."""
    required = current_app.config["LOGIN_REQUIRED"]
    stored = password_hash()
    next_page = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if not required or session.get("logged_in") is True:
            return redirect(next_page)
        return render_template("login.html", needs_setup=stored is None, next_page=next_page, error=None)
    limiter: LoginLimiter = current_app.extensions["bedside_login_limiter"]
    client = _client()
    wait_s = limiter.retry_after_s(client)
    if wait_s > 0:
        logger.warning("login from %s refused: too many failed attempts", client)
        message = f"too many failed logins; try again in {wait_s:.0f} s"
        response = render_template("login.html", needs_setup=False, next_page=next_page, error=message)
        return response, 429, {"Retry-After": str(int(wait_s) + 1)}
    if stored is None:
        return render_template("login.html", needs_setup=True, next_page=next_page, error=None), 503
    password = request.form.get("password", "")
    if not password or not check_password_hash(stored, password):
        limiter.failed(client)
        logger.warning("failed login from %s", client)
        error = "wrong password" if password else "password: enter the password"
        page = render_template("login.html", needs_setup=False, next_page=next_page, error=error)
        return page, 401
    limiter.succeeded(client)
    session.clear()
    session["logged_in"] = True
    session.permanent = True
    csrf_token()
    logger.info("login from %s", client)
    return redirect(next_page)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session (POST with the CSRF token, so another site cannot log you out)."""
    session.clear()
    return redirect(url_for("auth.login") if current_app.config["LOGIN_REQUIRED"] else "/")


def _password_file_error(exc: PasswordError) -> ResponseReturnValue:
    """An unreadable password file: nobody can log in, so say so (503) instead of failing with a 500."""
    logger.error("%s", exc)
    message = f"the dashboard cannot check passwords: {exc}"
    if _is_api():
        return jsonify(error=message), 503
    return render_template("error.html", code=503, title="Login unavailable", message=message), 503


def init_app(app: Flask) -> None:
    """Install the gate, the limiter, the ``csrf_token`` template global and cookie settings."""
    app.config.setdefault("LOGIN_MAX_FAILURES", 5)
    app.config.setdefault("LOGIN_WINDOW_S", 60.0)
    app.extensions["bedside_login_limiter"] = LoginLimiter(
        int(app.config["LOGIN_MAX_FAILURES"]), float(app.config["LOGIN_WINDOW_S"])
    )
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.before_request(_gate)
    app.register_error_handler(PasswordError, _password_file_error)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.register_blueprint(bp)
