"""The patient's screen, driven for real: ``fes walk --sim`` runs in a pseudo-terminal, keys
are typed into it, and the screen is read back through a VT100 emulator (pyte)."""
from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyte
import pytest

from fescontrol.core.codes import Fault
from fescontrol.ui.patient_ui import KEY_HELP, Status, patient_fault_message, render
from fescontrol.session.log import SessionLog

REPO = Path(__file__).resolve().parents[1]
COLS, ROWS = 100, 30


class Terminal:
    """A child process on a pty, its output fed into a pyte screen."""

    def __init__(self, args: list[str]):
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        pid, fd = pty.fork()
        if pid == 0:  # child
            os.chdir(REPO)
            os.environ.update(TERM="xterm", LINES=str(ROWS), COLUMNS=str(COLS))
            os.execv(sys.executable, [sys.executable, "-m", "fescontrol.cli", *args])
        self.pid, self.fd = pid, fd
        self.status: int | None = None

    def pump(self, timeout_s: float = 0.05) -> None:
        r, _, _ = select.select([self.fd], [], [], timeout_s)
        if r:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            if data:
                self.raw += data
                self.stream.feed(data)

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, pattern: str, timeout_s: float = 20.0) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump()
            m = re.search(pattern, self.text)
            if m:
                return m
            self._reap()
        raise AssertionError(f"screen never showed {pattern!r}; it shows:\n{self.text}")

    def key(self, keys: str | bytes) -> float:
        os.write(self.fd, keys.encode() if isinstance(keys, str) else keys)
        return time.monotonic()

    def _reap(self) -> None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)

    def wait_exit(self, timeout_s: float = 15.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.status is None and time.monotonic() < deadline:
            self.pump()
            self._reap()
        assert self.status is not None, f"the screen did not exit; it shows:\n{self.text}"
        return self.status

    def close(self) -> None:
        self._reap()
        if self.status is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.wait_exit(10)
            except AssertionError:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        os.close(self.fd)


def line(term: Terminal, label: str) -> str:
    for row in term.screen.display:
        if row.startswith(label):
            return row.rstrip()
    raise AssertionError(f"no {label!r} line on:\n{term.text}")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_walk_screen_keys_start_intensity_pause_resume_stop_quit(tmp_path):
    db = tmp_path / "s.db"
    term = Terminal(["walk", "--sim", "physionet:GaCo01", "--standby", "--db", str(db)])
    try:
        term.wait_for(r"Mode\s+STANDBY")
        term.wait_for(r"Sensor\s+ok \(\d+ frames\)")
        assert "connected (emulator)" in line(term, "Stimulator")
        assert "Last fault  none" in term.text
        assert line(term, "Intensity").startswith("Intensity   30 mA")
        assert KEY_HELP[0].strip() in term.text
        sent = term.key("w")
        term.wait_for(r"Mode\s+WALK")
        latency_s = time.monotonic() - sent
        m = term.wait_for(r"Steps today (\d+)\s+\(this session ([1-9]\d*)\)")
        assert int(m.group(1)) >= int(m.group(2))
        term.key("-")
        term.wait_for(r"Intensity\s+29 mA")
        time.sleep(0.35)  # the rate limit between two steps (300 ms in the default profile)
        term.key("-")
        term.wait_for(r"Intensity\s+28 mA")
        term.key("+")  # right after: too quick, refused with a message
        term.wait_for(r"> too quick")
        assert "Intensity   28 mA" in term.text
        term.key("p")
        term.wait_for(r"Mode\s+PAUSED")
        term.wait_for(r"Output\s+0\.0 mA")
        steps_paused = int(term.wait_for(r"this session (\d+)").group(1))
        time.sleep(1.5)
        term.pump()
        assert int(re.search(r"this session (\d+)", term.text).group(1)) <= steps_paused + 1
        term.key("p")
        term.wait_for(r"Mode\s+WALK")
        term.key("s")
        term.wait_for(r"Mode\s+STANDBY")
        term.key("q")
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert latency_s < 1.0, f"the screen took {latency_s:.2f} s to show a key"
    with SessionLog(db, create=False) as slog:
        names = [e["name"] for e in slog.events(1, ["command"])]
    assert names[:1] == ["intensity"] and "walk" in names and "pause" in names and "resume" in names
    assert names.count("intensity") == 3 and "stop" in names


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("fault, message, sensor", [
    ("stim-error@4", "Electrode problem", "ok"),
    ("unplug@4", "Sensor lost", "LOST"),
])
def test_a_fault_shows_a_clear_message_and_rings_the_bell(tmp_path, fault, message, sensor):
    term = Terminal(["walk", "--sim", "physionet:GaCo01", "--fault", fault, "--db", str(tmp_path / "s.db")])
    try:
        term.wait_for(r"Mode\s+WALK")
        bells_before = term.raw.count(b"\a")
        term.wait_for(r"Mode\s+FAULT", timeout_s=30)
        term.wait_for(r"FAULT: " + message)
        banner = " ".join(row.strip() for row in term.screen.display if row.strip())
        assert re.search(r"FAULT: " + message + r"[^.]*\.( [^.]*\.)? Stimulation is off\.", banner), term.text
        assert re.search(r"Last fault  \d\d:\d\d:\d\d (stimulator|sensor_stale)", term.text)
        assert line(term, "Output").endswith("0.0 mA")
        assert sensor in line(term, "Sensor")
        term.pump(0.3)
        assert term.raw.count(b"\a") > bells_before, "no bell on the fault"
        if sensor == "LOST":  # the port closed: the session is over
            term.wait_for(r"Session ended \(sensor closed\)")
        else:
            term.key("w")  # walking again needs the fault cleared
            term.wait_for(r"> cannot start walking: a fault is latched")
        term.key("q")
        assert term.wait_exit() == 1
    finally:
        term.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_headless_walk_prints_records_in_time_order(tmp_path):
    res = subprocess.run([sys.executable, "-m", "fescontrol.cli", "walk", "--sim", "physionet:GaCo01", "--no-ui",
                          "--duration", "6", "--speed", "3", "--db", str(tmp_path / "s.db")],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    stamped = [float(m.group(1)) for m in re.finditer(r"^\s+(\d+\.\d+) s  ", res.stdout, re.M)]
    assert len(stamped) >= 6 and stamped == sorted(stamped), res.stdout
    assert re.search(r"mode walk \(start\)", res.stdout)
    assert len(re.findall(r"step \d+ done: onset", res.stdout)) >= 3
    assert "session ended: end of recording" in res.stdout


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_headless_fault_line_has_bell_and_exit_code(tmp_path):
    res = subprocess.run([sys.executable, "-m", "fescontrol.cli", "walk", "--sim", "physionet:GaCo01", "--no-ui",
                          "--duration", "8", "--speed", "2", "--fault", "stim-error@3",
                          "--db", str(tmp_path / "s.db")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "\aFAULT: Electrode problem" in res.stdout and "Stimulation is off." in res.stdout
    assert "last fault:" in res.stdout and "stimulator" in res.stdout


def test_render_shows_every_field_and_the_fault_banner():
    s = Status(profile_name="p", mode="walk", state="swing", intensity_ma=24, active_ma=25, output_ma=25,
               min_ma=15, max_ma=30, step_ma=1, steps_session=12, steps_today=40, sensor="ok (300 frames)",
               stimulator="connected", last_fault="none", message="hello")
    text = "\n".join(t for t, _ in render(s))
    assert "Mode        WALK" in text and "state swing" in text
    assert "Intensity   24 mA  (from the next stimulation)" in text
    assert "Steps today 40   (this session 12)" in text and "Sensor      ok (300 frames)" in text
    assert "> hello" in text and "FAULT" not in text
    f = Status(mode="fault", fault_active=True, fault_message=patient_fault_message(Fault.HEEL_SENSOR_FAULT),
               last_fault="10:00:00 heel_sensor_fault")
    lines = render(f, width=60)
    banner = " ".join(t for t, style in lines if style == "fault")
    assert all(len(t) < 60 for t, _ in lines)
    assert ("FAULT: No footswitch signal: check that the heel sensor is plugged in and under your heel. "
            "Stimulation is off.") in banner


@pytest.mark.parametrize("code, detail, words", [
    (Fault.HEEL_SENSOR_FAULT, "", "No footswitch"), (Fault.SENSOR_STALE, "", "Sensor lost"),
    (Fault.SEQUENCE_GAP, "", "Sensor lost"), (Fault.STIMULATOR, "electrode error", "Electrode problem"),
    (Fault.STIMULATOR, "no ack", "Stimulator not responding"), (Fault.USER_STOP, "", "stop key"),
    (Fault.OUTPUT_LIMIT, "", "contact your clinician")])
def test_fault_messages_say_what_to_check(code, detail, words):
    text = patient_fault_message(code, detail)
    assert words in text and text.endswith("Stimulation is off.")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_fault_screen_drops_the_stale_message_and_an_empty_name_is_answered(tmp_path):
    """Under FAULT the screen no longer says "walking: …"; `c` without a fault, and `c` with an
    empty name, each get a line saying why nothing happened."""
    term = Terminal(["walk", "--sim", "physionet:GaCo01", "--fault", "stim-error@5", "--db", str(tmp_path / "s.db")])
    try:
        term.wait_for(r"> walking: stimulation follows your steps")
        term.key("c")
        term.wait_for(r"> there is no fault to clear")
        term.wait_for(r"Mode\s+FAULT", timeout_s=30)
        term.wait_for(r"FAULT: Electrode problem")
        term.pump(0.3)
        assert "> walking" not in term.text and "> there is no fault" not in term.text, term.text
        term.key("c")
        term.wait_for(r"Your name")
        term.key("\r")
        term.wait_for(r"> clearing a fault needs the name of the person who checked")
        assert "Mode        FAULT" in term.text
        term.key("q")
        assert term.wait_exit() == 1
    finally:
        term.close()
