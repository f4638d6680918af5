"""The generic CSV gait recording: any lab's walk in one documented format (docs/recordings.md).

Over 400 lines: one file format, its parser with the one-line refusals, its cache and its
writer.

Layout of ``my_walk.csv`` (a contract: the names are fixed)::

    # rate_hz: 100                 optional comment lines "# key: value" before the header;
    # side: left                   keys rate_hz (required when t_s is not uniform), side
    # source: my lab               (left|right), source, subject; other lines are free text
    # subject: S01
    t_s,heel_n,acc_x_ms2,acc_y_ms2,acc_z_ms2,gyro_x_dps,gyro_y_dps,gyro_z_dps
    0.00,512.3,0.12,-0.05,9.79,0.4,-1.2,0.3
    ...

* columns by name, in any order; ``t_s`` is required; ``heel_n`` (heel force, N) and the
  IMU columns (specific force m/s² with gravity, angular rate deg/s, in the body frame of
  docs/protocol.md: x toward the toes, y to the subject's left, z up) are optional. The IMU
  comes as the set of six columns or not at all. Unknown columns are ignored with ONE
  warning (:class:`RecordingWarning`) naming them; a known quantity with another unit
  suffix (``acc_x_g``, ``t_ms``) is refused.
* ``t_s`` strictly increases. A uniform ``t_s`` (every step within 10 % of the median step)
  gives the rate; otherwise ``rate_hz`` is required and the samples are linearly
  interpolated onto ``t0 + k / rate_hz``. A step longer than 1.5 sample periods is a gap:
  the samples interpolated inside it are marked invalid (dropped). A ``nan`` cell is a
  dropped sample too (interpolated, marked invalid).
* reference events, optional, in the sidecar ``my_walk.events.csv`` (header
  ``t_s,event[,kind]``, times on the same clock as ``t_s``), see :data:`EVENT_NAMES`.
  A recording without a sidecar is replayed but not scored: the whole recording is an
  unscored interval and ``meta["reference_events"]`` is False.

Every problem is a :class:`CsvRecordingError` (a ``ValueError``) whose message names the
file, the line (1-based) and the column. Parsing is numpy's C reader; the parsed table and
the parsed events sidecar are cached in binary form (``$FES_CACHE_DIR``, default
``~/.cache/fescontrol/recordings``, keyed by path, size and modification time;
``FES_CSV_CACHE=0`` turns it off).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..recording import QUIET_KINDS, SIDES, SOURCES, Recording

#: Column name -> (channel, axis index or None).
COLUMNS = {"t_s": ("t", None), "heel_n": ("heel", None),
           "acc_x_ms2": ("acc", 0), "acc_y_ms2": ("acc", 1), "acc_z_ms2": ("acc", 2),
           "gyro_x_dps": ("gyro", 0), "gyro_y_dps": ("gyro", 1), "gyro_z_dps": ("gyro", 2)}
IMU_COLUMNS = tuple(c for c in COLUMNS if c.startswith(("acc_", "gyro_")))
#: Quantity stem -> the one unit suffix allowed for it.
_UNITS = {"t": "s", "heel": "n", "acc_x": "ms2", "acc_y": "ms2", "acc_z": "ms2",
          "gyro_x": "dps", "gyro_y": "dps", "gyro_z": "dps"}
#: Comment keys with a meaning; any other "# key: value" line is kept as free text.
COMMENT_KEYS = ("rate_hz", "side", "source", "subject")
EVENT_NAMES = ("toe_off", "heel_strike", "heel_off", "quiet_start", "quiet_end",
               "unscored_start", "unscored_end")
EVENTS_SUFFIX = ".events.csv"
CSV_SOURCE = "csv"
UNIFORM_TOLERANCE = 0.10     # a step within 10 % of the median step is "uniform"
GAP_PERIODS = 1.5            # a step longer than this many periods is a gap (dropped samples)
CACHE_ENV = "FES_CACHE_DIR"
CACHE_SWITCH_ENV = "FES_CSV_CACHE"
_CACHE_VERSION = 1


class CsvRecordingError(ValueError):
    """A generic CSV recording (or its events sidecar) breaks the format; the message names
    the file, the line and the column."""


class RecordingWarning(UserWarning):
    """Something in a recording file was ignored (e.g. unknown columns)."""


def _fail(path, line: int | None, column: str | None, what: str) -> None:
    where = str(path) + (f", line {line}" if line else "") + (f", column {column}" if column else "")
    raise CsvRecordingError(f"{where}: {what}")


def is_csv_recording(path: str | Path) -> bool:
    """True for ``*.csv``/``*.csv.gz`` whose header (after ``#`` lines) has a ``t_s`` column.

    An events sidecar (``*.events.csv``) is not a recording."""
    name = Path(path).name
    if name.endswith((EVENTS_SUFFIX, EVENTS_SUFFIX + ".gz")) or not name.endswith((".csv", ".csv.gz")):
        return False
    try:
        with _open(path) as fh:
            for line in fh:
                if line.strip() and not line.lstrip().startswith("#"):
                    return "t_s" in [c.strip() for c in line.rstrip("\r\n").split(",")]
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return False
    return False


def events_path_for(path: str | Path) -> Path:
    """``my_walk.csv`` -> ``my_walk.events.csv`` (``.gz`` dropped from the recording's name)."""
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    stem = name[:-4] if name.endswith(".csv") else name
    return path.with_name(stem + EVENTS_SUFFIX)


def _open(path: str | Path):
    path = Path(path)
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


# ----------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class CsvTable:
    """The parsed numeric part of a CSV recording, before any interpretation."""

    comments: dict            # known and free "key: value" comments
    notes: tuple              # free-text comment lines
    columns: tuple            # header names as written
    data: np.ndarray          # (n, len(columns)) float64
    header_line: int          # 1-based line number of the header
    first_data_line: int      # 1-based line number of data row 0


def _parse_comment(text: str, comments: dict, notes: list) -> None:
    body = text.lstrip()[1:].strip()
    key, sep, value = body.partition(":")
    if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
        comments[key.strip()] = value.strip()
    elif body:
        notes.append(body)


def read_table(path: str | Path) -> CsvTable:
    """Parse a CSV recording's comments, header and numeric body (no caching).

    Raises :class:`CsvRecordingError` naming line and column for a missing header, a row
    with the wrong number of cells or a non-numeric cell."""
    path = Path(path)
    try:
        with _open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        raise CsvRecordingError(f"{path}: no such recording file") from None
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as err:
        raise CsvRecordingError(f"{path}: cannot read as UTF-8 CSV text ({err})") from None
    comments: dict = {}
    notes: list = []
    pos = 0
    line_no = 0
    header = None
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end].rstrip("\r")
        line_no += 1
        pos = end + 1
        if line.lstrip().startswith("#"):
            _parse_comment(line, comments, notes)
        elif line.strip():
            header = line
            break
    if header is None:
        _fail(path, None, None, "no header row (expected e.g. 't_s,heel_n' after the '#' comment lines)")
    columns = tuple(c.strip() for c in header.split(","))
    body = text[pos:]
    first_data_line = line_no + 1
    if not body.strip():
        _fail(path, first_data_line, None, "no data rows after the header")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2,
                              comments="#")
        if data.shape[1] != len(columns):
            raise ValueError("column count")
    except ValueError:
        _locate_bad_cell(path, body, columns, first_data_line)
        raise   # _locate_bad_cell always raises; this keeps type checkers content
    return CsvTable(comments, tuple(notes), columns, data, line_no, first_data_line)


