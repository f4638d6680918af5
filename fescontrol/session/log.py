"""The session log: one SQLite database holding every patient session.

Over 400 lines: one SQLite database's schema, migrations, queries and its writer thread; the
writer (LogWriter) is the part that can move to its own module.

What a session records (see docs/patient.md for the schema in full):
  * the profile it ran with: name, SHA-256 hash of its canonical JSON, and the JSON itself;
  * every patient command, stamped with the sensor frame count and sensor time at which it
    took effect (this is what makes a session replayable);
  * every mode change (walk, paused, training, test, standby, fault) and its cause;
  * every intensity change, and the level to restore next time (``intensity_memory``);
  * every stimulation burst: walking steps (heel-off, heel strike, the events of the step,
    onset, duration, peak mA, whether the max-stimulation cut-off ended it), training
    contractions and test bursts;
  * every fault with its reason and detail, and who cleared it;
  * optionally (``--log-frames``) the raw sensor bytes and the per-sample output current,
    as blobs in batches.

Durability: ``PRAGMA journal_mode=WAL`` and ``synchronous=FULL``; a commit returns only
when it is on disk, so nothing committed is lost when the process is killed (tested with
SIGKILL). The schema is versioned: ``schema_version`` has one row per applied migration and
:data:`MIGRATIONS` brings an older file up to date in one transaction per step. A file that
is not ours (random bytes, another program's SQLite database, a newer schema) is refused
with a message and never written to.

Threads: a :class:`SessionLog` is used by one thread at a time. During a live session the
:class:`LogWriter` thread owns it; the control loop only puts records on its queue.
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from fescontrol.core.profile_diff import patient_key, profile_hash, profile_json
from fescontrol.session.records import (BurstRecord, CommandRecord, FaultCleared, FaultEntry, IntensityChange,
                                       ModeChange, Note, RawBytes, SampleBatch)

log = logging.getLogger(__name__)

APPLICATION_ID = 0x46455343  # "FESC": PRAGMA application_id of every session database
SCHEMA_VERSION = 5
DB_ENV = "FES_DB"
SQLITE_MAGIC = b"SQLite format 3\x00"


class SessionLogError(Exception):
    """The session database cannot be used; the message says why and what to do."""


def default_db_path() -> Path:
    """``$FES_DB`` when set, else ``~/.local/share/fescontrol/sessions.db``."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "share" / "fescontrol" / "sessions.db"


DISK_FULL = "the disk is full"
READ_ONLY_FS = "it is on a read-only file system"
_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_IOERR = 13, 8, 10


