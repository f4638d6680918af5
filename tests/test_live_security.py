"""Live view security: only the orthotist's own page, with the session token, can drive it.

Every test starts the real server (uvicorn on a real socket) on the real control loop fed by
a pseudo-terminal, and talks to it with raw sockets, the ``websockets`` client, a separate
``fes live`` process, or headless chromium. Each refused request is checked twice: by its
answer, and by the session's state (profile, amplitude, fault, test bursts, fault clears)
being exactly what it was. A legitimate request then does change it, so none of these tests
could pass against a server that ignores the requests.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from fescontrol.tools.calibration import load_walk
from fescontrol.tools.live import LiveSession
from fescontrol.tools.live.guard import HostPolicy
from fescontrol.tools.live.server import LiveServer, LiveServerError, bind_address
from fescontrol.core.profile import bundled_profile_path, load_profile, profile_from_dict

CHROMIUM = os.environ.get("FES_CHROMIUM", "/usr/bin/chromium")
EVIL = "http://evil.example"
GAP_AT_S, GAP_S = 1.5, 0.6          # the sensor goes silent for 0.6 s: a stale-data fault latches


@pytest.fixture(scope="module")
def walk():
    return load_walk("physionet:JuCo01", "left")


@pytest.fixture
def profile():
    data = load_profile(bundled_profile_path("default")).model_dump(mode="json")
    data["patient_id"] = "P5"
    data["device"]["stale_ms"] = 200     # as in test_live: rides out a busy CI machine
    return profile_from_dict(data)


def _source(walk, *, start_s: float = 5.0, gap: bool = False):
    """``(open_fd, close)`` replaying ``walk`` in real time over a pty; with ``gap`` the sensor
    stops sending for ``GAP_S`` at ``GAP_AT_S``, so the real loop latches a stale-data fault."""
    from fescontrol.sim.pty_sensor import PtySensor
    from fescontrol.sim.replay import recording_stream

    from fescontrol.loop.runner import open_sensor
    frames, idx = recording_stream(walk)
    first = int(start_s * walk.rate_hz)
    frames = frames[first:]
    times = (idx[first:] - first) / walk.rate_hz
    if gap:
        times = times + np.where(times >= GAP_AT_S, GAP_S, 0.0)
    state = {}

    def open_fd():
        sensor = PtySensor([f.tobytes() for f in frames], times, speed=1.0)
        state["link"] = open_sensor(sensor.port)
        state["sensor"] = sensor.start()
        return state["link"].fileno(), None

    def close():
        if "sensor" in state:
            state["sensor"].stop()
            state["link"].close()
    return open_fd, close


@contextlib.contextmanager
def _served(walk, profile, *, gap: bool = False):
    open_fd, close = _source(walk, gap=gap)
    session = LiveSession(profile, open_fd, close=close, source="security test").start()
    server = LiveServer(session, port=0).start()
    try:
        yield session, server
    finally:
        server.stop()
        session.stop()


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_for_fault(session: LiveSession) -> None:
    """Until the gap's stale-data fault is latched and the sensor sends again (a clear during
    the gap itself would rightly latch the fault again at once)."""
    _wait(lambda: session.controller is not None and session.controller.kernel.fault, 6, "the stale-data fault")
    _wait(lambda: session.buffer.total > (GAP_AT_S + 0.3) * 100, 4, "the sensor sending again")


def _state(session: LiveSession) -> dict:
    """Everything a request could change: profile in use and queued, the kernel's amplitude,
    the fault, change requests, test bursts, fault clears."""
    c = session.controller
    return {"profile": session.profile.model_dump(mode="json"), "pending": session._pending,
            "amplitude_ma": float(c.kernel.amplitude_ma), "fault": bool(c.kernel.fault),
            "fault_text": c.supervisor.fault.text if c.supervisor.fault else None,
            "changes": len(session.changes), "bursts": len(session.test_bursts),
            "actions": len(session.actions), "clear_queued": session._clear_action is not None,
            "faults_cleared": sum(1 for e in session.buffer.events_since(0)[1]
                                  if e["event"].startswith("fault cleared"))}


def _raw(port: int, method: str, path: str, headers: dict[str, str | None],
         body: bytes = b"") -> tuple[int, dict, bytes]:
    """One HTTP/1.1 request written byte for byte on a socket (any Host, Origin, Content-Type);
    a header given as None is left out. Returns (status, headers, body)."""
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers.items() if v is not None]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer_headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), answer_headers, rest


def _attacks(port: int, token: str) -> list[tuple[str, str, str, dict, bytes, int]]:
    """(what, method, path, headers, body, expected status): every way around the guard tried.

    The state-changing bodies are the issue's: amplitude 100 mA, a 3000 ms test burst, a
    fault cleared "by evil.example"."""
    own = f"127.0.0.1:{port}"
    bodies = {"/api/change": {"changes": {"stimulation.amplitude_ma": 100, "patient.amplitude_max_ma": 100},
                              "by": "evil.example"},
              "/api/test-burst": {"duration_ms": 3000, "by": "evil.example"},
              "/api/clear-fault": {"by": "evil.example"}}
    wrong = ("A" if token[0] != "A" else "B") + token[1:]            # same length, one character off
    out = []
    for path, body in bodies.items():
        raw = json.dumps(body).encode()
        cases = [
            # the attack: a "simple" cross-origin text/plain POST, no preflight, no token
            ("cross-origin text/plain", {"Host": own, "Origin": EVIL, "Content-Type": "text/plain"}, 403),
            # the same, even with the token known to the attacker: Origin alone refuses it
            ("cross-origin with token", {"Host": own, "Origin": EVIL, "Content-Type": "application/json",
                                         "X-FES-Token": token}, 403),
            ("origin of another local port", {"Host": own, "Origin": f"http://127.0.0.1:{port + 1}",
                                              "Content-Type": "application/json", "X-FES-Token": token}, 403),
            ("origin null (sandboxed frame)", {"Host": own, "Origin": "null", "Content-Type": "application/json",
                                               "X-FES-Token": token}, 403),
            ("https origin", {"Host": own, "Origin": f"https://{own}", "Content-Type": "application/json",
                              "X-FES-Token": token}, 403),
            ("sec-fetch-site cross-site", {"Host": own, "Sec-Fetch-Site": "cross-site",
                                           "Content-Type": "application/json", "X-FES-Token": token}, 403),
            # DNS rebinding: the attacker's name resolves to 127.0.0.1; Origin matches that Host
            ("dns rebinding", {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}",
                               "Content-Type": "application/json", "X-FES-Token": token}, 403),
            ("foreign host, no origin", {"Host": f"evil.example:{port}", "Content-Type": "application/json",
                                         "X-FES-Token": token}, 403),
            ("own address at another port", {"Host": f"127.0.0.1:{port + 1}", "Content-Type": "application/json",
                                             "X-FES-Token": token}, 403),
            ("no port in host", {"Host": "127.0.0.1", "Content-Type": "application/json", "X-FES-Token": token}, 403),
            # HTTP/1.1 without Host: uvicorn's parser refuses it before the app (400)
            ("no host header", {"Host": None, "Content-Type": "application/json", "X-FES-Token": token}, 400),
            ("no token", {"Host": own, "Content-Type": "application/json"}, 403),
            ("wrong token", {"Host": own, "Content-Type": "application/json", "X-FES-Token": wrong}, 403),
            ("empty token", {"Host": own, "Content-Type": "application/json", "X-FES-Token": ""}, 403),
            ("token prefix", {"Host": own, "Content-Type": "application/json", "X-FES-Token": token[:20]}, 403),
            ("non-ascii token", {"Host": own, "Content-Type": "application/json", "X-FES-Token": "é" * 43}, 403),
            # with the right token and host, but not JSON: what a form or text/plain POST sends
            ("text/plain with token", {"Host": own, "Content-Type": "text/plain", "X-FES-Token": token}, 415),
            ("form with token", {"Host": own, "Content-Type": "application/x-www-form-urlencoded",
                                 "X-FES-Token": token}, 415),
            ("no content type", {"Host": own, "X-FES-Token": token}, 415),
        ]
        out += [(what, "POST", path, headers, raw, status) for what, headers, status in cases]
        # the token in the query of a POST does not get a cross-origin or rebinding request through
        out.append(("query token, cross-origin", "POST", f"{path}?token={token}",
                    {"Host": own, "Origin": EVIL, "Content-Type": "text/plain"}, raw, 403))
    for path in ("/", "/api/state", "/api/config", "/static/live.js"):
        out.append((f"GET {path} without token", "GET", path, {"Host": own}, b"", 403))
        out.append((f"GET {path} rebinding", "GET", f"{path}?token={token}", {"Host": f"evil.example:{port}"},
                    b"", 403))
        out.append((f"GET {path} cross-origin", "GET", f"{path}?token={token}", {"Host": own, "Origin": EVIL},
                    b"", 403))
    return out


@pytest.mark.timeout(90)
def test_raw_http_attacks_are_refused_and_change_nothing(walk, profile):
    with _served(walk, profile, gap=True) as (s, server):
        _wait_for_fault(s)
        before = _state(s)
        assert before["fault"] and before["amplitude_ma"] == profile.start_amplitude_ma
        refused0 = server.app.guard.refused
        attacks = _attacks(server.port, server.token)
        for what, method, path, headers, body, expected in attacks:
            status, answer_headers, answer = _raw(server.port, method, path, headers, body)
            assert status == expected, (what, path, status, answer)
            assert server.token.encode() not in answer, what          # never echoed
            assert "access-control-allow-origin" not in answer_headers, what
        assert server.app.guard.refused - refused0 == sum(a[-1] != 400 for a in attacks)
        assert _state(s) == before                                     # nothing changed
        time.sleep(0.2)                                                # a few loop periods later
        assert _state(s) == before

        # the legitimate page's requests do change it: the test above could fail
        ok = {"Host": f"127.0.0.1:{server.port}", "Origin": f"http://127.0.0.1:{server.port}",
              "Content-Type": "application/json", "X-FES-Token": server.token}
        status, _, answer = _raw(server.port, "POST", "/api/clear-fault", ok, b'{"by": "  "}')
        assert status == 422 and b"name of the person" in answer
        status, _, answer = _raw(server.port, "POST", "/api/clear-fault", ok, b'{"by": "Ann Smith"}')
        assert status == 202, answer
        _wait(lambda: not s.controller.kernel.fault, 3, "the fault cleared")
        clear = s.actions[0]
        assert (clear.kind, clear.by, clear.outcome) == ("clear fault", "Ann Smith", "done")
        assert "stale" in clear.detail and clear.done_wall_s >= clear.asked_wall_s > time.time() - 60
        status, _, answer = _raw(server.port, "POST", "/api/clear-fault", ok, b'{"by": "Ann Smith"}')
        assert status == 409 and b"no fault is latched" in answer
        status, _, answer = _raw(server.port, "GET", "/", {"Host": f"localhost:{server.port}",
                                                           "X-FES-Token": server.token})
        assert status == 200 and b"fes live view" in answer


@pytest.mark.timeout(60)
def test_values_are_strictly_typed_over_http(walk, profile):
    with _served(walk, profile) as (s, server):
        _wait(lambda: s.controller is not None, 3, "the loop")
        before = _state(s)
        ok = {"Host": f"127.0.0.1:{server.port}", "Content-Type": "application/json; charset=utf-8",
              "X-FES-Token": server.token}
        for body, expected in (
                (b'{"changes": {"stimulation.amplitude_ma": true}}', "true is not a number"),
                (b'{"changes": {"patient.amplitude_max_ma": "30"}}', '"30" is not a number'),
                (b'{"changes": {"envelope.ramp_up_ms": [120]}}', "is not a number"),
                (b'{"changes": {"stimulation.amplitude_ma": NaN}}', "NaN"),
                (b'{"changes": {"stimulation.amplitude_ma": Infinity}}', "Infinity"),
                (b'{"changes": {"stimulation.amplitude_ma": 20}, "by": 5}', "must be a text"),
                (b'[1, 2]', "JSON object"), (b'{"changes": ', "not valid JSON"), (b"\xff\xfe", "not valid JSON")):
            status, _, answer = _raw(server.port, "POST", "/api/change", ok, body)
            assert status == 422 and expected in json.loads(answer)["error"], (body, answer)
        for body, expected in ((b'{"duration_ms": true, "by": "Ann"}', "duration_ms"),
                               (b'{"duration_ms": "1000", "by": "Ann"}', "duration_ms"),
                               (b'{"duration_ms": 1000}', "name of the person"),
                               (b'{"duration_ms": 1000, "by": ""}', "name of the person"),
                               (b'{"duration_ms": 1000, "by": true}', "name of the person")):
            status, _, answer = _raw(server.port, "POST", "/api/test-burst", ok, body)
            assert status == 422 and expected in json.loads(answer)["error"], (body, answer)
        status, _, answer = _raw(server.port, "POST", "/api/change", ok, b"{" + b" " * 70_000 + b"}")
        assert status == 422 and b"larger than" in answer
        assert _state(s) == before
        status, _, answer = _raw(server.port, "POST", "/api/change", ok,
                                 b'{"changes": {"patient.amplitude_max_ma": 25.0}, "by": "Ann"}')
        assert status == 202, answer
        assert s.changes[0].changes[0].new == 25.0


@pytest.mark.timeout(60)
def test_websocket_needs_token_own_origin_and_host(walk, profile):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    with _served(walk, profile) as (s, server):
        ws_base = f"ws://127.0.0.1:{server.port}/ws"
        for uri, origin in ((ws_base, None), (ws_base + "?token=" + server.token[:-1] + "x", None),
                            (ws_base + "?token=" + server.token, EVIL),
                            (ws_base + "?token=" + server.token, "null"),
                            (ws_base + "?token=" + server.token + "&token=" + server.token, None)):
            with pytest.raises(InvalidStatus) as err:
                connect(uri, origin=origin, open_timeout=5)
            assert err.value.response.status_code == 403, (uri, origin)
        # a foreign Host (DNS rebinding) on a hand-written handshake; the same handshake with the
        # server's own Host is accepted (101), so the refusal is the Host's doing
        handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        for host, expected in ((f"evil.example:{server.port}", 403), (f"127.0.0.1:{server.port}", 101)):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                lines = [f"GET /ws?token={server.token} HTTP/1.1", f"Host: {host}",
                         f"Origin: http://{host}"] + [f"{k}: {v}" for k, v in handshake.items()]
                sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
                status = int(sock.recv(4096).split(b" ", 2)[1])
            assert status == expected, host
        with connect(ws_base + "?token=" + server.token, origin=f"http://127.0.0.1:{server.port}",
                     open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "data"


@pytest.mark.timeout(60)
def test_a_clear_while_the_cause_persists_says_the_fault_latched_again(walk, profile):
    open_fd, close = _source(walk, gap=True)
    s = LiveSession(profile, open_fd, close=close, source="security test").start()
    try:
        _wait(lambda: s.controller is not None and s.controller.kernel.fault, 6, "the stale-data fault")
        first = s.clear_fault("Ann")                      # the sensor is still silent
        _wait(lambda: "latched again" in first.outcome, 3, "the clear's outcome")
        assert "stale" in first.outcome and s.controller.kernel.fault
        _wait(lambda: s.buffer.total > (GAP_AT_S + 0.3) * 100, 4, "the sensor sending again")
        second = s.clear_fault("Ann")
        _wait(lambda: not s.controller.kernel.fault, 3, "the fault cleared")
        time.sleep(0.7)
        assert second.outcome == "done" and [a.by for a in s.actions] == ["Ann", "Ann"]
    finally:
        s.stop()


def test_host_policy():
    hosts = HostPolicy("127.0.0.1", 8765)
    for ok in ("127.0.0.1:8765", "localhost:8765", "LOCALHOST:8765", "[::1]:8765"):
        assert hosts.allows(ok), ok
    for bad in ("evil.example:8765", "127.0.0.1:8766", "127.0.0.1", "", "127.0.0.2:8765",
                "localhost.evil.example:8765", "::1:8765", "10.0.0.5:8765", "127.0.0.1:08765"):
        assert not hosts.allows(bad), bad
    remote = HostPolicy("10.1.2.3", 8765)
    assert remote.allows("10.1.2.3:8765") and remote.allows("127.0.0.1:8765")
    assert not remote.allows("10.1.2.4:8765") and not remote.allows("evil.example:8765")
    wildcard = HostPolicy("0.0.0.0", 8765)
    assert wildcard.allows("192.168.0.7:8765") and wildcard.allows(f"{socket.gethostname()}:8765")
    assert not wildcard.allows("evil.example:8765")           # a name: could be rebinding
    assert bind_address("127.0.0.1", False) == "127.0.0.1" and bind_address("localhost", False) == "127.0.0.1"
    assert bind_address("0.0.0.0", True) == "0.0.0.0"
    for host in ("0.0.0.0", "192.168.0.7", "::"):
        with pytest.raises(LiveServerError, match="--allow-remote"):
            bind_address(host, False)
    with pytest.raises(LiveServerError, match="not an IP address"):
        bind_address("example.org", True)


def _fes(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "fescontrol.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.timeout(60)
def test_cli_remote_host_is_an_explicit_opt_in():
    for host in ("0.0.0.0", "192.0.2.1"):
        r = _fes("live", "--recording", "physionet:JuCo01", "--side", "left", "--host", host, "--port", "0",
                 "--duration", "1")
        assert r.returncode == 2 and "--allow-remote" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert "live view:" not in r.stdout
    proc = subprocess.Popen([sys.executable, "-m", "fescontrol.cli", "live", "--recording", "physionet:JuCo01",
                             "--side", "left", "--start", "5", "--host", "0.0.0.0", "--allow-remote",
                             "--port", "0", "--duration", "4", "--store", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]{43})\s", line)
        assert found, line
        port, token = int(found.group(1)), found.group(2)
        # the token still applies to a remote bind; an IP literal Host is accepted, a name is not
        assert _raw(port, "GET", "/api/state", {"Host": f"127.0.0.1:{port}"})[0] == 403
        assert _raw(port, "GET", "/api/state", {"Host": f"192.0.2.1:{port}", "X-FES-Token": token})[0] == 200
        assert _raw(port, "GET", "/api/state", {"Host": f"evil.example:{port}", "X-FES-Token": token})[0] == 403
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "WARNING" in err and "0.0.0.0" in err and "Traceback" not in err
    assert (line + out + err).count(token) == 1          # printed once, in the URL; never logged
    assert "2 request(s) refused" in out


def test_refusals_are_logged_without_the_token(walk, profile, caplog):
    with caplog.at_level(logging.INFO), _served(walk, profile) as (s, server):
        _raw(server.port, "POST", f"/api/test-burst?token={server.token}",
             {"Host": f"127.0.0.1:{server.port}", "Origin": EVIL, "Content-Type": "text/plain"}, b"{}")
        ok = {"Host": f"127.0.0.1:{server.port}", "Content-Type": "application/json", "X-FES-Token": server.token}
        assert _raw(server.port, "POST", "/api/test-burst", ok, b'{"duration_ms": 600, "by": "Ann"}')[0] == 202
        _wait(lambda: s.test_bursts[0].status == "done", 8, "the test burst")
    text = caplog.text
    assert "refused" in text and "cross-origin" in text
    assert "test burst of 600 ms asked by Ann" in text
    assert server.token not in text
    assert s.actions[0].by == "Ann" and s.actions[0].outcome.startswith("done")


# ----------------------------------------------------------------------------- real browser
def _browser_available() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (.ci/install-browser)"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"no chromium at {CHROMIUM} (.ci/install-browser)"
    return None


EVIL_PAGE = """<!doctype html><html><head><link rel="icon" href="data:,"></head><body><h1>a page on another site</h1>
<iframe name="sink" style="display:none"></iframe>
<form id="f" method="POST" enctype="text/plain" target="sink" action="LIVE/api/clear-fault?token=TOKEN">
<input name='{"by": "evil.example", "x": "' value='"}'></form>
<script>
window.results = {};
const live = "LIVE", token = "TOKEN";
const body = (o) => JSON.stringify(o);
async function attempt(name, f) {
  try { const r = await f(); window.results[name] = r === undefined ? "sent" : r; }
  catch (e) { window.results[name] = "failed: " + e.message; }
}
async function run() {
  // the issue's attacks: simple text/plain POSTs need no preflight; the answer is opaque
  await attempt("amp", () => fetch(live + "/api/change", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"},
      body: body({changes: {"stimulation.amplitude_ma": 100, "patient.amplitude_max_ma": 100}, by: "evil"})}));
  await attempt("burst", () => fetch(live + "/api/test-burst?token=" + token, {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: body({duration_ms: 3000, by: "evil.example"})}));
  await attempt("clear", () => fetch(live + "/api/clear-fault?token=" + token, {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: body({by: "evil.example"})}));
  // with JSON and the token header the browser sends a CORS preflight first
  await attempt("json", () => fetch(live + "/api/change", {method: "POST",
      headers: {"Content-Type": "application/json", "X-FES-Token": token},
      body: body({changes: {"stimulation.amplitude_ma": 100}})}).then((r) => r.status));
  await attempt("read", () => fetch(live + "/api/state?token=" + token).then((r) => r.status));
  document.getElementById("f").submit();
  await new Promise((resolve) => {
    const ws = new WebSocket(live.replace("http", "ws") + "/ws?token=" + token);
    ws.onopen = () => { window.results.ws = "open"; ws.close(); resolve(); };
    ws.onerror = () => { window.results.ws = "refused"; resolve(); };
  });
  window.results.done = true;
}
run();
</script></body></html>"""


@contextlib.contextmanager
def _evil_site(live_url: str, token: str):
    """Another web site, on a real HTTP server of its own (another origin)."""
    page = EVIL_PAGE.replace("LIVE", live_url).replace("TOKEN", token).encode()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def _wait_js(page, expression: str, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting in the page for: {expression}")
        time.sleep(0.02)


@pytest.mark.browser
@pytest.mark.timeout(120)
@pytest.mark.skipif(_browser_available() is not None, reason=str(_browser_available()))
def test_other_sites_cannot_drive_the_live_view_in_a_real_browser(walk, profile):
    """In chromium: a page of another site (even one that knows the token) and a DNS-rebinding
    page are refused — amplitude, fault and test bursts unchanged — while the page opened from
    the printed URL works in the same browser."""
    from playwright.sync_api import sync_playwright
    with _served(walk, profile, gap=True) as (s, server), sync_playwright() as p:
        # evil.example resolves to 127.0.0.1, as a rebinding attacker's DNS would make it
        browser = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                          "--host-resolver-rules=MAP evil.example 127.0.0.1"])
        try:
            _wait_for_fault(s)
            before = _state(s)
            live = f"http://127.0.0.1:{server.port}"
            page = browser.new_page()
            for site in ("127.0.0.1", "evil.example"):          # another port; another name
                refused0 = server.app.guard.refused
                with _evil_site(live, server.token) as (evil_port, hits):
                    page.goto(f"http://{site}:{evil_port}/")
                    _wait_js(page, "window.results && window.results.done", 15)
                    results = page.evaluate("window.results")
                    time.sleep(0.5)                              # let the form post land
                assert hits == ["/"]
                assert results["ws"] == "refused", results
                assert results["json"].startswith("failed") and results["read"].startswith("failed"), results
                # the requests did reach the server (5 or more), and each one was refused
                assert server.app.guard.refused - refused0 >= 5, results
                assert _state(s) == before, site

            # DNS rebinding: the live view's own port under the attacker's name
            response = page.goto(f"http://evil.example:{server.port}/?token={server.token}")
            assert response.status == 403 and "fes live view" not in page.content()
            status = page.evaluate("""(token) => fetch('/api/clear-fault', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-FES-Token': token},
                body: JSON.stringify({by: 'evil.example'})}).then((r) => r.status)""", server.token)
            assert status == 403
            ws = page.evaluate("""(token) => new Promise((resolve) => {
                const ws = new WebSocket(`ws://${location.host}/ws?token=${token}`);
                ws.onopen = () => resolve('open'); ws.onerror = () => resolve('refused'); })""", server.token)
            assert ws == "refused"
            # the printed URL without its token shows why it is refused, and nothing else
            response = page.goto(live + "/")
            assert response.status == 403 and "token" in page.content() and "fes live view" not in page.content()
            assert _state(s) == before

            # the page from the printed URL works in the same browser: it streams, shows the
            # fault, and a named person clears it from the page
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url)
            _wait_js(page, "window.liveStats && window.liveStats.messages > 5", 10)
            assert "FAULT" in page.inner_text("#fault")
            page.click("#clear-fault")
            _wait_js(page, "document.getElementById('message').innerText.includes('name of the person')", 5)
            assert _state(s) == before
            page.fill("#clear-by", "Ann")
            page.click("#clear-fault")
            _wait(lambda: not s.controller.kernel.fault, 5, "the fault cleared from the page")
            _wait_js(page, "document.getElementById('action-log').innerText.includes('clear fault')"
                           " && document.getElementById('action-log').innerText.includes('by Ann: done')", 5)
            assert s.actions[-1].by == "Ann" and errors == []
        finally:
            browser.close()
