"""Loader for gaitmap example data: foot IMUs with motion-capture stride events.

IMU file (``imu_<x>.csv[.gz]``): two header rows (sensor, axis), an index column, then
``left_sensor``/``right_sensor`` × ``acc_x/y/z`` (m/s², gravity included) and
``gyr_x/y/z`` (deg/s), in gaitmap's foot sensor frame, which has the canonical axes
(x toward the toes, y left, z up, both feet; checked on the data: toe-up ``-gyr_y`` has
the +300 deg/s mid-swing peak on both feet). Columns are found by their header names.
The residual mounting tilt (up to ~17°) is removed by a gravity alignment on the
periods when both feet are still.

Events file (``stride_events_<x>.csv[.gz]`` in the same folder, or ``events_path``):
``s_id, foot, start, end, ic, tc, ...`` as sample indices into the IMU file; per stride
``tc`` = toe-off and ``ic`` = heel strike (optical motion capture), i.e. each row gives
one swing ``[tc, ic]``. Swings longer than ``max_swing_s`` (1.0 s; a turn stride whose
events span several foot movements) are dropped and their span is unscored.

Quiet and unscored intervals: both feet still (|gyro| < 15 deg/s for >= 1 s) is
"standing"; everything the stride list does not cover (before the first stride, after
the last one, gaps) and is not standing is unscored (gait initiation/termination steps
are not annotated).

The 102.4 Hz ``imu_sample_ic_stride.csv`` comes with ``stride_borders_*`` (initial
contacts only, no toe-off), so it cannot give reference swings; loading it raises.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..recording import (QUIET_SWING_MARGIN_S, Recording, merge_intervals,
                           quiet_without_swings, subtract_intervals)
from ._common import (align_to_gravity, bool_runs, open_text, still_mask, strip_gz,
                                 with_or_without_gz)

SOURCE = "gaitmap_example"
RATE_HZ = 204.8
SENSOR = {"left": "left_sensor", "right": "right_sensor"}
ACC_COLUMNS = ("acc_x", "acc_y", "acc_z")
GYRO_COLUMNS = ("gyr_x", "gyr_y", "gyr_z")


def read_gaitmap_imu(path: str | Path) -> dict[str, np.ndarray]:
    """``{"left_sensor": (n, 6), "right_sensor": (n, 6)}`` with acc_x..z, gyr_x..z columns."""
    with open_text(path) as fh:
        sensors = fh.readline().strip().split(",")
        axes = fh.readline().strip().split(",")
        data = np.loadtxt(fh, delimiter=",", ndmin=2)
    if len(sensors) != data.shape[1] or len(axes) != data.shape[1]:
        raise ValueError(f"{path}: header has {len(sensors)} columns, data {data.shape[1]}")
    out = {}
    for sensor in sorted(set(sensors[1:])):
        cols = []
        for axis in ACC_COLUMNS + GYRO_COLUMNS:
            hits = [i for i, (s, a) in enumerate(zip(sensors, axes)) if s == sensor and a == axis]
            if len(hits) != 1:
                raise ValueError(f"{path}: expected one column {sensor}/{axis}, found {len(hits)}")
            cols.append(hits[0])
        out[sensor] = data[:, cols]
    if not set(SENSOR.values()) <= set(out):
        raise ValueError(f"{path}: sensors {sorted(out)}, need {sorted(SENSOR.values())}")
    return out


def read_stride_events(path: str | Path) -> list[dict]:
    """Rows of a gaitmap stride list as dicts (numbers as float, ``foot`` as str)."""
    with open_text(path) as fh:
        header = fh.readline().strip().split(",")
        rows = [line.strip().split(",") for line in fh if line.strip()]
    out = []
    for row in rows:
        rec = {}
        for key, val in zip(header, row):
            rec[key] = val if key == "foot" else float(val)
        out.append(rec)
    return out


def events_path_for(imu_path: Path) -> Path:
    """``stride_events_<x>.csv`` next to ``imu_<x>.csv`` (either may be gzip-compressed)."""
    name = strip_gz(imu_path.name)
    suffix = name[len("imu_"):] if name.startswith("imu_") else name
    found = with_or_without_gz(imu_path.parent / ("stride_events_" + suffix))
    if found is None:
        borders = with_or_without_gz(imu_path.parent / ("stride_borders_" + suffix))
        why = (f"only {borders.name} (stride borders at initial contact, no toe-off) exists"
               if borders else "no such file")
        raise FileNotFoundError(
            f"{imu_path}: needs the stride events file stride_events_{suffix}[.gz] with "
            f"ic (heel strike) and tc (toe-off) columns in the same folder: {why}")
    return found


def load_gaitmap(path: str | Path, side: str = "left", *, events_path: str | Path | None = None,
                 rate_hz: float = RATE_HZ, max_swing_s: float = 1.0,
                 name: str | None = None) -> Recording:
    """Load one foot of a gaitmap IMU file plus its stride events as a :class:`Recording`."""
    if side not in SENSOR:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    path = Path(path)
    ev_path = Path(events_path) if events_path is not None else events_path_for(path)
    imu = read_gaitmap_imu(path)
    rows = read_stride_events(ev_path)
    if rows and not {"ic", "tc", "foot", "start", "end"} <= set(rows[0]):
        raise ValueError(f"{ev_path}: needs columns foot, start, end, ic, tc; got {sorted(rows[0])}")
    n = imu[SENSOR[side]].shape[0]
    rate = float(rate_hz)

    acc = imu[SENSOR[side]][:, :3]
    gyro = imu[SENSOR[side]][:, 3:]
    still = still_mask([imu[s][:, 3:] for s in SENSOR.values()], rate)
    acc, gyro, frame_meta = align_to_gravity(acc, gyro, still, str(path))

    mine = sorted((r for r in rows if r["foot"] == side), key=lambda r: r["tc"])
    swings, dropped = [], []
    for r in mine:
        to, hs = r["tc"] / rate, r["ic"] / rate
        if not (0 <= r["tc"] < r["ic"] < n):
            raise ValueError(f"{ev_path}: stride {r.get('s_id')} has tc={r['tc']}, ic={r['ic']} "
                             f"outside 0..{n - 1} or out of order")
        (swings if hs - to <= max_swing_s else dropped).append((to, hs))
    covered = [(r["start"] / rate, r["end"] / rate) for r in mine]

    standing = [(a / rate, b / rate, "standing") for a, b in zip(*bool_runs(still))]
    quiet = quiet_without_swings(standing, swings, QUIET_SWING_MARGIN_S)
    duration = n / rate
    unscored = subtract_intervals([(0.0, duration)],
                                  covered + [(a, b) for a, b, _ in standing], min_len_s=0.05)
    unscored = merge_intervals(unscored + dropped)

    stem = strip_gz(path.name)
    stem = stem[:-4] if stem.endswith(".csv") else stem
    meta = {"path": str(path), "events_path": str(ev_path),
            "licence": "MIT (gaitmap, MaD-Lab Erlangen)",
            "events_from": "optical motion capture (ic = heel strike, tc = toe-off)",
            "dropped_swings_s": dropped, "max_swing_s": max_swing_s, **frame_meta}
    return Recording(
        name=name or f"gaitmap:{stem}", source=SOURCE, side=side, rate_hz=rate, heel_n=None,
        acc_ms2=acc, gyro_dps=gyro, valid=np.ones(n, dtype=bool),
        toe_off_s=np.array([s[0] for s in swings]), heel_strike_s=np.array([s[1] for s in swings]),
        heel_off_s=None, quiet_intervals_s=quiet, meta=meta,
        unscored_intervals_s=tuple(unscored))