def _locate_bad_cell(path, body: str, columns: tuple, first_line: int) -> None:
    """Slow path after the fast parser refused the body: find and name the first bad cell."""
    for k, raw in enumerate(body.split("\n")):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split(",")
        if len(cells) != len(columns):
            _fail(path, first_line + k, None,
                  f"{len(cells)} cells, but the header has {len(columns)} columns ({','.join(columns)})")
        for name, cell in zip(columns, cells):
            try:
                float(cell)
            except ValueError:
                _fail(path, first_line + k, name, f"{cell.strip()!r} is not a number "
                      "(numbers with '.' as decimal point; 'nan' marks a dropped sample)")
    _fail(path, None, None, "could not be parsed as comma-separated numbers")


def _cache_file(path: Path, extra: str = "") -> Path | None:
    """Where the binary form of ``path`` is cached (``extra``: what else the cached form
    depends on), or None when the cache is off or the file cannot be stat'ed."""
    if os.environ.get(CACHE_SWITCH_ENV, "1") == "0":
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    root = Path(os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or
                                                   Path.home() / ".cache") / "fescontrol" / "recordings")
    key = hashlib.sha1(f"{_CACHE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}{extra}".encode()).hexdigest()
    return root / f"{key}.npz"


def cached_array(path: str | Path, parse) -> np.ndarray:
    """``parse(path)`` (a float array), through the same binary cache as CSV tables: a source
    file that did not change (path, size, modification time) is parsed once. Used for the
    gaitpdb text files, whose ``np.loadtxt`` of a .gz costs ~0.3 s per foot."""
    path = Path(path)
    cache = _cache_file(path)
    if cache is not None:
        cache = cache.with_suffix(".npy")
        if cache.is_file():
            try:
                return np.load(cache, allow_pickle=False)
            except (OSError, ValueError):
                pass
    data = parse(path)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, data)
            os.replace(tmp, cache)
        except OSError:
            pass
    return data


