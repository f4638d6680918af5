"""The live view: a local web page (starlette + uvicorn, WebSocket stream) on 127.0.0.1.

NOT A CLEARED MEDICAL DEVICE.

Routes:
  GET  /                 the page (``static/index.html``; uPlot is served from ``static/``,
                         nothing is fetched from the internet)
  GET  /api/config       profile in use, editable fields with their allowed ranges (hard caps)
  GET  /api/state        machine state, fault, pending changes, change log, test bursts
  WS   /ws               stream: every ``PUSH_INTERVAL_S`` the new samples (heel force, toe-up
                         rate, delivered current, heel thresholds), new events and the state
  POST /api/change       {"changes": {"envelope.ramp_up_ms": 120, …}, "by": "…"}
                         → 202 queued for the next safe point, or 422 with the problems
  POST /api/test-burst   {"duration_ms": 1000} → 202, or 422
  POST /api/clear-fault  {"by": "…"}
  POST /api/save         {"by": "…", "note": "…"} → 201 with the stored version (needs --store)

The server only reads the session's buffer and queues requests; the control loop thread
applies them (see :mod:`fescontrol.live.session`).
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import DISCLAIMER, limits
from ..profile import Profile, _allowed, _field_info, field_bounds
from .session import EDITABLE, LiveError, LiveSession

STATIC_DIR = Path(__file__).parent / "static"
PUSH_INTERVAL_S = 0.04          # 25 updates per second
HOST = "127.0.0.1"


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


async def _body(request: Request) -> dict:
    try:
        data = await request.json()
    except (ValueError, json.JSONDecodeError):
        raise LiveError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise LiveError("the request body must be a JSON object")
    return data


def create_app(session: LiveSession) -> Starlette:
    """The ASGI app serving one live session."""

    async def index(_: Request):
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

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
                      "saved_versions": session.saved_versions})

    async def change(request: Request):
        try:
            body = await _body(request)
            record = session.request_change(body.get("changes"), by=str(body.get("by") or "orthotist"))
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
            burst = session.request_test_burst(duration)
        except LiveError as err:
            return _json({"ok": False, "error": str(err), "problems": err.problems}, 422)
        return _json({"ok": True, "test_burst": burst.to_json()}, 202)

    async def clear_fault(request: Request):
        try:
            body = await _body(request)
            session.clear_fault(str(body.get("by") or ""))
        except LiveError as err:
            return _json({"ok": False, "error": str(err)}, 422)
        return _json({"ok": True}, 202)

    async def save(request: Request):
        try:
            body = await _body(request)
            info = session.save_version(str(body.get("by") or ""), str(body.get("note") or ""))
        except LiveError as err:
            return _json({"ok": False, "error": str(err)}, 400)
        return _json({"ok": True, "version": info}, 201)

    async def stream(ws: WebSocket):
        await ws.accept()
        cursor = max(0, session.buffer.total - 2000)
        ev_index = 0
        last_profile = None
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
    return Starlette(routes=routes)


class LiveServer:
    """uvicorn serving :func:`create_app` on 127.0.0.1 (port 0 picks a free one), in a thread
    (:meth:`start`) or in the caller's thread (:meth:`serve_forever`)."""

    def __init__(self, session: LiveSession, port: int = 8765):
        import uvicorn
        self.session = session
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port))
        self.sock.listen(128)       # connections queue from now on, before uvicorn has started
        self.port = self.sock.getsockname()[1]
        from uvicorn.config import WS_PROTOCOLS
        ws = "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"
        config = uvicorn.Config(create_app(session), log_level="warning", lifespan="off", ws=ws)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

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
