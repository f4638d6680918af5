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
from fescontrol.session_log import (APPLICATION_ID, SCHEMA_VERSION, LogWriter, SessionLog, SessionLogError,
                                    profile_hash)

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
    assert [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 2]
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
    from fescontrol.modes import CommandRecord
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
    proc = subprocess.Popen(fes_cmd("walk", "--sim", "physionet:GaCo01", "--no-ui", "--speed", "2",
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
