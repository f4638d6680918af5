"""The live view: a local web page (starlette + uvicorn, WebSocket stream) on 127.0.0.1.

NOT A CLEARED MEDICAL DEVICE.

Every request — the page, its static files, the API and the WebSocket — passes
:class:`fescontrol.tools.live.guard.RequestGuard` first: the session's secret token (in the URL
``fes live`` prints: ``http://127.0.0.1:8765/?token=…``; the page sends it back as the
``X-FES-Token`` header, or ``?token=`` for its files and the WebSocket), the server's own
Host and Origin only, and ``Content-Type: application/json`` on every POST. Values are
strictly typed: a boolean or a string where a number belongs is refused, never coerced.

Routes:
  GET  /                 the page (``static/index.html``; uPlot is served from ``static/``,
                         nothing is fetched from the internet)
  GET  /api/config       profile in use, editable fields with their allowed ranges (hard caps)
  GET  /api/state        machine state, fault, pending changes, change log, test bursts
  WS   /ws               stream: every ``PUSH_INTERVAL_S`` the new samples (heel force, toe-up
                         rate, delivered current, heel thresholds), new events and the state
  POST /api/change       {"changes": {"envelope.ramp_up_ms": 120, …}, "by": "…"}
                         → 202 queued for the next safe point, or 422 with the problems
  POST /api/test-burst   {"duration_ms": 1000, "by": "…"} → 202, or 422 (a named person is required)
  POST /api/clear-fault  {"by": "…"} → 202, or 422 (no name) / 409 (no fault latched)
  POST /api/save         {"by": "…", "note": "…"} → 201 with the stored version (needs --store)

The server only reads the session's buffer and queues requests; the control loop thread
applies them (see :mod:`fescontrol.tools.live.session`).
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from fescontrol import DISCLAIMER
from fescontrol.core import limits
from fescontrol.core.profile import Profile, _allowed, _field_info, field_bounds
from fescontrol.tools.live.guard import HostPolicy, RequestGuard, SecurityHeaders, is_loopback, new_token
from fescontrol.tools.live.session import EDITABLE, LiveError, LiveSession, person

STATIC_DIR = Path(__file__).parent / "static"
PUSH_INTERVAL_S = 0.04          # 25 updates per second
HOST = "127.0.0.1"
MAX_BODY_BYTES = 64 * 1024
TOKEN_MARK = "__FES_TOKEN__"    # in index.html: replaced by the session token when served


def field_ranges(profile: Profile) -> list[dict]:
    """Editable fields: path, value, min/max from the model's constraints, text of the range."""
    data = profile.model_dump(mode="json")
    mode = profile.trigger.mode
    out = []
    for path in EDITABLE:
        if (path.startswith("trigger.heel.") and not mode.needs_heel) or (
                path.startswith("trigger.tilt.") and not mode.needs_imu):
            continue
        loc = tuple(path.split("."))
        info = _field_info(Profile, loc)
        lo, _, hi, _ = field_bounds(info)  # strict bounds sent as the limits; the validator decides
        value: Any = data
        for part in loc:
            value = value[part]
        out.append({"path": path, "value": value, "min": lo, "max": hi,
                    "integer": path.endswith("_ms"), "allowed": _allowed(info),
                    "group": loc[0] if loc[0] != "trigger" else f"trigger.{loc[1]}"})
    return out


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


