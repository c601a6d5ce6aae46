"""The Bedside web app: a Flask app factory over the daemon's SQLite file, opened read-only."""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "./var/bedside.sqlite3"

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
    show; default ``bedside``), ``SECRET_KEY`` (default ``$BEDSIDE_SECRET_KEY``, else a random
    key per start, so sessions end on restart), ``REFRESH_MS`` (Tonight's refresh period,
    2000), ``STALE_AFTER_S`` (live state older than this is flagged, 30). ``test_config``
    overrides all of them.
    """
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE=os.environ.get("BEDSIDE_STORAGE__DB_PATH", DEFAULT_DATABASE),
        UNIT_ID="bedside",
        REFRESH_MS=2000,
        STALE_AFTER_S=30.0,
    )
    if os.environ.get("BEDSIDE_SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ["BEDSIDE_SECRET_KEY"]
    if test_config is not None:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secrets.token_hex(32)
        logger.info("no SECRET_KEY given: using a random one, so sessions won't survive a restart")
    app.config["DATABASE"] = str(Path(app.config["DATABASE"]).resolve())
    logger.info("reading %s (read-only) for unit %s", app.config["DATABASE"], app.config["UNIT_ID"])

    from web import api, dashboard, db, display

    db.init_app(app)
    display.init_app(app)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(api.bp)
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
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if _wants_json():
        response.headers.setdefault("Cache-Control", "no-store")
    return response