def read_table_cached(path: str | Path) -> CsvTable:
    """:func:`read_table`, through the binary cache (see module doc). A cache that cannot be
    read or written is skipped silently: the CSV file is the truth."""
    path = Path(path)
    cache = _cache_file(path)
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                info = json.loads(str(z["info"]))
                return CsvTable(info["comments"], tuple(info["notes"]), tuple(info["columns"]),
                                z["data"], info["header_line"], info["first_data_line"])
        except (OSError, ValueError, KeyError):
            pass
    table = read_table(path)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            info = json.dumps({"comments": table.comments, "notes": list(table.notes),
                               "columns": list(table.columns), "header_line": table.header_line,
                               "first_data_line": table.first_data_line})
            tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, data=table.data, info=np.array(info))
            os.replace(tmp, cache)
        except OSError:
            pass
    return table


# ------------------------------------------------------------------------ interpretation
def _check_columns(path, table: CsvTable) -> dict[str, int]:
    """Column name -> index; refuses unknown unit suffixes, duplicates, a partial IMU."""
    index: dict[str, int] = {}
    unknown = []
    for k, name in enumerate(table.columns):
        where = (table.header_line, f"{k + 1} ({name!r})")
        if name in COLUMNS:
            if name in index:
                _fail(path, *where, f"column {name!r} appears twice")
            index[name] = k
            continue
        stem, _, suffix = name.rpartition("_")
        if stem in _UNITS:
            _fail(path, *where, f"unknown unit suffix {suffix!r} for {stem}; allowed: "
                  f"{stem}_{_UNITS[stem]} (columns: {', '.join(COLUMNS)})")
        if name in _UNITS:
            _fail(path, *where, f"{name!r} has no unit suffix; allowed: {name}_{_UNITS[name]}")
        unknown.append(name or f"(column {k + 1}, no name)")
    if "t_s" not in index:
        _fail(path, table.header_line, "t_s", "missing the required time column 't_s' (header: "
              + ",".join(table.columns) + ")")
    imu = [c for c in IMU_COLUMNS if c in index]
    if imu and len(imu) != len(IMU_COLUMNS):
        missing = [c for c in IMU_COLUMNS if c not in index]
        _fail(path, table.header_line, ",".join(missing),
              f"the IMU comes as all six columns ({', '.join(IMU_COLUMNS)}); missing {', '.join(missing)}")
    if "heel_n" not in index and not imu:
        _fail(path, table.header_line, None, "no sensor column: give heel_n and/or the six IMU columns")
    if unknown:
        warnings.warn(f"{path}: ignoring unknown column(s) {', '.join(unknown)} "
                      f"(known: {', '.join(COLUMNS)})", RecordingWarning, stacklevel=3)
    return index


