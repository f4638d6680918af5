"""Who may talk to the live view: a per-session token, the server's own Host and Origin, JSON.

NOT A CLEARED MEDICAL DEVICE.

The live page drives a stimulator, and any other web page open in the same browser can send
requests to ``127.0.0.1``. :class:`RequestGuard` is an ASGI middleware in front of the whole
app (page, static files, API and WebSocket) that refuses, before any route runs:

* a ``Host`` header that is not one of the server's own addresses at its port
  (``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT``; with ``--allow-remote`` also the
  bound address or, on a wildcard bind, any IP literal and this computer's host names).
  A DNS-rebinding page reaches the server under its own name, so it is refused here → 403;
* an ``Origin`` header (browsers send one with every cross-origin request, every POST and
  every WebSocket) other than ``http://`` + the request's own (allowed) Host, including
  ``null``; and ``Sec-Fetch-Site: cross-site`` → 403;
* a request without the session's token (``X-FES-Token`` header, or ``token`` in the query for
  the page, its static files and the WebSocket, which a browser cannot give headers),
  compared with :func:`hmac.compare_digest` → 403;
* a state-changing request (any method but GET/HEAD/OPTIONS) whose ``Content-Type`` is not
  ``application/json`` → 415, so a "simple" cross-origin form or ``text/plain`` POST, which
  needs no CORS preflight, never reaches a handler.

A refused WebSocket is closed before the handshake completes (the client sees HTTP 403).
The token never appears in a response, an error message or a log line of this module;
uvicorn's access log (which would print the query) is switched off by the server.
:class:`SecurityHeaders` adds :data:`SECURITY_HEADERS` to every answer.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import socket
from urllib.parse import parse_qsl

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-fes-token"
TOKEN_QUERY = "token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


#: Sent with every HTTP answer, refusals included (:class:`SecurityHeaders`): no framing, no
#: referrer (the URL holds the token), nothing cached, scripts and connections only from here.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                                 b"base-uri 'none'; form-action 'none'"),
    (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def new_token() -> str:
    """A fresh per-session secret (256 bits, URL-safe characters only)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


class HostPolicy:
    """The ``Host`` header values the server answers to (``host:port``, lower case).

    ``bind`` is the address the server listens on. Loopback names are always allowed. A
    non-loopback ``bind`` (an explicit opt-in) also allows that address; a wildcard bind
    (``0.0.0.0``, ``::``) allows any IP literal — a DNS-rebinding attack needs a name the
    attacker controls, never an IP literal — and this computer's own host names.
    """

    def __init__(self, bind: str, port: int):
        self.port = int(port)
        self.wildcard = bind in ("0.0.0.0", "::")
        names = set(LOOPBACK_NAMES)
        if not is_loopback(bind) and not self.wildcard:
            names.add(f"[{bind}]" if ":" in bind else bind)
        if self.wildcard:
            for name in (socket.gethostname(), socket.getfqdn()):
                if name:
                    names.add(name.lower())
        self.names = frozenset(n.lower() for n in names)

    def allows(self, host_header: str) -> bool:
        host, sep, port = host_header.strip().lower().rpartition(":")
        if not sep or port != str(self.port) or not host:
            return False                    # no port, or another port
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            return False                    # an IPv6 literal must be in brackets
        if host in self.names:
            return True
        return self.wildcard and _is_ip_literal(host)


def _headers(scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = key.decode("latin-1").lower()
        # a repeated security header is ambiguous: keep a marker that fails every check
        out[name] = "\x00repeated" if name in out else value.decode("latin-1")
    return out


def _query_token(scope) -> str | None:
    values = [v for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
              if k == TOKEN_QUERY]
    return values[0] if len(values) == 1 else None


class RequestGuard:
    """ASGI middleware: Host, Origin, token and JSON content-type checks (see module doc)."""

    def __init__(self, app, *, token: str, hosts: HostPolicy):
        if not token:
            raise ValueError("the live view needs a non-empty session token")
        self.app = app
        self._token = token.encode("ascii")
        self.hosts = hosts
        self.refused = 0            # requests refused so far (for the session summary)

    def problem(self, scope) -> tuple[int, str] | None:
        """``(status, reason)`` for a request to refuse, None when it may pass."""
        headers = _headers(scope)
        host = headers.get("host", "")
        if not self.hosts.allows(host):
            return 403, ("the Host header is not this server's address; open the URL that "
                         "`fes live` printed")
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"http://{host.lower()}":
            return 403, "cross-origin requests are refused; use the page `fes live` printed"
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross-site requests are refused; use the page `fes live` printed"
        given = headers.get(TOKEN_HEADER)
        if given is None:
            given = _query_token(scope)
        if not given or not hmac.compare_digest(given.encode("utf-8", "replace"), self._token):
            return 403, ("missing or wrong session token; open the URL that `fes live` printed "
                         "(it ends in ?token=…)")
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return 415, "a change must be sent as Content-Type: application/json"
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        found = self.problem(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        status, reason = found
        self.refused += 1
        client = scope.get("client") or ("?", 0)
        log.warning("live view refused a %s request from %s to %s: %s", scope["type"], client[0],
                    scope.get("path", "?"), reason)
        if scope["type"] == "websocket":
            await receive()                          # websocket.connect
            await send({"type": "websocket.close", "code": 1008})   # before accept: HTTP 403
            return
        body = json.dumps({"ok": False, "error": reason}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP answer."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": list(message.get("headers", []))
                           + [h for h in SECURITY_HEADERS if h[0] not in names]}
            await send(message)
        await self.app(scope, receive, send_with_headers)
