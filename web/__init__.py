"""The Bedside web app: a Flask app factory over the daemon's SQLite file, opened read-only."""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from web import security

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "./var/bedside.sqlite3"

MAX_BODY_BYTES = 64 * 1024
"""The largest request body the app reads (413 beyond): the biggest real one, a check-in note of
2,000 characters, is under 24 KiB even with every character a JSON escape. Checked before the
body is parsed, so a huge POST (even to /login, before any login) costs no memory. ``web.serve``
also has waitress refuse bodies over ``MAX_BODY_BYTES_SERVER`` before buffering them."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
"""Only this server's own files may load: the Pi may have no internet, and nothing should
quietly depend on it."""


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app.

    Config keys: ``DATABASE`` (path of the daemon's SQLite file; default ``$BEDSIDE_STORAGE__DB_PATH`` or
    ``./var/bedside.sqlite3``, made absolute here), ``UNIT_ID`` (whose ``live_state`` row to
    show; default ``bedside``), ``LOGIN_REQUIRED`` (default True; ``web.serve`` sets it from
    the listening address), ``PASSWORD_FILE`` (default ``web-password`` beside the database),
    ``SECRET_KEY`` (default ``$BEDSIDE_SECRET_KEY``, else a key kept in ``web-secret-key``
    beside the database), ``REFRESH_MS`` (Tonight's polling period when live updates are not
    available, 2000), ``STALE_AFTER_S`` (live state older than this is flagged, 30),
    ``STREAM_TICK_S`` (how often the live stream looks at the database, 1.0),
    ``STREAM_MAX_S`` (a stream ends after this and the browser reconnects, 300; frees the
    server thread), ``STREAM_MAX_PER_CLIENT`` / ``STREAM_MAX_TOTAL`` (open live streams per
    client address and in all, 3 and 6: web.stream), ``LOGIN_MAX_FAILURES`` /
    ``LOGIN_MAX_FAILURES_TOTAL`` / ``LOGIN_WINDOW_S`` (5 per address and 20 in all per 60 s),
    ``SESSION_IDLE_S`` / ``SESSION_MAX_S`` (7 and 30 days: web.security), ``MAX_CONTENT_LENGTH``
    (largest request body, 64 KiB; more gets 413), ``LISTEN_HOST`` / ``ALLOWED_HOSTS`` (the
    names the dashboard answers to besides addresses and its host name: web.access).
    ``test_config`` overrides all of them.
    """
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE=os.environ.get("BEDSIDE_STORAGE__DB_PATH", DEFAULT_DATABASE),
        UNIT_ID="bedside",
        LOGIN_REQUIRED=True,
        REFRESH_MS=2000,
        STALE_AFTER_S=30.0,
        STREAM_TICK_S=1.0,
        STREAM_MAX_S=300.0,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_BODY_BYTES,
    )
    if test_config is not None:
        app.config.from_mapping(test_config)
    app.config["DATABASE"] = str(Path(app.config["DATABASE"]).resolve())
    if not app.config.get("PASSWORD_FILE"):
        app.config["PASSWORD_FILE"] = str(security.password_file_beside(app.config["DATABASE"]))
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = security.load_secret_key(app.config["DATABASE"]) or secrets.token_hex(32)
    logger.info(
        "reading %s (read-only) for unit %s; login %s",
        app.config["DATABASE"],
        app.config["UNIT_ID"],
        "required" if app.config["LOGIN_REQUIRED"] else "not required (loopback)",
    )

    from web import access, api, dashboard, db, display, stream, userdb
    from web.inputs import Int64Converter

    app.url_map.converters["id64"] = Int64Converter
    db.init_app(app)
    userdb.init_app(app)
    display.init_app(app)
    security.init_app(app)
    access.init_app(app)  # first of the before_request checks: Host, then Origin
    stream.init_app(app)
    api.init_app(app)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(stream.bp)
    app.register_blueprint(api.health_bp)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(sqlite3.Error, _database_error)
    app.after_request(_security_headers)
    return app


def _wants_json() -> bool:
    return request.path in ("/api", "/healthz") or request.path.startswith("/api/")


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    """JSON ``{"error": ...}`` under /api/ (with ``parameter`` when one was bad), a page elsewhere.

    Routing errors get a message naming the path or method instead of Werkzeug's prose.
    """
    code = exc.code or 500
    headers: dict[str, str] = {}
    if isinstance(exc, MethodNotAllowed):
        allowed = sorted(exc.valid_methods or [])
        message = f"method {request.method} not allowed for {request.path}; allowed: {', '.join(allowed)}"
        headers["Allow"] = ", ".join(allowed)
    elif isinstance(exc, RequestEntityTooLarge):
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        message = f"request body too large: at most {limit} bytes are accepted"
    elif isinstance(exc, NotFound) and exc.description == NotFound.description:
        message = f"no such {'endpoint' if _wants_json() else 'page'}: {request.path}"
    else:
        message = exc.description or exc.name
    if code >= 500:
        logger.error("%s %s failed: %s", request.method, request.path, message)
    if _wants_json():
        body: dict[str, Any] = {"error": message}
        parameter = getattr(exc, "parameter", None)
        if parameter is not None:
            body["parameter"] = parameter
        return jsonify(body), code, headers
    return render_template("error.html", code=code, title=exc.name, message=message), code, headers


def _database_error(exc: sqlite3.Error) -> ResponseReturnValue:
    """A database that exists but cannot be read (corrupt, locked past the busy timeout): 503."""
    logger.warning("%s %s: database unavailable: %s", request.method, request.path, exc)
    message = f"database unavailable: {exc}"
    if _wants_json():
        return jsonify(error=message), 503
    return (
        render_template("error.html", code=503, title="Database unavailable", message=message),
        503,
    )


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # same-origin, not no-referrer: under no-referrer browsers send "Origin: null" with the
    # dashboard's own form posts, and web.access refuses writes from an origin it cannot check.
    # Other sites still get no referrer.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if _wants_json() or request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response