def _rate_from_comment(path, table: CsvTable) -> float | None:
    raw = table.comments.get("rate_hz")
    if raw is None:
        return None
    try:
        rate = float(raw)
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        _fail(path, _comment_line(path, "rate_hz"), "rate_hz", f"{raw!r} is not a rate > 0 Hz")
    return rate


def _comment_line(path, key: str) -> int | None:
    try:
        with _open(path) as fh:
            for k, line in enumerate(fh, 1):
                if line.lstrip().startswith("#") and line.lstrip()[1:].strip().startswith(key):
                    return k
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class _Signals:
    t0_s: float
    rate_hz: float
    heel: np.ndarray | None
    acc: np.ndarray | None
    gyro: np.ndarray | None
    valid: np.ndarray
    resampled: bool


def _signals(path, table: CsvTable, index: dict[str, int]) -> _Signals:
    data = table.data
    t = data[:, index["t_s"]]
    first = table.first_data_line
    bad_t = np.flatnonzero(~np.isfinite(t))
    if bad_t.size:
        _fail(path, first + int(bad_t[0]), "t_s", "time must be a finite number")
    if t.size < 2:
        _fail(path, first, None, "a recording needs at least 2 samples")
    dt = np.diff(t)
    back = np.flatnonzero(dt <= 0)
    if back.size:
        k = int(back[0]) + 1
        _fail(path, first + k, "t_s", f"time goes backwards or repeats ({t[k]:g} s after {t[k - 1]:g} s); "
              "t_s must strictly increase")
    med = float(np.median(dt))
    uniform = bool(np.all(np.abs(dt - med) <= UNIFORM_TOLERANCE * med))
    rate = _rate_from_comment(path, table)
    channels = {"heel": [index["heel_n"]] if "heel_n" in index else None,
                "acc": [index[c] for c in IMU_COLUMNS[:3]] if "acc_x_ms2" in index else None,
                "gyro": [index[c] for c in IMU_COLUMNS[3:]] if "gyro_x_dps" in index else None}
    used = [k for cols in channels.values() if cols for k in cols]
    values = data[:, used]
    missing = ~np.isfinite(values)
    inf = np.argwhere(np.isinf(values))
    if inf.size:
        r, c = inf[0]
        _fail(path, first + int(r), table.columns[used[c]], "infinite value (use 'nan' for a dropped sample)")
    dropped = missing.any(axis=1)
    if dropped.all():
        _fail(path, first, None, "every sample is 'nan' (dropped)")
    if rate is None:
        if not uniform:
            k = int(np.flatnonzero(np.abs(dt - med) > UNIFORM_TOLERANCE * med)[0]) + 1
            _fail(path, first + k, "t_s", f"t_s is not uniform (a step of {dt[k - 1]:g} s; the median step is "
                  f"{med:g} s); add a '# rate_hz: N' comment line and the samples are resampled to it")
        rate = (t.size - 1) / (t[-1] - t[0])
        grid_ok = True
    else:
        grid_ok = uniform and abs(med * rate - 1.0) <= UNIFORM_TOLERANCE
    if grid_ok:
        out = values.copy()
        valid = ~dropped
        if dropped.any():
            keep = ~dropped
            idx = np.arange(t.size)
            for c in range(out.shape[1]):
                out[:, c] = np.interp(idx, idx[keep], values[keep, c])
        resampled = False
    else:
        keep = ~dropped
        tk = t[keep]
        m = int(math.floor((t[-1] - t[0]) * rate + 1e-9)) + 1
        grid = t[0] + np.arange(m) / rate
        out = np.column_stack([np.interp(grid, tk, values[keep, c]) for c in range(values.shape[1])])
        # a grid sample is valid when the kept samples around it are at most GAP_PERIODS apart
        right = np.clip(np.searchsorted(tk, grid - 1e-9 / rate, side="left"), 0, tk.size - 1)
        left = np.clip(right - 1, 0, tk.size - 1)
        exact = np.abs(tk[right] - grid) <= 1e-6 / rate
        span = tk[right] - tk[left]
        valid = exact | ((span <= GAP_PERIODS / rate) & (grid >= tk[0]) & (grid <= tk[-1]))
        resampled = True
    col = 0
    parts: dict = {}
    for name, cols in channels.items():
        if cols:
            parts[name] = out[:, col:col + len(cols)]
            col += len(cols)
        else:
            parts[name] = None
    heel = parts["heel"][:, 0] if parts["heel"] is not None else None
    return _Signals(float(t[0]), float(rate), heel, parts["acc"], parts["gyro"], valid, resampled)


