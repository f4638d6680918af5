"""Live view: the real loop over a real pty, changes only at safe points, refusals, test burst,
the HTTP API, and the page in a real headless browser."""
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from fescontrol.calibration import load_walk
from fescontrol.live import LiveError, LiveSession, recording_source
from fescontrol.profile import bundled_profile_path, load_profile
from fescontrol.profile_store import ProfileStore

SAFE = {"stance", "standby", "paused"}
CHROMIUM = os.environ.get("FES_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def walk():
    return load_walk("physionet:JuCo01", "left")


@pytest.fixture
def profile():
    data = load_profile(bundled_profile_path("default")).model_dump(mode="json")
    data["patient_id"] = "P5"
    # the real loop faults after stale_ms without a frame; the cap (200 ms) rides out a CI
    # machine busy with other test runs (the device default is 100 ms)
    data["device"]["stale_ms"] = 200
    from fescontrol.profile import profile_from_dict
    return profile_from_dict(data)


def _session(walk, profile, *, speed=1.0, start_s=5.0, **kwargs) -> LiveSession:
    open_fd, close = recording_source(walk, start_s=start_s, speed=speed)
    return LiveSession(profile, open_fd, close=close, source="test replay", **kwargs)


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def _samples(session):
    _, data, _ = session.buffer.since(0, max_samples=10 ** 6)
    return np.array(data["t_s"]), np.array(data["current_ma"])


def test_changes_apply_only_when_the_output_is_zero(walk, profile):
    s = _session(walk, profile, speed=3.0).start()
    try:
        asked = []
        plan = [{"patient.amplitude_max_ma": 24.0}, {"trigger.heel.debounce_ms": 20},
                {"envelope.ramp_up_ms": 140, "envelope.extension_ms": 100}, {"trigger.heel.off_fraction": 0.06}]
        for change in plan:
            _wait(lambda: s.snapshot()["level"] > 0.3, 5, "a burst in progress")   # ask mid-burst
            asked.append(s.request_change(change, by="tester"))
            assert asked[-1].status == "pending"
            _wait(lambda: asked[-1].status == "applied", 5, "the change applied")
        t, cur = _samples(s)
        for r in asked:
            assert r.applied_level == 0.0 and r.applied_state in SAFE, r.to_json()
            i = int(np.searchsorted(t, r.applied_t_s - 1e-9))
            assert cur[i] == 0.0, r.to_json()                # the output was zero at that sample
            assert r.applied_wall_s > r.asked_wall_s
        assert {r.how for r in asked} == {"in place", "new controller"}
        assert s.controllers_built == 3                     # two threshold changes, two new controllers
        heel = s.controller.profile.trigger.heel
        assert (heel.debounce_ms, heel.off_fraction) == (20, 0.06)
        env = s.profile.envelope
        assert (env.ramp_up_ms, env.extension_ms) == (140, 100)
        # bursts after the amplitude change plateau at the new amplitude, never above it
        _wait(lambda: _samples(s)[0][-1] > asked[-1].applied_t_s + 2.5, 5, "more walking")
        t, cur = _samples(s)
        after = cur[t > asked[0].applied_t_s]
        assert after.max() == pytest.approx(24.0) and s.snapshot()["fault"] is None
    finally:
        s.stop()


def test_invalid_changes_are_refused_whole(profile, walk):
    s = _session(walk, profile)            # not started: validation needs no loop
    for change, expected in (({"stimulation.amplitude_ma": 150}, "less than or equal to 100"),
                             ({"trigger.heel.off_fraction": 0.5}, "hysteresis"),
                             ({"patient.amplitude_max_ma": 40}, "must not exceed"),
                             ({"envelope.ramp_up_ms": 1000, "envelope.ramp_down_ms": 900}, "max_stim_ms"),
                             ({"device.stale_ms": 50}, "not editable"),
                             ({"envelope.ramp_up_ms": 100}, "no change")):
        with pytest.raises(LiveError, match=expected):
            s.request_change(change)
    assert s.changes == [] and s._pending is None
    for bad in (50, 5000, 1000.5):
        with pytest.raises(LiveError, match="duration_ms"):
            s.request_test_burst(bad)


def test_a_test_burst_ends_by_itself_and_walking_resumes(walk, profile):
    s = _session(walk, profile, speed=2.0).start()
    try:
        _wait(lambda: s.snapshot()["state"] == "swing", 5, "walking")
        burst = s.request_test_burst(600)
        _wait(lambda: burst.status == "done", 6, "the test burst to end")
        t, cur = _samples(s)
        on = (t >= burst.started_t_s) & (t <= burst.ended_t_s) & (cur > 0)
        assert on.any() and cur[on].max() == pytest.approx(s.profile.start_amplitude_ma)
        assert (t[on][-1] - t[on][0]) <= 0.6 + 0.011        # never longer than asked
        events = [e for e in s.buffer.events_since(0)[1] if e["t_s"] is not None]
        assert any(e["event"].startswith("test burst") for e in events)
        _wait(lambda: any(e["event"] == "heel_off" and e["t_s"] > burst.ended_t_s
                          for e in s.buffer.events_since(0)[1] if e["t_s"] is not None), 5, "walking again")
        assert s.snapshot()["fault"] is None
    finally:
        s.stop()


def _http(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_api_validates_and_saves_versions(walk, profile, tmp_path):
    from fescontrol.live.server import LiveServer
    store = ProfileStore(tmp_path)
    s = _session(walk, profile, speed=2.0, store=store).start()
    server = LiveServer(s, port=0).start()
    try:
        status, cfg = _http(server.url + "api/config")
        assert status == 200 and cfg["mode"] == "heel"
        paths = {f["path"]: f for f in cfg["fields"]}
        assert paths["stimulation.amplitude_ma"]["max"] == 100 and "trigger.tilt.onset_rate_dps" not in paths
        status, res = _http(server.url + "api/change", {"changes": {"trigger.heel.on_fraction": 0.01}})
        assert status == 422 and "on_fraction" in res["problems"][0] and "0.05" in res["problems"][0]
        status, res = _http(server.url + "api/change", {"changes": {"trigger.heel.debounce_ms": 25}, "by": "Ann"})
        assert status == 202 and res["change"]["status"] == "pending"
        _wait(lambda: _http(server.url + "api/state")[1]["changes"][0]["status"] == "applied", 5, "applied")
        status, res = _http(server.url + "api/save", {"by": "", "note": "x"})
        assert status == 400 and "who made the change" in res["error"]
        status, res = _http(server.url + "api/save", {"by": "Ann", "note": "tuned while walking"})
        assert status == 201 and res["version"]["version"] == 2
        hist = store.history("P5")
        assert [v.action for v in hist] == ["save", "live"]
        assert [(c.path, c.old, c.new) for c in hist[1].changes] == [("trigger.heel.debounce_ms", 30, 25)]
        assert "tuned while walking" in hist[1].note
        status, res = _http(server.url + "api/test-burst", {"duration_ms": 99999})
        assert status == 422
    finally:
        server.stop()
        s.stop()


def _browser_available() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (.ci/install-browser)"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"no chromium at {CHROMIUM} (.ci/install-browser)"
    return None


@pytest.mark.browser
@pytest.mark.skipif(_browser_available() is not None, reason=str(_browser_available()))
def test_the_page_streams_applies_and_refuses_in_a_real_browser(walk, profile, record_property):
    from playwright.sync_api import sync_playwright

    from fescontrol.live.server import LiveServer
    s = _session(walk, profile, speed=1.0, start_s=4.0).start()     # real-time replay over a pty
    server = LiveServer(s, port=0).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM)
                                        else shutil.which("chromium"), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(server.url)
                assert "fes live view" in page.title()
                assert page.locator("#plot-heel canvas").count() == 1
                page.wait_for_function("window.liveStats && window.liveStats.messages > 10", timeout=10_000)
                first = page.evaluate("liveStats.samples")
                m0 = page.evaluate("liveStats.messages")
                time.sleep(2.0)
                stats = page.evaluate("({m: liveStats.messages, samples: liveStats.samples,"
                                      " p95: liveStats.lagP95Ms, lag: liveStats.lagMs})")
                rate = (stats["m"] - m0) / 2.0
                record_property("updates_per_s", rate)
                record_property("lag_p95_ms", stats["p95"])
                print(f"\nlive page: {rate:.1f} updates/s, lag p95 {stats['p95']:.0f} ms "
                      f"(last {stats['lag']:.0f} ms), {stats['samples'] - first} samples in 2 s")
                assert rate >= 20, stats
                assert stats["p95"] <= 200, stats
                assert stats["samples"] - first >= 150           # 100 Hz data keeps arriving
                # an invalid change: refused, with a visible message
                page.fill("#f-trigger-heel-off_fraction", "0.5")
                page.click("#apply")
                page.wait_for_selector(".message.error", state="visible", timeout=5000)
                assert "hysteresis" in page.inner_text("#message")
                assert s.changes == []
                # a valid one: accepted, then applied at a safe point
                page.fill("#f-trigger-heel-off_fraction", "0.04")
                page.fill("#f-envelope-ramp_up_ms", "130")
                page.click("#apply")
                page.wait_for_function("liveStats.applied.length === 1", timeout=5000)
                assert "applied" in page.inner_text("#message")
                assert s.changes[0].applied_level == 0.0 and s.profile.envelope.ramp_up_ms == 130
                assert page.locator('#change-log li[data-status="applied"]').count() == 1
                # the test burst button
                page.click("#test-burst")
                page.wait_for_function("document.getElementById('event-log').innerText.includes('test burst ended')",
                                       timeout=6000)
                assert s.test_bursts[0].status == "done"
                assert errors == []
            finally:
                browser.close()
    finally:
        server.stop()
        s.stop()
