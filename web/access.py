"""Which ``Host`` the dashboard answers to, and which ``Origin`` may write (DNS rebinding, CSRF).

A web page elsewhere can point its own name at 127.0.0.1 or the Pi's LAN address (DNS
rebinding): the browser then treats the dashboard as that page's own site, reads a CSRF token
and writes. The browser still sends the page's name in ``Host``, so only names this server is
known by are served:

- any IP address literal (``127.0.0.1``, ``192.168.1.20``, ``[::1]``): an address is its own
  origin, so no other site can borrow it;
- ``localhost`` and names under ``.localhost`` (always loopback in browsers);
- the machine's host name and ``<hostname>.local`` (mDNS), and the configured listen host;
- ``ALLOWED_HOSTS`` (``web.allowed_hosts``): more names, e.g. a reverse proxy's or a DNS name
  of your own; ``.example.org`` allows that domain and its subdomains.

Anything else gets 400 naming the host and the setting. Writes (POST, PUT, PATCH, DELETE) that
carry an ``Origin`` header must come from this same host and port (``Origin: null`` and other
sites get 403); a request without ``Origin`` (curl, scripts) is left to the CSRF check.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, current_app, request
from werkzeug.exceptions import BadRequest, Forbidden

logger = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class UnknownHost(BadRequest):
    """A ``Host`` header naming something this server is not known by (400)."""

    def __init__(self, host: str) -> None:
        super().__init__(
            description=(
                f"Host {host!r} is not a name this dashboard answers to; use its address or add the "
                "name to web.allowed_hosts"
            )
        )
        self.parameter = "Host"


class CrossOriginWrite(Forbidden):
    """A write whose ``Origin`` is another site (403)."""

    def __init__(self, origin: str) -> None:
        super().__init__(
            description=f"Origin {origin!r} may not write here: writes must come from the dashboard's pages"
        )
        self.parameter = "Origin"


def split_host(host: str) -> str:
    """The name or address part of a ``Host`` value, lower-case, without port or brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def known_names(listen_host: str, extra: Iterable[str]) -> frozenset[str]:
    """The host names to answer to (addresses are always accepted; see the module docstring)."""
    names = {"localhost"}
    hostname = socket.gethostname().lower().rstrip(".")
    if hostname:
        names |= {hostname, f"{hostname.split('.', 1)[0]}.local"}
    if listen_host:
        names.add(split_host(listen_host))
    names |= {split_host(name) if not name.startswith(".") else name.lower() for name in extra if name}
    return frozenset(names)


def host_is_known(host: str, names: frozenset[str]) -> bool:
    """Whether ``host`` (a ``Host`` header's value) is an address, a loopback name or in ``names``."""
    bare = split_host(host)
    if not bare:
        return False
    try:
        ipaddress.ip_address(bare)
        return True
    except ValueError:
        pass
    if bare in names or bare.endswith(".localhost"):
        return True
    return any(name.startswith(".") and (bare.endswith(name) or bare == name[1:]) for name in names)


def check_request() -> None:
    """``before_request``: refuse an unknown ``Host`` (400) and a cross-origin write (403)."""
    names: frozenset[str] = current_app.extensions["bedside_known_hosts"]
    host = request.host
    if not host_is_known(host, names):
        logger.warning("refused %s %s: unknown Host %r", request.method, request.path, host)
        raise UnknownHost(host)
    if request.method in UNSAFE_METHODS:
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(origin, host):
            logger.warning("refused %s %s from Origin %r", request.method, request.path, origin)
            raise CrossOriginWrite(origin)


def _same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` names the same host and port as ``host`` (default ports left out)."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return _without_default_port(parts.netloc) == _without_default_port(host)


def _without_default_port(netloc: str) -> str:
    netloc = netloc.strip().lower()
    for port in (":80", ":443"):
        if netloc.endswith(port):
            return netloc[: -len(port)]
    return netloc


def init_app(app: Flask) -> None:
    """Work out the known names (``LISTEN_HOST``, ``ALLOWED_HOSTS``) and install the check first."""
    extra = app.config.get("ALLOWED_HOSTS") or ()
    if isinstance(extra, str):
        extra = [part for part in extra.replace(",", " ").split()]
    app.extensions["bedside_known_hosts"] = known_names(str(app.config.get("LISTEN_HOST") or ""), extra)
    app.before_request_funcs.setdefault(None, []).insert(0, check_request)