# ---------------------------------------------------------------------------- the events
@dataclass(frozen=True)
class ReferenceEvents:
    toe_off_s: np.ndarray
    heel_strike_s: np.ndarray
    heel_off: list            # [(t_s, line)]
    quiet: list               # [(start_s, end_s, kind)]
    unscored: list            # [(start_s, end_s)]


def read_events(path: str | Path, t0_s: float, t_end_s: float) -> ReferenceEvents:
    """Parse an events sidecar; times are returned relative to ``t0_s``. Raises
    :class:`CsvRecordingError` naming line and column (see docs/recordings.md)."""
    path = Path(path)
    try:
        with _open(path) as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CsvRecordingError(f"{path}: cannot read the events file ({err})") from None
    rows = [(k, line) for k, line in enumerate(lines, 1) if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        _fail(path, None, None, "no header row (expected 't_s,event' or 't_s,event,kind')")
    head_line, head = rows[0]
    names = [c.strip() for c in next(csv.reader([head]))]
    if names[:2] != ["t_s", "event"] or len(names) > 3 or (len(names) == 3 and names[2] != "kind"):
        _fail(path, head_line, None, f"header must be 't_s,event' or 't_s,event,kind', got {head!r}")
    tol = 1e-6 + 1e-9 * abs(t_end_s)
    by_name: dict[str, list] = {e: [] for e in EVENT_NAMES}
    for k, line in rows[1:]:
        # a line without quotes splits as csv.reader splits it (the csv module only for quotes)
        cells = [c.strip() for c in (line.split(",") if '"' not in line else next(csv.reader([line])))]
        if len(cells) < 2 or len(cells) > len(names):
            _fail(path, k, None, f"{len(cells)} cells, expected {len(names)} ({','.join(names)})")
        try:
            t = float(cells[0])
        except ValueError:
            t = math.nan
        if not math.isfinite(t):
            _fail(path, k, "t_s", f"{cells[0]!r} is not a time in s")
        event = cells[1]
        if event not in by_name:
            _fail(path, k, "event", f"unknown event {event!r}; allowed: {', '.join(EVENT_NAMES)}")
        kind = cells[2] if len(cells) > 2 and cells[2] else ""
        if kind and not event.startswith("quiet_"):
            _fail(path, k, "kind", f"kind {kind!r} is only for quiet_start/quiet_end")
        if kind and kind not in QUIET_KINDS:
            _fail(path, k, "kind", f"unknown quiet kind {kind!r}; allowed: {', '.join(QUIET_KINDS)}")
        if t < t0_s - tol or t > t_end_s + tol:
            _fail(path, k, "t_s", f"{event} at {t:g} s is outside the recording ({t0_s:g} … {t_end_s:g} s)")
        by_name[event].append((t - t0_s, k, kind or "standing"))

    def times(name: str) -> np.ndarray:
        items = sorted(by_name[name])
        for (a, _, _), (b, line, _) in zip(items, items[1:]):
            if b <= a:
                _fail(path, line, "t_s", f"two {name} events at {b + t0_s:g} s")
        return np.array([x[0] for x in items], float)

    def intervals(prefix: str) -> list:
        marks = sorted([(x[0], 0 if n.endswith("_end") else 1, x[1], x[2], n)
                        for n in (f"{prefix}_start", f"{prefix}_end") for x in by_name[n]])
        out, open_ = [], None
        for t, _, line, kind, name in marks:
            if name.endswith("_start"):
                if open_ is not None:
                    _fail(path, line, "event", f"{name} at {t + t0_s:g} s while the {prefix} interval "
                          f"opened at line {open_[1]} is still open")
                open_ = (t, line, kind)
            else:
                if open_ is None:
                    _fail(path, line, "event", f"{name} at {t + t0_s:g} s without a {prefix}_start before it")
                if prefix == "quiet" and kind != open_[2] and kind != "standing":
                    _fail(path, line, "kind", f"kind {kind!r} differs from its quiet_start ({open_[2]!r}, line "
                          f"{open_[1]})")
                if t > open_[0]:
                    out.append((open_[0], t, open_[2]) if prefix == "quiet" else (open_[0], t))
                open_ = None
        if open_ is not None:
            _fail(path, open_[1], "event", f"{prefix}_start without a {prefix}_end after it")
        return out

    return ReferenceEvents(times("toe_off"), times("heel_strike"),
                           sorted((x[0], x[1]) for x in by_name["heel_off"]),
                           intervals("quiet"), intervals("unscored"))


def _heel_off_per_toe_off(path, ev: ReferenceEvents) -> np.ndarray:
    """heel_off_s[i] = the heel-off of the stance ending at toe_off_s[i] (NaN if none)."""
    out = np.full(ev.toe_off_s.shape, np.nan)
    hs = ev.heel_strike_s          # sorted, no two alike (read_events)
    for t, line in ev.heel_off:
        i = int(np.searchsorted(ev.toe_off_s, t - 1e-9, side="left"))
        if i >= len(ev.toe_off_s):
            continue    # the file ends in that stance: no toe-off to pair with
        j = int(np.searchsorted(hs, ev.toe_off_s[i], side="left"))    # hs[j - 1]: the last heel strike before it
        prev_to = ev.toe_off_s[i - 1] if i else -math.inf
        if j and hs[j - 1] > t or t <= prev_to:
            continue    # heel-off during a swing: not a stance's heel-off
        if not math.isnan(out[i]):
            _fail(path, line, "t_s", "a second heel_off in the same stance (one per stance, before its toe_off)")
        out[i] = t
    return out


#: the arrays of a parsed sidecar as the cache packs them, one after another in one float64
#: array (one npz member: each member costs a header parse); heel-off lines are small ints
_EVENT_PARTS = ("toe_off", "heel_strike", "heel_off_t", "heel_off_line", "quiet", "unscored", "heel_off_per_toe_off")


def read_events_cached(path: str | Path, t0_s: float, t_end_s: float) -> tuple[ReferenceEvents, np.ndarray]:
    """:func:`read_events` of a sidecar and its heel-off per toe-off
    (:func:`_heel_off_per_toe_off`), through the binary cache of the tables (keyed also by
    ``t0_s`` and ``t_end_s``: the checks and the relative times depend on them). Only a
    sidecar that parsed is cached: one that breaks the format is read, and refused with its
    line and column, every time. Parsing the text was ~2.4 ms of a 2-minute walk's ~12 ms."""
    path = Path(path)
    cache = _cache_file(path, f"|events|{float(t0_s)!r}|{float(t_end_s)!r}")
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                info = json.loads(str(z["info"]))
                data = z["data"]
            parts, at = {}, 0
            for name, n in zip(_EVENT_PARTS, info["lengths"]):
                parts[name] = data[at:at + n]
                at += n
            quiet = [(a, b, kind) for (a, b), kind in zip(parts["quiet"].reshape(-1, 2).tolist(), info["quiet_kinds"])]
            ev = ReferenceEvents(parts["toe_off"].copy(), parts["heel_strike"].copy(),
                                 list(zip(parts["heel_off_t"].tolist(), map(int, parts["heel_off_line"].tolist()))),
                                 quiet, [tuple(x) for x in parts["unscored"].reshape(-1, 2).tolist()])
            return ev, parts["heel_off_per_toe_off"].copy()
        except (OSError, ValueError, KeyError):
            pass
    ev = read_events(path, t0_s, t_end_s)
    heel_off = _heel_off_per_toe_off(path, ev)
    if cache is not None:
        try:
            arrays = [ev.toe_off_s, ev.heel_strike_s, [t for t, _ in ev.heel_off], [k for _, k in ev.heel_off],
                      [x for a, b, _ in ev.quiet for x in (a, b)], [x for iv in ev.unscored for x in iv], heel_off]
            arrays = [np.asarray(a, float).reshape(-1) for a in arrays]
            info = json.dumps({"lengths": [len(a) for a in arrays], "quiet_kinds": [kind for _, _, kind in ev.quiet]})
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, data=np.concatenate(arrays), info=np.array(info))
            os.replace(tmp, cache)
        except OSError:
            pass
    return ev, heel_off


