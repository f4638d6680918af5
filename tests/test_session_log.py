"""The session log: schema and migration, refusing files that are not ours, crash safety
(SIGKILL during a simulated walk), and the `fes log` commands."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fescontrol.cli import main
from fescontrol.core.profile_diff import profile_hash
from fescontrol.session.log import APPLICATION_ID, SCHEMA_VERSION, LogWriter, SessionLog, SessionLogError

REPO = Path(__file__).resolve().parents[1]
FES = [sys.executable, "-m", "fescontrol.cli"]


def fes_cmd(*args: str) -> list[str]:
    return [*FES, *args]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ----- schema ------------------------------------------------------------------------------------

def test_new_database_is_versioned_wal_and_ours(tmp_path, default_profile):
    path = tmp_path / "sub" / "s.db"
    with SessionLog(path) as slog:
        assert slog.schema_version == SCHEMA_VERSION and slog.journal_mode == "wal"
        sid = slog.begin_session(default_profile, kernel="python")
        assert slog.session(sid)["profile_hash"] == profile_hash(default_profile)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    versions = [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    db.close()


def test_an_older_schema_is_migrated_and_keeps_its_data(tmp_path, default_profile):
    path = tmp_path / "old.db"
    with SessionLog(path, schema_version=1) as old:
        assert old.schema_version == 1
        sid = old.begin_session(default_profile, kernel="python", sim_recording="physionet:GaCo01")
        old.add_event(sid, "mode", "walk", wall=time.time(), t_us=1_000_000, frame=3)
        old.commit()
        tables = {r[0] for r in old.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "samples" not in tables and "intensity_memory" not in tables
    with pytest.raises(SessionLogError, match="needs migrating"):
        SessionLog(path, migrate=False)
    with SessionLog(path) as slog:
        assert slog.schema_version_found == 1 and slog.schema_version == SCHEMA_VERSION
        assert slog.session(sid)["sim_recording"] == "physionet:GaCo01"
        assert slog.events(sid)[0]["name"] == "walk"
        slog.remember_intensity("p1", 22.0, "h", time.time())  # a version-2 table
        slog.commit()
        assert slog.remembered_intensity("p1") == 22.0
        assert slog.integrity() == "ok"


def test_a_newer_schema_is_refused_and_left_unchanged(tmp_path, default_profile):
    path = tmp_path / "new.db"
    with SessionLog(path) as slog:
        slog.db.execute("INSERT INTO schema_version VALUES (99, 0, 'future')")
    before = path.read_bytes()
    with pytest.raises(SessionLogError, match="newer than this fescontrol"):
        SessionLog(path)
    assert path.read_bytes() == before


def test_a_corrupt_file_is_refused_with_a_clear_message_and_left_byte_identical(tmp_path):
    path = tmp_path / "sessions.db"
    path.write_bytes(os.urandom(8192))
    before = _files(tmp_path)
    with pytest.raises(SessionLogError, match="not a SQLite database.*refusing to use or overwrite it"):
        SessionLog(path)
    assert _files(tmp_path) == before
    res = CliRunner().invoke(main, ["log", "list", "--db", str(path)])
    assert res.exit_code == 2 and "not a SQLite database" in res.output
    assert _files(tmp_path) == before


def test_a_damaged_sqlite_file_is_refused_and_left_byte_identical(tmp_path, default_profile):
    path = tmp_path / "sessions.db"
    with SessionLog(path) as slog:
        slog.begin_session(default_profile, kernel="python")
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    for extra in ("-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    data[100:len(data)] = os.urandom(len(data) - 100)  # the header stays, the pages are garbage
    path.write_bytes(bytes(data))
    before = _files(tmp_path)
    with pytest.raises(SessionLogError, match="damaged or not a session database.*left unchanged"):
        SessionLog(path)
    assert _files(tmp_path) == before


def test_a_foreign_sqlite_file_is_refused_and_left_byte_identical(tmp_path):
    path = tmp_path / "contacts.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE people (name TEXT)")
    db.execute("INSERT INTO people VALUES ('Ada')")
    db.commit()
    db.close()
    before = _files(tmp_path)
    with pytest.raises(SessionLogError, match="not a fescontrol session log.*people.*refusing to change it"):
        SessionLog(path)
    assert _files(tmp_path) == before
    res = CliRunner().invoke(main, ["walk", "--sim", "physionet:GaCo01", "--no-ui", "--db", str(path)])
    assert res.exit_code == 2 and "not a fescontrol session log" in res.output
    assert _files(tmp_path) == before


def test_missing_database_is_reported_not_created(tmp_path):
    path = tmp_path / "none.db"
    res = CliRunner().invoke(main, ["log", "list", "--db", str(path)])
    assert res.exit_code == 2 and "no session database here" in res.output
    assert not path.exists()


def test_log_writer_commits_each_batch_durably(tmp_path, default_profile):
    from fescontrol.session.modes import CommandRecord
    slog = SessionLog(tmp_path / "w.db")
    sid = slog.begin_session(default_profile, kernel="python")
    seen = []
    writer = LogWriter(slog, sid, default_profile, on_commit=seen.append)
    writer.put(CommandRecord("walk", 5, 1_050_000, time.time()))
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    # a second connection sees the committed row while the writer still runs
    other = SessionLog(tmp_path / "w.db", create=False)
    assert [e["name"] for e in other.events(sid)] == ["walk"]
    other.close()
    writer.close("test", 5)
    with SessionLog(tmp_path / "w.db") as again:
        assert again.session(sid)["end_reason"] == "test" and again.session(sid)["frames_processed"] == 5


# ----- crash safety ---------------------------------------------------------------------------

COMMIT_LINE = re.compile(r"log: committed (\d+) steps, (\d+) bursts, (\d+) events, (\d+) sensor bytes, "
                         r"(\d+) samples")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_kill_9_during_a_simulated_walk_loses_nothing_committed(tmp_path):
    """SIGKILL the process mid-walk: the database opens, passes the integrity check, and holds
    at least everything the writer reported as committed before the kill."""
    db = tmp_path / "s.db"
    proc = subprocess.Popen(fes_cmd("walk", "--sim", "physionet:GaCo01", "--no-ui", "--verbose", "--speed", "2",
                                    "--db", str(db), "--log-frames"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    last = None
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            m = COMMIT_LINE.search(line)
            if m:
                last = tuple(int(x) for x in m.groups())
                if last[0] >= 6 and last[4] > 0:
                    break
            assert time.monotonic() < deadline, "the walk did not get going"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL and last is not None
    steps, bursts, events, frame_bytes, samples = last
    with SessionLog(db, create=False) as slog:
        assert slog.integrity() == "ok"
        s = slog.sessions()[-1]
        assert s["ended_wall"] is None  # no clean end: it was killed
        assert s["steps"] >= steps and len(slog.bursts(s["id"])) >= bursts
        assert len(slog.events(s["id"])) >= events
        raw = slog.raw_frames(s["id"])  # contiguous batches, or it raises
        t_us, current_ma = slog.samples(s["id"])
        assert len(raw) >= frame_bytes and len(t_us) >= samples
        numbers = [b["number"] for b in slog.bursts(s["id"], "step")]
        assert numbers == list(range(1, len(numbers) + 1))
        lost_commits = 0  # everything the writer reported is there (asserted above)
    res = CliRunner().invoke(main, ["log", "list", "--db", str(db)])
    assert "interrupted (no clean end)" in res.output
    # the raw bytes that survived replay to the same outputs
    res = CliRunner().invoke(main, ["replay", "last", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "identical" in res.output and lost_commits == 0


# ----- the fes log commands on a real simulated session --------------------------------------

@pytest.fixture(scope="module")
def walked_db(tmp_path_factory) -> Path:
    """A walk (frames logged) and a short training session, run for real over the simulator."""
    db = tmp_path_factory.mktemp("log") / "sessions.db"
    for cmd in (["walk", "--duration", "6", "--speed", "3", "--log-frames"],
                ["train", "--duration", "8", "--speed", "4"]):
        res = subprocess.run(fes_cmd(cmd[0], "--sim", "physionet:GaCo01", "--no-ui", "--db", str(db), *cmd[1:]),
                             cwd=REPO, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
    return db


def test_log_list_shows_both_sessions(walked_db):
    res = CliRunner().invoke(main, ["log", "list", "--db", str(walked_db)])
    assert res.exit_code == 0
    rows = [line.split() for line in res.output.splitlines()[1:]]
    assert [r[0] for r in rows] == ["1", "2"]
    assert "walk" in rows[0] and "training" in rows[1]
    assert all("recording" in " ".join(r) for r in rows)  # "end of recording"


def test_log_show_has_profile_timeline_and_steps(walked_db):
    with SessionLog(walked_db, create=False) as slog:
        steps = slog.bursts(1, "step")
        s = slog.session(1)
    res = CliRunner().invoke(main, ["log", "show", "1", "--db", str(walked_db)])
    assert res.exit_code == 0
    out = res.output
    assert f"sha256:{s['profile_hash']}" in out and "raw frames logged" in out
    assert re.search(r"mode\s+walk\s+start", out) and re.search(r"mode\s+standby\s+stop", out)
    assert f"bursts: {len(steps)} steps" in out and len(steps) >= 3
    assert len(re.findall(r"^\s+step\s+\d+ ", out, re.M)) == len(steps)
    res = CliRunner().invoke(main, ["log", "show", "7", "--db", str(walked_db)])
    assert res.exit_code == 2 and "no session 7" in res.output


def test_log_export_json_and_csv(walked_db, tmp_path):
    res = CliRunner().invoke(main, ["log", "export", "1", "--json", "--db", str(walked_db)])
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert set(data) == {"session", "events", "bursts"}
    assert data["session"]["id"] == 1 and data["session"]["profile"]["name"] == "default"
    steps = [b for b in data["bursts"] if b["kind"] == "step"]
    assert steps and all(b["peak_ma"] > 0 and b["duration_ms"] > 0 for b in steps)
    assert {"command", "mode", "intensity", "note"} <= {e["kind"] for e in data["events"]}
    out = tmp_path / "s1.csv"
    res = CliRunner().invoke(main, ["log", "export", "1", "--csv", "--db", str(walked_db), "--out", str(out)])
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sum(r["record"] == "burst" for r in rows) == len(data["bursts"])
    assert sum(r["record"] == "event" for r in rows) == len(data["events"])
    walls = [r["wall_iso"] for r in rows]
    assert walls == sorted(walls)


def test_log_summary_counts_the_day(walked_db):
    with SessionLog(walked_db, create=False) as slog:
        bursts = slog.bursts(1) + slog.bursts(2)
        days = slog.summary()
    assert len(days) == 1
    d = days[0]
    assert d["sessions"] == 2 and d["training_sessions"] == 1
    assert d["steps"] == sum(b["kind"] == "step" for b in bursts) >= 3
    assert d["stimulation_min"] == pytest.approx(sum(b["duration_ms"] for b in bursts) / 60000)
    assert 0.05 < d["walking_min"] < 0.15  # about 6 s of walking
    res = CliRunner().invoke(main, ["log", "summary", "--db", str(walked_db)])
    assert res.exit_code == 0
    line = res.output.splitlines()[1].split()
    assert line[0] == d["date"] and line[1] == "2" and line[2] == str(d["steps"]) and line[5] == "1"


def test_remembered_intensity_carries_to_the_next_session(walked_db):
    with SessionLog(walked_db, create=False) as slog:
        restored = [e for e in slog.events(2, ["note"]) if e["name"] == "intensity"]
    assert restored and "restored your last level, 30 mA" in restored[0]["detail"]


# ----- when the log cannot be written (issue 17) ---------------------------------------------

def _freeze_size(slog: SessionLog) -> None:
    """From now on the database cannot grow: SQLite itself answers SQLITE_FULL ("database or
    disk is full"), exactly as on a full disk."""
    pages = slog.db.execute("PRAGMA page_count").fetchone()[0]
    slog.db.execute(f"PRAGMA max_page_count = {pages}")


def _step(number: int, wall: float):
    from fescontrol.session.modes import BurstRecord
    return BurstRecord("step", number, number * 1_000_000, number * 1_000_000 + 800_000, 30.0,
                       ("heel_off", "heel_strike"), wall, number * 1_000_000, number * 1_000_000 + 600_000)


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.timeout(60)
def test_log_writer_on_a_full_disk_says_so_at_once_drops_the_rest_and_keeps_what_was_committed(
        tmp_path, default_profile, caplog):
    from fescontrol.session.modes import Note
    path = tmp_path / "full.db"
    slog = SessionLog(path)
    sid = slog.begin_session(default_profile, kernel="python")
    alerts, commits = [], []
    writer = LogWriter(slog, sid, default_profile, on_commit=commits.append, on_failure=alerts.append)
    writer.put(_step(1, time.time()))
    _wait(lambda: commits and commits[-1].steps == 1)
    writer.put(Note("marker", "filled from here", 0, 0, time.time()))
    _wait(lambda: len(commits) >= 2)
    slog.db.execute("PRAGMA max_page_count")        # the writer is idle: freeze the size now
    _freeze_size(slog)
    for n in range(2, 200):                          # far more than the free pages can hold
        writer.put(_step(n, time.time()))
        writer.put(Note("filler", "x" * 2000, 0, 0, time.time()))
    _wait(lambda: alerts)
    assert re.fullmatch(rf"the disk is full \(since \d\d:\d\d:\d\d; {re.escape(str(path))}\)", alerts[0])
    assert len(alerts) == 1
    with pytest.raises(SessionLogError) as info:
        writer.close("end", 10)
    text = str(info.value)
    assert re.match(r"logging stopped at \d\d:\d\d:\d\d: the disk is full; after that (\d+) steps and (\d+) "
                    r"records in all were not logged", text)
    dropped_steps = int(re.search(r"after that (\d+) steps", text).group(1))
    assert not any(r.exc_info for r in caplog.records)         # no traceback anywhere
    with SessionLog(path, create=False) as again:
        steps = again.bursts(sid, "step")
        assert steps[0]["number"] == 1                       # committed before: kept
        assert len(steps) + dropped_steps == 199             # every step is logged or counted as lost
        assert again.integrity() == "ok"


def _run_sim_walk_until_failure(tmp_path, default_profile, fill_after_steps: int = 2):
    """A real simulated walk (pty sensor, RehaStim2 emulator) whose database stops growing
    after ``fill_after_steps`` steps were committed."""
    from fescontrol.ui.patient_ui import PatientSession, SimulatedDevices
    from fescontrol.sim.run import load_any
    rec = load_any("physionet:GaCo01", "left")
    sim = SimulatedDevices(rec, name="physionet:GaCo01", side="left", activity="walk", seconds=16, speed=4)
    session = PatientSession(default_profile, db_path=tmp_path / "s.db", sim=sim, first="walk",
                          exit_when_done=True, implementation="python", log_frames=True)
    frozen = []
    seen = []

    def on_commit(stats):                 # in the writer thread, between two transactions
        if not frozen and stats.steps >= fill_after_steps:
            _freeze_size(session.writer.log)
            frozen.append(stats.steps)

    session.on_commit = on_commit
    session.on_log_failure = lambda text: seen.append((text, session.modes.steps))
    session.start()
    return session, frozen, seen


@pytest.mark.timeout(90)
def test_a_disk_that_fills_mid_walk_shows_at_once_rings_and_the_walk_goes_on(tmp_path, default_profile):
    from fescontrol.ui.patient_ui import render
    session, frozen, seen = _run_sim_walk_until_failure(tmp_path, default_profile)
    try:
        _wait(lambda: seen or not session.running, 60)
        assert seen, "the database never filled"
        _wait(lambda: session.status().log_failed, 2)        # on the screen within a few status periods
        status = session.status()
        assert status.log_alert_seq == 1                     # the screen rings once for it
        lines = render(status, width=80)
        alarm = " ".join(" ".join(t for t, style in lines if style == "fault").split())
        assert "LOGGING STOPPED: the disk is full (since" in alarm and "Stimulation goes on as before" in alarm
        assert not status.fault_active and status.mode == "walk"
        steps_at_failure = seen[0][1]
        _wait(lambda: session.modes.steps >= steps_at_failure + 2, 30)   # still stimulated step by step
        session.wait(60)
    finally:
        session.close()
    assert session.error is None
    assert "after that" in session.log_final and "steps and" in session.log_final
    with SessionLog(tmp_path / "s.db", create=False) as slog:
        assert slog.integrity() == "ok" and len(slog.bursts(1, "step")) >= frozen[0]


# --- real file systems: a small tmpfs in a private mount namespace (Linux, where allowed) ----

def _namespace_tool() -> list[str] | None:
    import shutil
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return None
    for cmd in (["unshare", "-rm"], ["unshare", "-m"]):
        probe = subprocess.run([*cmd, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                                "mount -t tmpfs -o size=64k tmpfs \"$TMPDIR\""],
                               capture_output=True, env={**os.environ, "TMPDIR": "/tmp"})
        if probe.returncode == 0:
            return cmd
    return None


NAMESPACE = _namespace_tool()
needs_tmpfs = pytest.mark.skipif(NAMESPACE is None, reason="no private mount namespace (unshare) here")


def _in_tmpfs(tmp_path: Path, script: str, size: str = "256k") -> subprocess.CompletedProcess:
    """Run ``script`` (sh) with a fresh tmpfs of ``size`` mounted at $M and the worktree's
    python as $PY and fes as $FES."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    full = f'M="{mnt}"; PY="{sys.executable}"; FES="{sys.executable} -m fescontrol.cli"\n' \
           f'mount -t tmpfs -o size={size} tmpfs "$M" || exit 97\n{script}'
    return subprocess.run([*NAMESPACE, "sh", "-c", full], cwd=REPO, capture_output=True, text=True, timeout=120)


@needs_tmpfs
@pytest.mark.timeout(120)
def test_a_new_database_on_a_full_disk_says_so_and_leaves_nothing_behind(tmp_path):
    res = _in_tmpfs(tmp_path, """
        dd if=/dev/zero of="$M/fill" bs=4k 2>/dev/null
        $FES walk --sim physionet:GaCo01 --no-ui --duration 2 --db "$M/logs/sessions.db"; echo "rc=$?"
        ls -A "$M"
    """, size="64k")
    out = res.stdout + res.stderr
    assert "rc=2" in out and "Traceback" not in out, out
    assert "cannot create a session database: the disk is full; nothing was left behind" in out
    assert "damaged" not in out
    assert res.stdout.split("rc=2", 1)[1].split() == ["fill"]     # no db, side file or folder left


@needs_tmpfs
@pytest.mark.timeout(120)
def test_a_healthy_database_on_a_read_only_file_system_is_called_read_only_and_still_readable(tmp_path):
    res = _in_tmpfs(tmp_path, """
        $PY -c "
from fescontrol.session.log import SessionLog
from fescontrol.core.profile import bundled_profile_path, load_profile
with SessionLog('$M/s.db') as s:
    s.begin_session(load_profile(bundled_profile_path('default')), kernel='python')"
        mount -o remount,ro "$M" || exit 98
        $FES walk --sim physionet:GaCo01 --no-ui --duration 2 --db "$M/s.db"; echo "walk rc=$?"
        $FES log list --db "$M/s.db"; echo "list rc=$?"
    """)
    out = res.stdout + res.stderr
    assert "Traceback" not in out and "damaged" not in out, out
    assert "cannot write to the session database: it is on a read-only file system; it was left unchanged" in out
    assert "walk rc=2" in out and "list rc=0" in out
    assert re.search(r"^\s+1\s+\d{4}-\d\d-\d\d", res.stdout, re.M)


@needs_tmpfs
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fes_walk_on_a_disk_that_fills_rings_at_once_no_traceback_and_keeps_walking(tmp_path):
    out_file = tmp_path / "walk.out"
    res = _in_tmpfs(tmp_path, f"""
        $FES walk --sim physionet:GaCo01 --no-ui --speed 3 --duration 20 --db "$M/s.db" > "{out_file}" 2>&1 &
        P=$!
        while ! grep -q "step 3 done" "{out_file}"; do sleep 0.05; done
        dd if=/dev/zero of="$M/fill" bs=64k 2>/dev/null
        wait $P; echo "rc=$?"
        rm "$M/fill"
        $FES log list --db "$M/s.db"
    """, size="4m")
    out = out_file.read_text()
    assert "rc=1" in res.stdout and "Traceback" not in out, out
    lines = out.splitlines()
    (alert,) = [i for i, line in enumerate(lines) if "LOGGING STOPPED" in line]
    assert lines[alert].startswith("\aLOGGING STOPPED: the disk is full (since ")
    assert "Stimulation goes on as before" in lines[alert]
    after = [line for line in lines[alert:] if re.search(r"step \d+ done", line)]
    assert len(after) >= 5                                  # walking went on, stimulated
    assert lines[-1].startswith("WARNING: the session log could not be completed: logging stopped at ")
    assert "the disk is full; after that" in lines[-1]
    listed = res.stdout.split("rc=1", 1)[1].splitlines()[2]
    assert "interrupted (no clean end)" in listed           # what was committed is there
    assert int(listed.split()[-6]) >= 3


def test_log_list_shows_the_real_length_of_an_interrupted_session(tmp_path, default_profile):
    path = tmp_path / "i.db"
    t0 = time.time() - 3600
    with SessionLog(path) as slog:
        sid = slog.begin_session(default_profile, kernel="python", wall=t0)
        slog.add_event(sid, "mode", "walk", wall=t0 + 1, t_us=1_000_000, frame=100)
        for n in range(1, 40):
            slog.add_burst(sid, _step(n, t0 + 1 + n * 1.1))
        slog.commit()                                      # ... and then the process died
    res = CliRunner().invoke(main, ["log", "list", "--db", str(path)])
    assert res.exit_code == 0
    row = res.output.splitlines()[1]
    assert "0:00:44" in row and "interrupted (no clean end)" in row and " 39 " in row


def test_csv_export_has_no_float_noise(tmp_path, default_profile):
    path = tmp_path / "n.db"
    with SessionLog(path) as slog:
        sid = slog.begin_session(default_profile, kernel="python")
        level = 0.1 + 0.2 + 29.7                 # 30.000000000000004: what arithmetic on mA gives
        slog.add_event(sid, "intensity", "up", wall=time.time(), t_us=3_570_001, frame=357, value=29.999999999999996)
        slog.add_burst(sid, _step(3, time.time()).__class__("step", 1, 3_570_000, 4_380_000, level, ("heel_off",),
                                                            time.time(), 3_570_000, 4_170_000))
        slog.commit()
    res = CliRunner().invoke(main, ["log", "export", "1", "--csv", "--db", str(path)])
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(res.output)))
    event = next(r for r in rows if r["kind"] == "intensity")
    burst = next(r for r in rows if r["record"] == "burst")
    assert event["value"] == "30.0" and event["t_s"] == "3.570001"
    assert burst["peak_ma"] == "30.0" and burst["onset_s"] == "3.57" and burst["duration_ms"] == "810.0"
    assert burst["heel_strike_s"] == "4.17"
    assert not re.search(r"\d\.\d{7,}", res.output)