def sqlite_problem(err: BaseException, path: Path | None = None) -> str:
    """A short phrase for why a database write failed: :data:`DISK_FULL`, read-only, an
    input/output error, or the error's own text. With ``path``, an input/output error on a
    file system with no space left is called what it is: a full disk."""
    code = getattr(err, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(err)
    if primary == _SQLITE_FULL or "disk is full" in text or getattr(err, "errno", None) == errno.ENOSPC:
        return DISK_FULL
    if (primary == _SQLITE_IOERR or "disk I/O error" in text) and path is not None and _no_space(path):
        return DISK_FULL
    if primary == _SQLITE_READONLY or "readonly database" in text:
        return "the database file became read-only"
    if primary == _SQLITE_IOERR or "disk I/O error" in text:
        return f"a disk input/output error ({text})"
    return f"{type(err).__name__}: {text}"


def _no_space(path: Path) -> bool:
    """True when the file system holding ``path`` has less than one database page free."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        st = os.statvfs(existing)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 8192


def read_only_reason(path: Path) -> str | None:
    """Why ``path`` (or, when it does not exist, its nearest existing folder) cannot be
    written: :data:`READ_ONLY_FS`, no permission, or None when it can."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return READ_ONLY_FS
    except OSError:
        return None
    folder = existing if existing.is_dir() else existing.parent
    if (existing.is_file() and not os.access(existing, os.W_OK)) or not os.access(folder, os.W_OK):
        return "there is no permission to write it"
    return None


# ----- schema and migrations ------------------------------------------------------------------

def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Execute statements one by one (``executescript`` would commit the open transaction)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {statement!r}")


def _migrate_to_1(db: sqlite3.Connection) -> None:
    _run_script(db, """
        CREATE TABLE sessions (
            id              INTEGER PRIMARY KEY,
            started_wall    REAL NOT NULL,          -- time.time() at start (UTC seconds)
            ended_wall      REAL,                   -- NULL: still running, or interrupted
            end_reason      TEXT,
            profile_name    TEXT NOT NULL,
            profile_hash    TEXT NOT NULL,          -- sha256 of the canonical profile JSON
            profile_json    TEXT NOT NULL,
            patient_key     TEXT NOT NULL,
            kernel          TEXT NOT NULL,          -- cython | python
            software        TEXT NOT NULL,          -- fescontrol version
            sensor          TEXT,
            stimulator      TEXT,
            sim_recording   TEXT,
            frames_logged   INTEGER NOT NULL DEFAULT 0,
            frames_processed INTEGER                -- sensor frames the kernel processed (at a clean end)
        );
        CREATE TABLE events (
            id          INTEGER PRIMARY KEY,
            session_id  INTEGER NOT NULL REFERENCES sessions(id),
            kind        TEXT NOT NULL CHECK (kind IN
                            ('command', 'mode', 'intensity', 'fault', 'fault_cleared', 'note')),
            wall        REAL NOT NULL,
            t_us        INTEGER,                    -- sensor clock
            frame       INTEGER,                    -- sensor frames processed when it took effect
            name        TEXT NOT NULL,
            value       REAL,
            detail      TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX events_session ON events(session_id, id);
        CREATE TABLE bursts (
            id              INTEGER PRIMARY KEY,
            session_id      INTEGER NOT NULL REFERENCES sessions(id),
            kind            TEXT NOT NULL CHECK (kind IN ('step', 'training', 'test')),
            number          INTEGER NOT NULL,       -- 1, 2, ... per kind within the session
            wall            REAL NOT NULL,
            onset_us        INTEGER NOT NULL,       -- sample that started the ramp-up
            end_us          INTEGER NOT NULL,       -- first zero-output sample (or the interruption)
            duration_ms     REAL NOT NULL,
            peak_ma         REAL NOT NULL,
            heel_off_us     INTEGER,
            heel_strike_us  INTEGER,
            events          TEXT NOT NULL,          -- comma-separated kernel events of the burst
            cut_off         INTEGER NOT NULL DEFAULT 0,  -- ended by the max-stimulation cut-off
            complete        INTEGER NOT NULL DEFAULT 1   -- 0: interrupted (fault, next heel-off, end)
        );
        CREATE INDEX bursts_session ON bursts(session_id, kind, number);
        CREATE TABLE frames (
            session_id  INTEGER NOT NULL REFERENCES sessions(id),
            batch       INTEGER NOT NULL,           -- 0, 1, ... in arrival order
            data        BLOB NOT NULL,              -- raw sensor bytes as the kernel read them
            PRIMARY KEY (session_id, batch)
        );
    """)


def _migrate_to_2(db: sqlite3.Connection) -> None:
    _run_script(db, """
        CREATE TABLE samples (
            session_id  INTEGER NOT NULL REFERENCES sessions(id),
            first       INTEGER NOT NULL,           -- index of the first sample in the batch
            n           INTEGER NOT NULL,
            t_us        BLOB NOT NULL,              -- int64 little-endian, sensor clock
            current_ma  BLOB NOT NULL,              -- float64 little-endian, per-sample output
            PRIMARY KEY (session_id, first)
        );
        CREATE TABLE intensity_memory (
            patient_key   TEXT PRIMARY KEY,
            amplitude_ma  REAL NOT NULL,
            profile_hash  TEXT NOT NULL,
            wall          REAL NOT NULL
        );
    """)


def _migrate_to_3(db: sqlite3.Connection) -> None:
    _run_script(db, """
        CREATE TABLE adaptive_strides (
            session_id      INTEGER NOT NULL REFERENCES sessions(id),
            stride          INTEGER NOT NULL,       -- 1, 2, ... in the session
            frame           INTEGER NOT NULL,       -- sensor frames processed when decided
            t_us            INTEGER NOT NULL,       -- sensor clock
            amplitude_ma    REAL NOT NULL,          -- plateau this stride was stimulated with
            next_ma         REAL NOT NULL,          -- plateau of the next stride
            error_deg       REAL,                   -- target - measured pitch (NULL: not measured)
            mid_swing_deg   REAL,
            heel_strike_deg REAL,
            swing_ms        REAL,
            status          TEXT NOT NULL CHECK (status IN ('learn', 'hold', 'frozen')),
            reason          TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (session_id, stride)
        );
    """)


def _migrate_to_4(db: sqlite3.Connection) -> None:
    _run_script(db, """
        ALTER TABLE adaptive_strides ADD COLUMN late_swing_deg REAL;   -- third target point (NULL: none)
    """)


def _migrate_to_5(db: sqlite3.Connection) -> None:
    _run_script(db, """
        ALTER TABLE adaptive_strides ADD COLUMN onset_delay_ms REAL NOT NULL DEFAULT 0;  -- next stride's delay
    """)


#: (version reached, migration): applied in order, each in its own transaction
MIGRATIONS: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [
    (1, _migrate_to_1),
    (2, _migrate_to_2),
    (3, _migrate_to_3),
    (4, _migrate_to_4),
    (5, _migrate_to_5),
]
assert MIGRATIONS[-1][0] == SCHEMA_VERSION

OUR_TABLES = {"schema_version", "sessions", "events", "bursts", "frames", "samples", "intensity_memory",
              "adaptive_strides"}


# ----- the database -----------------------------------------------------------------------------

class SessionLog:
    """One open session database. ``create`` makes a new file (and its folder) when missing;
    ``migrate`` brings an older schema up to date (otherwise an older file is refused)."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True, migrate: bool = True,
                 schema_version: int = SCHEMA_VERSION, readonly: bool = False):
        """Open (or with ``create`` make) the database at ``path``.

        ``readonly`` opens it for reading only (``fes log …``): nothing is written, and a
        database on a read-only file system can still be read. Raises :class:`SessionLogError`
        with the reason — not ours, damaged, newer, read-only, disk full — and then leaves an
        existing file unchanged and a new one not created (no file or folder left behind).
        """
        self.path = Path(path)
        self._target_version = schema_version
        self.readonly = readonly
        exists = self.path.exists()
        if not exists and (not create or readonly):
            raise SessionLogError(f"{self.path}: no session database here (nothing logged yet; "
                                  f"set --db or ${DB_ENV} to use another file)")
        made_folders: list[Path] = []
        if exists:
            self._check_header()
        else:
            made_folders = self._make_folder()
        # SQLite may create the -wal/-shm side files just by opening a WAL database: a file
        # that is refused gets them removed again, so the folder is left as it was found
        side_files = [Path(f"{self.path}{suffix}") for suffix in ("-wal", "-shm", "-journal")]
        side_existed = [f.exists() for f in side_files]
        try:
            self.db = self._connect()
        except sqlite3.Error as err:
            self._forget_new(exists, side_files, side_existed, made_folders)
            raise SessionLogError(self._open_problem(err, exists)) from None
        try:
            self._check_identity_and_migrate(migrate and not readonly)
            if readonly:
                self.journal_mode = str(self.db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            else:
                self._pragmas()
        except BaseException as err:
            self.db.close()
            self._forget_new(exists, side_files, side_existed, made_folders)
            if isinstance(err, sqlite3.DatabaseError):
                raise SessionLogError(self._open_problem(err, exists)) from None
            raise
        self._in_tx = False

    def _make_folder(self) -> list[Path]:
        """Create the missing folders above a new database; returns them, deepest last."""
        missing = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()][::-1]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            for folder in reversed(missing):
                if folder.exists():
                    try:
                        folder.rmdir()
                    except OSError:
                        pass
            raise SessionLogError(f"{self.path}: cannot create its folder: {err.strerror or err}; "
                                  f"choose another file with --db or ${DB_ENV}") from None
        return missing

    def _connect(self) -> sqlite3.Connection:
        if not self.readonly:
            return sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None, check_same_thread=False)
        from urllib.parse import quote
        # on a read-only file system SQLite cannot make the WAL side files a reader needs;
        # nothing can change the file there either, so it may be read as immutable
        immutable = "&immutable=1" if read_only_reason(self.path) == READ_ONLY_FS else ""
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro{immutable}"
        return sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None, check_same_thread=False)

    def _forget_new(self, existed: bool, side_files: list[Path], side_existed: list[bool],
                    made_folders: list[Path]) -> None:
        """After a refused open: remove what opening created (a new file whole, its folders)."""
        for f, had in zip(side_files, side_existed):
            if not had and f.exists() and (not existed or f.stat().st_size == 0):
                f.unlink(missing_ok=True)
        if not existed:
            self.path.unlink(missing_ok=True)
            for folder in reversed(made_folders):
                try:
                    folder.rmdir()
                except OSError:
                    break

    def _open_problem(self, err: sqlite3.Error, existed: bool) -> str:
        """The one-line reason an open failed, worded by its cause."""
        cause = sqlite_problem(err, self.path)
        ro = read_only_reason(self.path)
        if not existed:
            if cause == DISK_FULL or ro:
                why = cause if cause == DISK_FULL else ro
                return (f"{self.path}: cannot create a session database: {why}; nothing was left behind. "
                        f"Free some space or choose another file with --db or ${DB_ENV}")
            return (f"{self.path}: cannot create a session database ({err}); nothing was left behind. "
                    f"Choose another file with --db or ${DB_ENV}")
        if cause == DISK_FULL:
            return (f"{self.path}: cannot write to the session database: {cause}; it was left unchanged. "
                    f"Free some space, then try again")
        if ro and not self.readonly:
            return (f"{self.path}: cannot write to the session database: {ro}; it was left unchanged. "
                    f"Choose a writable file with --db or ${DB_ENV} (`fes log` can still read this one)")
        return f"{self.path}: damaged or not a session database ({err}); it was left unchanged"

    # ----- opening ----------------------------------------------------------------------------
    def _check_header(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(100)
        except OSError as err:
            raise SessionLogError(f"{self.path}: cannot read: {err.strerror or err}") from None
        if not head:
            return  # an empty file: nothing in it to lose, SQLite makes it a database
        if not head.startswith(SQLITE_MAGIC):
            raise SessionLogError(
                f"{self.path}: not a SQLite database (it starts with {head[:16]!r}); refusing to use "
                f"or overwrite it. Move it away, or choose another file with --db or ${DB_ENV}")

    def _check_identity_and_migrate(self, migrate: bool) -> None:
        db = self.db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app_id != APPLICATION_ID:
            if app_id != 0 or tables:
                raise SessionLogError(
                    f"{self.path}: a SQLite database, but not a fescontrol session log "
                    f"(application_id {app_id:#x}, tables: {', '.join(sorted(tables)) or 'none'}); "
                    f"refusing to change it. Choose another file with --db or ${DB_ENV}")
            version = 0
        else:
            if "schema_version" not in tables:
                raise SessionLogError(f"{self.path}: marked as a session log but has no schema_version "
                                      f"table; refusing to change it")
            version = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SessionLogError(
                f"{self.path}: session log schema version {version} is newer than this fescontrol "
                f"understands (up to {SCHEMA_VERSION}); upgrade fescontrol to read it. Left unchanged")
        self.schema_version_found = version
        if version < self._target_version:
            if version > 0 and not migrate:
                raise SessionLogError(f"{self.path}: schema version {version} needs migrating to "
                                      f"{self._target_version}; open it for writing to migrate")
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        db = self.db
        if version == 0:
            # a new file: WAL must be set outside a transaction
            db.execute("PRAGMA journal_mode=WAL")
        for target, step in MIGRATIONS:
            if target <= version or target > self._target_version:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                if target == 1:
                    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, "
                               "applied_wall REAL NOT NULL, software TEXT NOT NULL)")
                step(db)
                db.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (target, time.time(), _software()))
                db.execute("COMMIT")
            except BaseException:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass    # SQLite already rolled back (e.g. on a full disk): keep the first error
                raise
            log.info("%s: session log schema migrated to version %d", self.path, target)

    def _pragmas(self) -> None:
        mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("%s: journal_mode is %s, not WAL (file system without shared memory?)", self.path, mode)
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.journal_mode = str(mode).lower()

    @property
    def schema_version(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]

    def close(self) -> None:
        if self._in_tx:
            self.commit()
        self.db.close()

    def __enter__(self) -> "SessionLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- writing ------------------------------------------------------------------------------
    def _tx(self) -> None:
        if not self._in_tx:
            self.db.execute("BEGIN")
            self._in_tx = True

    def commit(self) -> None:
        """Make everything written so far durable (returns once it is on disk)."""
        if self._in_tx:
            self.db.execute("COMMIT")
            self._in_tx = False

    def begin_session(self, profile, *, kernel: str, sensor: str | None = None,
                      stimulator: str | None = None, sim_recording: str | None = None,
                      frames_logged: bool = False, wall: float | None = None) -> int:
        """A new session row (committed at once); returns its id.

        Raises :class:`SessionLogError` (nothing written) when it cannot be stored, e.g. on a
        full disk: a session is not started unlogged."""
        try:
            self._tx()
            cur = self.db.execute(
                "INSERT INTO sessions (started_wall, profile_name, profile_hash, profile_json, patient_key, "
                "kernel, software, sensor, stimulator, sim_recording, frames_logged) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (time.time() if wall is None else wall, profile.name, profile_hash(profile), profile_json(profile),
                 patient_key(profile), kernel, _software(), sensor, stimulator, sim_recording, int(frames_logged)))
            self.commit()
        except sqlite3.Error as err:
            self.abandon()
            raise SessionLogError(f"{self.path}: cannot start a session: {sqlite_problem(err, self.path)}; nothing was "
                                  f"stimulated. Free some space or choose another file with --db or "
                                  f"${DB_ENV}") from None
        return int(cur.lastrowid)

    def abandon(self) -> None:
        """Roll back what is not committed (after a failed write; errors are ignored)."""
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self._in_tx = False

    def end_session(self, session_id: int, reason: str, frames_processed: int | None = None) -> None:
        self._tx()
        self.db.execute("UPDATE sessions SET ended_wall = ?, end_reason = ?, frames_processed = ? WHERE id = ?",
                        (time.time(), reason, frames_processed, session_id))
        self.commit()

    def add_event(self, session_id: int, kind: str, name: str, *, wall: float, t_us: int | None = None,
                  frame: int | None = None, value: float | None = None, detail: str = "") -> None:
        self._tx()
        self.db.execute("INSERT INTO events (session_id, kind, wall, t_us, frame, name, value, detail) "
                        "VALUES (?,?,?,?,?,?,?,?)",
                        (session_id, kind, wall, t_us, frame, name, value, detail or ""))

    def add_burst(self, session_id: int, b) -> None:
        """``b`` is a :class:`fescontrol.session.records.BurstRecord` (or anything with its fields)."""
        self._tx()
        self.db.execute(
            "INSERT INTO bursts (session_id, kind, number, wall, onset_us, end_us, duration_ms, peak_ma, "
            "heel_off_us, heel_strike_us, events, cut_off, complete) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (session_id, b.kind, b.number, b.wall_s, b.onset_us, b.end_us, b.duration_ms, b.peak_ma,
             b.heel_off_us, b.heel_strike_us, ",".join(b.events), int(b.cut_off), int(b.complete)))

    def add_frames(self, session_id: int, batch: int, data: bytes) -> None:
        self._tx()
        self.db.execute("INSERT INTO frames (session_id, batch, data) VALUES (?,?,?)",
                        (session_id, batch, sqlite3.Binary(data)))

    def add_samples(self, session_id: int, first: int, t_us: np.ndarray, current_ma: np.ndarray) -> None:
        self._tx()
        t = np.ascontiguousarray(t_us, dtype="<i8")
        c = np.ascontiguousarray(current_ma, dtype="<f8")
        self.db.execute("INSERT INTO samples (session_id, first, n, t_us, current_ma) VALUES (?,?,?,?,?)",
                        (session_id, first, len(t), sqlite3.Binary(t.tobytes()), sqlite3.Binary(c.tobytes())))

    def add_adaptive_stride(self, session_id: int, r) -> None:
        """One :class:`fescontrol.machine.adaptive.AdaptiveStride` (NaN angles stored as NULL)."""
        def num(x: float):
            return None if x != x else float(x)
        self.db.execute("INSERT INTO adaptive_strides (session_id, stride, frame, t_us, amplitude_ma, next_ma, "
                        "error_deg, mid_swing_deg, heel_strike_deg, swing_ms, status, reason, late_swing_deg, "
                        "onset_delay_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (session_id, r.stride, r.frame, r.t_us, r.amplitude_ma, r.next_ma, num(r.error_deg),
                         num(r.mid_swing_deg), num(r.heel_strike_deg), num(r.swing_ms), r.status, r.reason,
                         num(r.late_swing_deg), float(r.onset_delay_ms)))

    def adaptive_strides(self, session_id: int) -> list[dict]:
        """The learned state per stride of a session, in stride order."""
        return self._rows("SELECT * FROM adaptive_strides WHERE session_id = ? ORDER BY stride", (session_id,))

    def remember_intensity(self, key: str, amplitude_ma: float, hash_: str, wall: float) -> None:
        self._tx()
        self.db.execute("INSERT INTO intensity_memory (patient_key, amplitude_ma, profile_hash, wall) "
                        "VALUES (?,?,?,?) ON CONFLICT(patient_key) DO UPDATE SET "
                        "amplitude_ma = excluded.amplitude_ma, profile_hash = excluded.profile_hash, "
                        "wall = excluded.wall", (key, amplitude_ma, hash_, wall))

    # ----- reading ------------------------------------------------------------------------------
    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[dict]:
        cur = self.db.execute(sql, tuple(args))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def remembered_intensity(self, key: str) -> float | None:
        row = self.db.execute("SELECT amplitude_ma FROM intensity_memory WHERE patient_key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def sessions(self) -> list[dict]:
        """Every session with its counts, oldest first."""
        return self._rows("""
            SELECT s.*,
              (SELECT COUNT(*) FROM bursts b WHERE b.session_id = s.id AND b.kind = 'step') AS steps,
              (SELECT COUNT(*) FROM events e WHERE e.session_id = s.id AND e.kind = 'fault') AS faults,
              (SELECT GROUP_CONCAT(DISTINCT e.name) FROM events e WHERE e.session_id = s.id
                 AND e.kind = 'mode' AND e.name IN ('walk', 'training', 'test')) AS modes,
              (SELECT MAX(wall) FROM events e WHERE e.session_id = s.id) AS last_event_wall,
              (SELECT MAX(wall) FROM bursts b WHERE b.session_id = s.id) AS last_burst_wall
            FROM sessions s ORDER BY s.id""")

    def session(self, session_id: int) -> dict:
        rows = self._rows("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            ids = [r[0] for r in self.db.execute("SELECT id FROM sessions ORDER BY id")]
            known = f"sessions here: {ids[0]}..{ids[-1]}" if ids else "this database has no sessions yet"
            raise SessionLogError(f"{self.path}: no session {session_id} ({known})")
        return rows[0]

    def last_session_id(self) -> int | None:
        row = self.db.execute("SELECT MAX(id) FROM sessions").fetchone()
        return row[0]

    def events(self, session_id: int, kinds: Iterable[str] | None = None) -> list[dict]:
        if kinds is None:
            return self._rows("SELECT * FROM events WHERE session_id = ? ORDER BY id", (session_id,))
        kinds = list(kinds)
        marks = ",".join("?" * len(kinds))
        return self._rows(f"SELECT * FROM events WHERE session_id = ? AND kind IN ({marks}) ORDER BY id",
                          (session_id, *kinds))

    def bursts(self, session_id: int, kind: str | None = None) -> list[dict]:
        if kind is None:
            return self._rows("SELECT * FROM bursts WHERE session_id = ? ORDER BY id", (session_id,))
        return self._rows("SELECT * FROM bursts WHERE session_id = ? AND kind = ? ORDER BY id", (session_id, kind))

    def raw_frames(self, session_id: int) -> bytes:
        """The raw sensor bytes of a session, in order; checks that no batch is missing."""
        rows = self.db.execute("SELECT batch, data FROM frames WHERE session_id = ? ORDER BY batch",
                               (session_id,)).fetchall()
        for i, (batch, _) in enumerate(rows):
            if batch != i:
                raise SessionLogError(f"session {session_id}: raw sensor batch {i} is missing (found {batch})")
        return b"".join(bytes(d) for _, d in rows)

    def samples(self, session_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample (t_us int64, current_ma float64) as logged; checks the batches are contiguous."""
        rows = self.db.execute("SELECT first, n, t_us, current_ma FROM samples WHERE session_id = ? ORDER BY first",
                               (session_id,)).fetchall()
        expected = 0
        ts, cs = [], []
        for first, n, t, c in rows:
            if first != expected:
                raise SessionLogError(f"session {session_id}: per-sample batch at {expected} is missing")
            ts.append(np.frombuffer(t, dtype="<i8"))
            cs.append(np.frombuffer(c, dtype="<f8"))
            expected = first + n
        if not ts:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        return np.concatenate(ts).astype(np.int64), np.concatenate(cs).astype(np.float64)

    def steps_since(self, wall: float) -> int:
        return self.db.execute("SELECT COUNT(*) FROM bursts WHERE kind = 'step' AND wall >= ?", (wall,)).fetchone()[0]

    def integrity(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    # ----- daily usage --------------------------------------------------------------------------
    def summary(self) -> list[dict]:
        """Daily usage (local dates): steps, walking minutes, stimulation minutes, training sessions."""
        days: dict[str, dict] = {}

        def day(wall: float) -> dict:
            key = datetime.fromtimestamp(wall).date().isoformat()
            return days.setdefault(key, {"date": key, "sessions": 0, "steps": 0, "walking_min": 0.0,
                                         "stimulation_min": 0.0, "training_sessions": 0, "faults": 0})

        for s in self.sessions():
            day(s["started_wall"])["sessions"] += 1
            # walking time on the sensor clock: from each 'walk' mode record to the next mode record,
            # or to the last thing the session logged
            end_us = self.db.execute(
                "SELECT MAX(t) FROM (SELECT MAX(t_us) AS t FROM events WHERE session_id = ? "
                "UNION ALL SELECT MAX(end_us) FROM bursts WHERE session_id = ?)", (s["id"], s["id"])).fetchone()[0]
            modes = self.events(s["id"], ["mode"])
            for i, m in enumerate(modes):
                if m["name"] != "walk" or m["t_us"] is None:
                    continue
                stop_us = modes[i + 1]["t_us"] if i + 1 < len(modes) else end_us
                day(m["wall"])["walking_min"] += max(0, (stop_us or m["t_us"]) - m["t_us"]) / 60e6
        for row in self.db.execute("SELECT kind, wall, duration_ms FROM bursts"):
            d = day(row[1])
            d["stimulation_min"] += row[2] / 60000.0
            if row[0] == "step":
                d["steps"] += 1
        for row in self.db.execute("SELECT kind, name, wall FROM events WHERE (kind = 'command' AND name = 'train') "
                                   "OR kind = 'fault'"):
            d = day(row[2])
            if row[0] == "fault":
                d["faults"] += 1
            else:
                d["training_sessions"] += 1
        return [days[k] for k in sorted(days)]


def _software() -> str:
    from fescontrol import __version__
    return f"fescontrol {__version__}"


# ----- the writer thread ------------------------------------------------------------------------

@dataclass
class CommitStats:
    """What is durable so far (reported after every commit)."""
    commits: int = 0
    steps: int = 0
    bursts: int = 0
    events: int = 0
    frame_batches: int = 0
    frame_bytes: int = 0
    samples: int = 0
    last_commit_monotonic: float = field(default=0.0)


_STOP = object()


class LogWriter:
    """Owns a :class:`SessionLog` in its own thread; records arrive through :meth:`put`.

    Commits every batch it drains (so normally within a fraction of a second), each commit
    durable before ``on_commit(stats)`` is called. The control loop never waits for the disk.

    When a write fails (a full disk, a read-only or failing file system), writing stops:
    ``failure`` holds a phrase saying why, ``on_failure(text)`` is called at once (in the
    writer thread) with why, since when and where, and every record after that (and those
    of the failed transaction) is counted in ``dropped`` / ``dropped_steps`` and discarded,
    so memory stays bounded. :meth:`close` then makes one last attempt to
    mark the session ended and raises :class:`SessionLogError` saying what was not logged.
    """

    def __init__(self, session_log: SessionLog, session_id: int, profile, *,
                 on_commit: Callable[[CommitStats], None] | None = None,
                 on_failure: Callable[[str], None] | None = None):
        self.log = session_log
        self.session_id = session_id
        self._key = patient_key(profile)
        self._hash = profile_hash(profile)
        self.on_commit = on_commit
        self.on_failure = on_failure
        self.stats = CommitStats()
        self.error: BaseException | None = None
        self.failure = ""
        self.failed_wall: float | None = None
        self.dropped = 0
        self.dropped_steps = 0
        self._q: queue.Queue = queue.Queue()
        self._end: tuple[str, int | None] | None = None
        self._thread = threading.Thread(target=self._run, name="session-log", daemon=True)
        self._thread.start()

    def put(self, record: Any) -> None:
        self._q.put(record)

    def close(self, reason: str, frames_processed: int | None = None, timeout_s: float = 10.0) -> None:
        """Write what is queued, mark the session ended, commit and close the database."""
        self._end = (reason, frames_processed)
        self._q.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise SessionLogError("the session log writer did not finish in time")
        if self.error is not None:
            raise SessionLogError(self.failure_text()) from self.error

    def failure_text(self) -> str:
        """One line: when logging stopped, why, and what was not logged."""
        when = datetime.fromtimestamp(self.failed_wall or time.time()).strftime("%H:%M:%S")
        return (f"logging stopped at {when}: {self.failure}; after that {self.dropped_steps} steps and "
                f"{self.dropped} records in all were not logged ({self.log.path})")

    def _run(self) -> None:
        stop = False
        try:
            while not stop:
                items = [self._q.get()]
                while True:
                    try:
                        items.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                stop = any(it is _STOP for it in items)
                written = []            # in the open transaction: lost too if the commit fails
                for it in items:
                    if it is _STOP:
                        continue
                    if self.error is None:
                        try:
                            self._write(it)
                            written.append(it)
                            continue
                        except Exception as err:  # noqa: BLE001 - a write failed: stop writing, say so
                            self._failed(err, written)
                    self._drop(it)
                if self.error is None:
                    try:
                        if stop and self._end is not None:
                            self.log.end_session(self.session_id, *self._end)
                        self._commit()
                    except Exception as err:  # noqa: BLE001
                        self._failed(err, written)
            if self.error is not None and self._end is not None:
                self._mark_end_after_failure()
        finally:
            try:
                self.log.close()
            except Exception:  # noqa: BLE001 - closing after a failure
                pass

    def _failed(self, err: BaseException, uncommitted: list) -> None:
        """The first failed write: keep why, count what was written but not committed as lost."""
        self.error = err
        self.failure = sqlite_problem(err, self.log.path)
        self.failed_wall = time.time()
        self.log.abandon()
        for rec in uncommitted:
            self._drop(rec)
        log.error("session log: writing stopped: %s (%s)", self.failure, self.log.path)
        if self.on_failure is not None:
            try:
                when = datetime.fromtimestamp(self.failed_wall).strftime("%H:%M:%S")
                self.on_failure(f"{self.failure} (since {when}; {self.log.path})")
            except Exception:  # noqa: BLE001 - the interface's problem must not hide this one
                log.error("session log: reporting the failure failed", exc_info=False)

    def _drop(self, rec: Any) -> None:
        self.dropped += 1
        self.dropped_steps += isinstance(rec, BurstRecord) and rec.kind == "step"

    def _mark_end_after_failure(self) -> None:
        """One last try (space may have been freed): the session's end, with what is missing."""
        reason, frames = self._end
        try:
            self.log.end_session(self.session_id, f"{reason}; {self.failure_text()}", frames)
        except Exception:  # noqa: BLE001 - still failing: the session stays 'interrupted'
            self.log.abandon()

    def _commit(self) -> None:
        self.log.commit()
        self.stats.commits += 1
        self.stats.last_commit_monotonic = time.monotonic()
        if self.on_commit is not None:
            try:
                self.on_commit(CommitStats(**asdict(self.stats)))
            except Exception as err:  # noqa: BLE001 - what is committed stays committed
                log.error("session log: the commit callback failed: %s", err)

    def _write(self, rec: Any) -> None:
        from fescontrol.machine.adaptive import AdaptiveStride
        sid, L, st = self.session_id, self.log, self.stats
        if isinstance(rec, BurstRecord):
            L.add_burst(sid, rec)
            st.bursts += 1
            st.steps += rec.kind == "step"
            return
        if isinstance(rec, RawBytes):
            L.add_frames(sid, rec.batch, rec.data)
            st.frame_batches += 1
            st.frame_bytes += len(rec.data)
            return
        if isinstance(rec, SampleBatch):
            L.add_samples(sid, rec.first, rec.t_us, rec.current_ma)
            st.samples += len(rec.t_us)
            return
        if isinstance(rec, AdaptiveStride):
            L.add_adaptive_stride(sid, rec)
            return
        st.events += 1
        if isinstance(rec, CommandRecord):
            L.add_event(sid, "command", rec.name, wall=rec.wall_s, t_us=rec.t_us, frame=rec.frame,
                        value=rec.value, detail=rec.detail)
        elif isinstance(rec, ModeChange):
            L.add_event(sid, "mode", rec.mode.value, wall=rec.wall_s, t_us=rec.t_us, frame=rec.frame,
                        detail=rec.cause)
        elif isinstance(rec, IntensityChange):
            L.add_event(sid, "intensity", rec.cause, wall=rec.wall_s, t_us=rec.t_us, frame=rec.frame,
                        value=rec.level_ma, detail=f"from {rec.previous_ma:g} mA")
            L.remember_intensity(self._key, rec.level_ma, self._hash, rec.wall_s)
        elif isinstance(rec, FaultEntry):
            L.add_event(sid, "fault", rec.code.name.lower(), wall=rec.wall_s, t_us=rec.t_us, frame=rec.frame,
                        value=int(rec.code), detail=rec.text)
        elif isinstance(rec, FaultCleared):
            L.add_event(sid, "fault_cleared", rec.person, wall=rec.wall_s, t_us=rec.t_us, frame=rec.frame,
                        detail=rec.note)
        elif isinstance(rec, Note):
            L.add_event(sid, "note", rec.name, wall=rec.wall_s, t_us=rec.t_us, frame=rec.frame, detail=rec.text)
        else:
            raise TypeError(f"cannot log {rec!r}")