# ------------------------------------------------------------------------------ loading
def load_csv_recording(path: str | Path, side: str | None = None, *, name: str | None = None) -> Recording:
    """Load a generic CSV recording (module doc) as a :class:`Recording`.

    ``side`` defaults to the file's ``side`` comment, else "left"; asking for the other
    foot than the file declares is a ``ValueError``. Raises :class:`CsvRecordingError`."""
    path = Path(path)
    table = read_table_cached(path)
    index = _check_columns(path, table)
    declared = table.comments.get("side")
    if declared is not None and declared not in SIDES:
        _fail(path, _comment_line(path, "side"), "side", f"{declared!r}; allowed: left, right")
    if side is None:
        side = declared or "left"
    if side not in SIDES:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    if declared is not None and side != declared:
        raise ValueError(f"{path} holds the {declared} foot (its '# side:' line) but side={side!r} was asked")
    sig = _signals(path, table, index)
    n = sig.valid.shape[0]
    duration = n / sig.rate_hz
    t_end = sig.t0_s + (n - 1) / sig.rate_hz
    ev_path = events_path_for(path)
    declared_source = table.comments.get("source")
    meta = {"path": str(path), "format": "csv", "t0_s": sig.t0_s, "resampled": sig.resampled,
            "subject": table.comments.get("subject"), "source_declared": declared_source,
            "comments": {k: v for k, v in table.comments.items()}, "notes": list(table.notes),
            "events_path": str(ev_path) if ev_path.is_file() else None,
            "reference_events": ev_path.is_file()}
    if ev_path.is_file():
        ev, heel_off = read_events_cached(ev_path, sig.t0_s, t_end + 1.0 / sig.rate_hz)
        has_heel_off = sig.heel is not None or len(ev.heel_off) > 0
        quiet, unscored = ev.quiet, ev.unscored
        toe_off, heel_strike = ev.toe_off_s, ev.heel_strike_s
    else:
        heel_off = np.zeros(0)
        has_heel_off = sig.heel is not None
        toe_off = heel_strike = np.zeros(0)
        quiet, unscored = [], [(0.0, duration)]
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    stem = stem[:-4] if stem.endswith(".csv") else stem
    try:
        return Recording(
            name=name or stem, source=declared_source if declared_source in SOURCES else CSV_SOURCE,
            side=side, rate_hz=sig.rate_hz, heel_n=sig.heel, acc_ms2=sig.acc, gyro_dps=sig.gyro,
            valid=sig.valid, toe_off_s=toe_off, heel_strike_s=heel_strike,
            heel_off_s=heel_off if has_heel_off else None, quiet_intervals_s=tuple(quiet),
            meta=meta, unscored_intervals_s=tuple(unscored))
    except ValueError as err:
        raise CsvRecordingError(f"{path}: {err}") from None