async def _body(request: Request) -> dict:
    """The request's JSON object; NaN/Infinity and bodies over ``MAX_BODY_BYTES`` refused."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise LiveError(f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise LiveError(f"the request body is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise LiveError("the request body must be a JSON object")
    return data


def _text(body: dict, key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise LiveError(f"{key}: {value!r} must be a text")
    return value


def create_app(session: LiveSession, *, token: str, hosts: HostPolicy) -> SecurityHeaders:
    """The ASGI app serving one live session, behind :class:`RequestGuard` (``token``, ``hosts``);
    its ``guard`` attribute counts the refused requests."""
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    if TOKEN_MARK not in page:
        raise RuntimeError(f"static/index.html has no {TOKEN_MARK} mark for the session token")
    page = page.replace(TOKEN_MARK, token)   # token_urlsafe: only [A-Za-z0-9_-], safe in HTML

    async def index(_: Request):
        return Response(page, media_type="text/html; charset=utf-8")

    async def favicon(_: Request):
        return Response(status_code=204)

    async def config(_: Request):
        p = session.profile
        return _json({"profile": p.model_dump(mode="json"), "fields": field_ranges(p),
                      "mode": p.trigger.mode.value, "source": session.source,
                      "store": session.store is not None, "patient_id": session.patient_id,
                      "test_burst_max_ms": limits.TEST_BURST_MS_MAX, "disclaimer": DISCLAIMER,
                      "push_interval_ms": PUSH_INTERVAL_S * 1000})

    async def state(_: Request):
        return _json({**session.snapshot(), "changes": [c.to_json() for c in session.changes],
                      "test_bursts": [b.to_json() for b in session.test_bursts],
                      "actions": [a.to_json() for a in session.actions],
                      "saved_versions": session.saved_versions})

    async def change(request: Request):
        try:
            body = await _body(request)
            record = session.request_change(body.get("changes"), by=_text(body, "by") or "orthotist")
        except LiveError as err:
            return _json({"ok": False, "error": str(err), "problems": err.problems}, 422)
        return _json({"ok": True, "change": record.to_json(),
                      "message": "accepted; applied at the next safe point (output at zero)"}, 202)

    async def test_burst(request: Request):
        try:
            body = await _body(request)
            duration = body.get("duration_ms", 1000)
            if isinstance(duration, float) and duration.is_integer():
                duration = int(duration)
            burst = session.request_test_burst(duration, by=body.get("by"))
        except LiveError as err:
            return _json({"ok": False, "error": str(err), "problems": err.problems}, 422)
        return _json({"ok": True, "test_burst": burst.to_json()}, 202)

    async def clear_fault(request: Request):
        try:
            body = await _body(request)
            person(body.get("by"), "clearing a fault")
        except LiveError as err:
            return _json({"ok": False, "error": str(err)}, 422)
        try:
            action = session.clear_fault(body["by"])
        except LiveError as err:
            return _json({"ok": False, "error": str(err)}, 409)
        return _json({"ok": True, "action": action.to_json()}, 202)

    async def save(request: Request):
        try:
            body = await _body(request)
            info = session.save_version(_text(body, "by"), _text(body, "note"))
        except LiveError as err:
            return _json({"ok": False, "error": str(err)}, 400)
        return _json({"ok": True, "version": info}, 201)

    async def stream(ws: WebSocket):
        await ws.accept()
        cursor = max(0, session.buffer.total - 2000)
        ev_index = 0
        last_profile = None
        actions_seen: list | None = None
        seq = 0
        next_at = time.monotonic()
        try:
            while True:
                cursor, data, produced = session.buffer.since(cursor)
                ev_index, events = session.buffer.events_since(ev_index)
                msg: dict[str, Any] = {"type": "data", "seq": seq, "data": data, "events": events,
                                       "status": session.snapshot(), "produced_wall_s": produced,
                                       "server_wall_s": time.time()}
                prof = session.profile
                if prof is not last_profile:
                    last_profile = prof
                    msg["profile"] = {"fields": field_ranges(prof), "tilt": prof.trigger.tilt.model_dump(),
                                      "mode": prof.trigger.mode.value}
                    msg["changes"] = [c.to_json() for c in session.changes]
                seen = [(a.id, a.outcome) for a in session.actions]
                if seen != actions_seen:
                    actions_seen = seen
                    msg["actions"] = [a.to_json() for a in session.actions]
                await ws.send_text(json.dumps(msg, allow_nan=False, default=str))
                seq += 1
                # a fixed schedule, so the rate does not drop by the time each message takes
                next_at = max(next_at + PUSH_INTERVAL_S, time.monotonic())
                await asyncio.sleep(next_at - time.monotonic())
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            return

    routes = [Route("/", index), Route("/favicon.ico", favicon), Route("/api/config", config),
              Route("/api/state", state),
              Route("/api/change", change, methods=["POST"]),
              Route("/api/test-burst", test_burst, methods=["POST"]),
              Route("/api/clear-fault", clear_fault, methods=["POST"]),
              Route("/api/save", save, methods=["POST"]),
              WebSocketRoute("/ws", stream),
              Mount("/static", StaticFiles(directory=STATIC_DIR), name="static")]
    guard = RequestGuard(Starlette(routes=routes), token=token, hosts=hosts)
    app = SecurityHeaders(guard)
    app.guard = guard
    return app


class LiveServerError(ValueError):
    """The live server cannot listen as asked (an address not allowed or not available)."""


def bind_address(host: str, allow_remote: bool) -> str:
    """The IP address to listen on for ``--host``; loopback unless ``allow_remote``.

    Raises :class:`LiveServerError` for a name that is not an IP address (other than
    ``localhost``) or a non-loopback address without the explicit opt-in.
    """
    if host == "localhost":
        return HOST
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise LiveServerError(f"--host {host!r} is not an IP address; give 127.0.0.1 (the default), "
                              "or with --allow-remote an address of this computer or 0.0.0.0") from None
    if not addr.is_loopback and not allow_remote:
        raise LiveServerError(f"--host {host} would let other computers reach the live view, which "
                              "drives the stimulator; add --allow-remote to confirm (the token still applies)")
    return str(addr)


class LiveServer:
    """uvicorn serving :func:`create_app` on ``host`` (127.0.0.1 unless ``allow_remote``; port 0
    picks a free one), in a thread (:meth:`start`) or in the caller's thread (:meth:`serve_forever`).

    ``token`` (default: a fresh :func:`fescontrol.tools.live.guard.new_token`) is required on every
    request; :attr:`url` includes it. uvicorn's access log is off, so the token (in the query
    of the page and WebSocket requests) is never logged. Raises :class:`LiveServerError` when
    the address is refused or the port is busy.
    """

    def __init__(self, session: LiveSession, port: int = 8765, *, host: str = HOST,
                 allow_remote: bool = False, token: str | None = None):
        import uvicorn
        self.session = session
        self.host = bind_address(host, allow_remote)
        self.remote = not is_loopback(self.host)
        self.token = token or new_token()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((self.host, port))
        except OSError as err:
            self.sock.close()
            raise LiveServerError(f"cannot listen on {self.host}:{port}: {err.strerror or err}; "
                                  "is another `fes live` running? choose another --port (0 picks a free one)") from None
        self.sock.listen(128)       # connections queue from now on, before uvicorn has started
        self.port = self.sock.getsockname()[1]
        self.hosts = HostPolicy(self.host, self.port)
        from uvicorn.config import WS_PROTOCOLS
        ws = "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"
        self.app = create_app(session, token=self.token, hosts=self.hosts)
        # access_log off: its lines would carry the token in the query string
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", ws=ws, access_log=False,
                                server_header=False)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address with the session token (loopback address on a wildcard bind)."""
        host = HOST if self.host in ("0.0.0.0", "::") else (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{host}:{self.port}/?token={self.token}"

    @property
    def base_url(self) -> str:
        """The server's address without the token (for messages that may be logged)."""
        return self.url.split("?", 1)[0]

    def serve_forever(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> "LiveServer":
        self._thread = threading.Thread(target=self.serve_forever, name="fes-live-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError("the live web server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sock.close()
