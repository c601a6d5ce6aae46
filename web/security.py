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
  ``LOGIN_WINDOW_S`` (60 s) and further attempts get 429 until the window has passed; and from
  all addresses together, ``LOGIN_MAX_FAILURES_TOTAL`` (20) in the same window. An attempt is
  counted before its password is checked (check and count are one step under a lock), so
  simultaneous guesses cannot get more checks than the limit; a right password gives it back.
- A login is a session id (``sid``), the login time and a fingerprint of the current password
  hash in the signed cookie. Logout revokes the id (``web.sessions``, kept beside the database);
  a new password (``bedside set-password``) changes the fingerprint: either way an old cookie
  gets the login page. Sessions end after ``SESSION_IDLE_S`` (7 days) unused and
  ``SESSION_MAX_S`` (30 days) after login. The cookie is ``Secure`` when the request came over
  https (a local TLS proxy's ``X-Forwarded-Proto``) or ``SESSION_COOKIE_SECURE`` says so.
- The session key comes from ``$BEDSIDE_SECRET_KEY`` or a random key kept 0600 in
  ``web-secret-key`` beside the database, so sessions survive a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import BadRequest, Forbidden
from werkzeug.security import check_password_hash, generate_password_hash

from service.store.files import read_regular_file, write_private_file
from web.inputs import safe_next
from web.sessions import REVOKED_FILE_NAME, RevokedSessions

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


def _write_private(path: Path, text: str, *, give_to_folder_owner: bool = False) -> None:
    """Write ``text`` to ``path`` (0600) atomically, never through a link planted in the folder
    (``service.store.files.write_private_file``); the folder is made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(path, text.encode("utf-8"), give_to_folder_owner=give_to_folder_owner)


def write_password_file(path: str | Path, password: str, *, give_to_folder_owner: bool = False) -> None:
    """Store a scrypt hash of ``password`` in ``path`` (0600). Raises PasswordError if too short,
    UnsafeFileError (an OSError) if ``path`` is a link or not a regular file.

    ``give_to_folder_owner``: run as root (``sudo bedside set-password``), the file goes to the
    owner of its folder, so the service user can read it."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordError(f"password must be at least {MIN_PASSWORD_CHARS} characters long")
    hashed = generate_password_hash(password, method="scrypt") + "\n"
    _write_private(Path(path), hashed, give_to_folder_owner=give_to_folder_owner)


def read_password_hash(path: str | Path) -> str | None:
    """The stored hash, or None when no password has been set (file missing or empty).

    Only a regular file of at most 1 MiB is read (a FIFO or a link to ``/dev/zero`` is a
    PasswordError, not a hang)."""
    p = Path(path)
    try:
        text = read_regular_file(p).decode("utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
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
        existing = read_regular_file(path).decode("utf-8").strip()
    except FileNotFoundError:
        existing = ""
    except (OSError, UnicodeDecodeError) as exc:
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
    """Failed logins per client address and in total, in a sliding window; thread-safe.

    ``reserve`` checks and counts in one step under the lock: the attempt counts as a failure
    while its password is checked (scrypt takes a while, and waitress runs several requests at
    once), and ``succeeded`` gives it back. ``failed`` counts a failure directly.
    """

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_total_failures: int = 20,
    ) -> None:
        self.max_failures = max_failures
        self.max_total_failures = max_total_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._total: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        while self._total and now - self._total[0][0] >= self.window_s:
            self._total.popleft()
        return times

    def _wait_s(self, client: str, now: float) -> float:
        times = self._recent(client, now)
        waits = [0.0]
        if len(times) >= self.max_failures:
            waits.append(self.window_s - (now - times[0]))
        if len(self._total) >= self.max_total_failures:
            waits.append(self.window_s - (now - self._total[0][0]))
        if not times:
            self._failures.pop(client, None)
        return max(waits)

    def retry_after_s(self, client: str) -> float:
        """0 if ``client`` may try now, else the seconds until a counted failure expires."""
        with self._lock:
            return self._wait_s(client, self._clock())

    def reserve(self, client: str) -> float:
        """0 and the attempt counted as a failure (until ``succeeded``), or the seconds to wait."""
        with self._lock:
            now = self._clock()
            wait_s = self._wait_s(client, now)
            if wait_s <= 0:
                self._failures.setdefault(client, deque()).append(now)
                self._total.append((now, client))
            return wait_s

    def failed(self, client: str) -> None:
        """Count one failed attempt."""
        with self._lock:
            now = self._clock()
            self._recent(client, now).append(now)
            self._total.append((now, client))

    def succeeded(self, client: str) -> None:
        """Forget the client's failures (its reserved attempt included); give back its slot in the total."""
        with self._lock:
            if self._failures.pop(client, None):
                for i in range(len(self._total) - 1, -1, -1):
                    if self._total[i][1] == client:
                        del self._total[i]
                        break


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


def password_fingerprint(stored_hash: str) -> str:
    """A keyed digest of the password hash, kept in the session: a new password ends old sessions."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, stored_hash.encode(), hashlib.sha256).hexdigest()[:32]


def revoked_sessions() -> RevokedSessions:
    """The app's list of logged-out session ids."""
    revoked: RevokedSessions = current_app.extensions["bedside_revoked_sessions"]
    return revoked


def session_is_current() -> bool:
    """A logged-in session that is not revoked, not too old, and from the current password."""
    if session.get("logged_in") is not True:
        return False
    sid, login_at, fingerprint = session.get("sid"), session.get("login_at"), session.get("pw")
    if not isinstance(sid, str) or not isinstance(login_at, (int, float)) or not isinstance(fingerprint, str):
        return False
    revoked = revoked_sessions()
    if login_at < revoked.not_before or time.time() - login_at > float(current_app.config["SESSION_MAX_S"]):
        return False
    if revoked.is_revoked(sid):
        return False
    stored = password_hash()
    return stored is not None and hmac.compare_digest(fingerprint, password_fingerprint(stored))


def logged_in() -> bool:
    """Whether this request may see the dashboard: login not required, or a current logged-in session."""
    return not current_app.config["LOGIN_REQUIRED"] or session_is_current()


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
    """The page after login: ``target`` if a path on this site (``web.inputs.safe_next``), else Tonight."""
    return safe_next(target) or url_for("dashboard.tonight")


def _client() -> str:
    return request.remote_addr or "unknown"


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The login form (or, with no password set, how to set one); POST checks the password."""
    required = current_app.config["LOGIN_REQUIRED"]
    stored = password_hash()
    next_page = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if not required or session_is_current():
            return redirect(next_page)
        return render_template("login.html", needs_setup=stored is None, next_page=next_page, error=None)
    limiter: LoginLimiter = current_app.extensions["bedside_login_limiter"]
    client = _client()
    if stored is None:
        return render_template("login.html", needs_setup=True, next_page=next_page, error=None), 503
    wait_s = limiter.reserve(client)  # counted as a failure until the password is found right
    if wait_s > 0:
        logger.warning("login from %s refused: too many failed attempts", client)
        message = f"too many failed logins; try again in {wait_s:.0f} s"
        response = render_template("login.html", needs_setup=False, next_page=next_page, error=message)
        return response, 429, {"Retry-After": str(int(wait_s) + 1)}
    password = request.form.get("password", "")
    if not password or not check_password_hash(stored, password):
        logger.warning("failed login from %s", client)
        error = "wrong password" if password else "password: enter the password"
        page = render_template("login.html", needs_setup=False, next_page=next_page, error=error)
        return page, 401
    limiter.succeeded(client)
    session.clear()
    session["logged_in"] = True
    session["sid"] = secrets.token_urlsafe(16)
    session["login_at"] = int(time.time())
    session["pw"] = password_fingerprint(stored)
    session.permanent = True
    csrf_token()
    logger.info("login from %s", client)
    return redirect(next_page)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session (POST with the CSRF token, so another site cannot log you out).

    The session id is revoked server-side, so a copy of the old cookie no longer logs in.
    """
    sid, login_at = session.get("sid"), session.get("login_at")
    if isinstance(sid, str) and isinstance(login_at, (int, float)):
        revoked_sessions().revoke(sid, until=login_at + float(current_app.config["SESSION_MAX_S"]))
        logger.info("logout from %s", _client())
    session.clear()
    return redirect(url_for("auth.login") if current_app.config["LOGIN_REQUIRED"] else "/")


def _password_file_error(exc: PasswordError) -> ResponseReturnValue:
    """An unreadable password file: nobody can log in, so say so (503) instead of failing with a 500."""
    logger.error("%s", exc)
    message = f"the dashboard cannot check passwords: {exc}"
    if _is_api():
        return jsonify(error=message), 503
    return render_template("error.html", code=503, title="Login unavailable", message=message), 503


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, ``Secure`` whenever this request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def init_app(app: Flask) -> None:
    """Install the gate, the limiter, the revocation list, the ``csrf_token`` global and cookie settings."""
    app.config.setdefault("LOGIN_MAX_FAILURES", 5)
    app.config.setdefault("LOGIN_MAX_FAILURES_TOTAL", 20)
    app.config.setdefault("LOGIN_WINDOW_S", 60.0)
    app.config.setdefault("SESSION_IDLE_S", 7 * 24 * 3600.0)
    app.config.setdefault("SESSION_MAX_S", 30 * 24 * 3600.0)
    app.config.setdefault(
        "REVOKED_SESSIONS_FILE", str(Path(app.config["DATABASE"]).resolve().parent / REVOKED_FILE_NAME)
    )
    app.extensions["bedside_login_limiter"] = LoginLimiter(
        int(app.config["LOGIN_MAX_FAILURES"]),
        float(app.config["LOGIN_WINDOW_S"]),
        max_total_failures=int(app.config["LOGIN_MAX_FAILURES_TOTAL"]),
    )
    app.extensions["bedside_revoked_sessions"] = RevokedSessions(app.config["REVOKED_SESSIONS_FILE"])
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=float(app.config["SESSION_IDLE_S"])),
    )
    app.session_interface = SessionInterface()
    app.before_request(_gate)
    app.register_error_handler(PasswordError, _password_file_error)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.register_blueprint(bp)