def csv_sides(path: str | Path) -> tuple[str, ...]:
    """The foot a CSV recording declares (its ``side`` comment) as a 1-tuple; ``()`` when it
    declares none (it is then the foot a command asks for, left by default)."""
    table = read_table_cached(path)
    side = table.comments.get("side")
    return (side,) if side in SIDES else ()


# ------------------------------------------------------------------------------ writing
def _fmt(values: np.ndarray) -> list[str]:
    return ["nan" if not math.isfinite(v) else f"{v:.10g}" for v in values]


def write_csv_recording(rec: Recording, out: str | Path, *, subject: str | None = None,
                        notes: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Write ``rec`` as a generic CSV recording plus its events sidecar; returns both paths.

    Samples the source dropped (``valid`` False) are written as ``nan`` cells, so they load
    back as dropped. Times are seconds from sample 0 (``i / rate_hz``)."""
    out = Path(out)
    if not out.name.endswith(".csv"):
        raise ValueError(f"{out}: the output file name must end in .csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = ["t_s"]
    blocks = [rec.t_s[:, None]]
    if rec.heel_n is not None:
        cols.append("heel_n")
        blocks.append(rec.heel_n[:, None])
    if rec.acc_ms2 is not None:
        cols += list(IMU_COLUMNS)
        blocks += [rec.acc_ms2, rec.gyro_dps]
    table = np.hstack(blocks).astype(float)
    table[~rec.valid, 1:] = np.nan
    subject = subject or rec.meta.get("subject") or subject_of(rec)
    head = [f"# fescontrol generic gait recording (docs/recordings.md), from {rec.name}",
            f"# rate_hz: {rec.rate_hz:.10g}", f"# side: {rec.side}", f"# source: {rec.source}"]
    if subject:
        head.append(f"# subject: {subject}")
    for key in ("licence", "events_from"):
        if rec.meta.get(key):
            head.append(f"# {key}: {rec.meta[key]}")
    head += [f"# {n}" for n in notes]
    buf = io.StringIO()
    fmt = ["%.10g"] * len(cols)
    np.savetxt(buf, table, fmt=fmt, delimiter=",")
    out.write_text("\n".join(head) + "\n" + ",".join(cols) + "\n" + buf.getvalue(), encoding="utf-8")
    ev_path = events_path_for(out)
    ev_path.write_text(events_csv_text(rec), encoding="utf-8")
    return out, ev_path


def events_csv_text(rec: Recording) -> str:
    """The reference events of ``rec`` in the sidecar format (sorted by time)."""
    end = rec.duration_s

    def inside(t: float) -> bool:
        return 0.0 <= t <= end

    rows = [(float(t), "toe_off", "") for t in rec.toe_off_s if inside(t)]
    rows += [(float(t), "heel_strike", "") for t in rec.heel_strike_s if inside(t)]
    if rec.heel_off_s is not None:
        rows += [(float(t), "heel_off", "") for t in rec.heel_off_s if math.isfinite(t) and inside(t)]
    for a, b, kind in rec.quiet_intervals_s:
        a, b = max(a, 0.0), min(b, end)
        if b > a:
            rows += [(a, "quiet_start", kind), (b, "quiet_end", kind)]
    for a, b in rec.unscored_intervals_s:
        a, b = max(a, 0.0), min(b, end)
        if b > a:
            rows += [(a, "unscored_start", ""), (b, "unscored_end", "")]
    order = {"unscored_end": 0, "quiet_end": 1, "heel_strike": 2, "heel_off": 3, "toe_off": 4,
             "quiet_start": 5, "unscored_start": 6}
    rows.sort(key=lambda r: (r[0], order[r[1]]))
    # repr: the shortest text that reads back as the same float (events stay on their samples)
    return "t_s,event,kind\n" + "".join(f"{t!r},{e},{k}\n" for t, e, k in rows)


_SUBJECT_RE = re.compile(r"^(?P<subject>[A-Za-z]{2}(?:Co|Pt)\d+)_\d+$")


def subject_of(rec: Recording) -> str:
    """Who walked: ``meta["subject"]`` when the source names one, the gaitpdb subject code
    (``GaCo04`` for walk ``GaCo04_02``), else the recording's name."""
    subject = rec.meta.get("subject")
    if subject:
        return str(subject)
    m = _SUBJECT_RE.match(str(rec.meta.get("file") or ""))
    if m:
        return m["subject"]
    return rec.name
