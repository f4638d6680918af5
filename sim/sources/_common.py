"""Helpers shared by the loaders: file access, data folders, runs, IMU frame alignment."""
from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np

from ..recording import GRAVITY_MS2

#: Bundled (licence-compatible) recordings shipped with the repository.
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "data"
#: Environment variable that points at a ``gait-data`` folder (overrides the default).
GAIT_DATA_ENV = "FES_GAIT_DATA"


def shared_gait_data_dir() -> Path:
    """The development-only ``shared/gait-data`` folder next to the repository.

    ``$FES_GAIT_DATA`` if set, else ``<repo>/../shared/gait-data``. It may not exist;
    callers check (tests skip when it is absent).
    """
    env = os.environ.get(GAIT_DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "gait-data"


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a text file for reading; ``*.gz`` is decompressed transparently."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def strip_gz(name: str) -> str:
    return name[:-3] if name.endswith(".gz") else name


def with_or_without_gz(path: Path) -> Path | None:
    """``path`` if it exists, else ``path.gz`` (or the name without ``.gz``), else None."""
    candidates = [path, Path(str(path) + ".gz")]
    if path.suffix == ".gz":
        candidates.append(path.with_suffix(""))
    for cand in candidates:
        if cand.is_file():
            return cand
    return None


def bool_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) sample indices of the runs of True in ``mask``."""
    m = np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]])
    d = np.diff(m)
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def fill_short_runs(mask: np.ndarray, value: bool, max_len: int, keep_edges: bool = True) -> np.ndarray:
    """Set runs of ``value`` shorter than ``max_len`` samples to ``not value``.

    With ``keep_edges`` a run that touches the first or last sample is left alone
    (its true length is unknown).
    """
    out = np.array(mask, dtype=bool, copy=True)
    starts, ends = bool_runs(out == value)
    for a, b in zip(starts, ends):
        if keep_edges and (a == 0 or b == len(out)):
            continue
        if b - a < max_len:
            out[a:b] = not value
    return out


def still_mask(gyros_dps: list[np.ndarray], rate_hz: float, max_rate_dps: float = 15.0,
               min_s: float = 1.0) -> np.ndarray:
    """Samples where every given IMU turns slower than ``max_rate_dps`` for >= ``min_s``.

    The gyro magnitude is smoothed with a 0.1 s moving average first. All arrays must
    be on the same clock; shorter ones are padded as moving.
    """
    n = max(len(g) for g in gyros_dps)
    still = np.ones(n, dtype=bool)
    k = max(1, int(round(0.1 * rate_hz)))
    for g in gyros_dps:
        mag = np.linalg.norm(g, axis=1)
        mag = np.convolve(mag, np.ones(k) / k, mode="same")
        s = np.zeros(n, dtype=bool)
        s[: len(g)] = mag < max_rate_dps
        still &= s
    return fill_short_runs(still, True, int(round(min_s * rate_hz)), keep_edges=False)


def gravity_rotation(acc_still_ms2: np.ndarray) -> np.ndarray:
    """Smallest rotation R (3×3) with ``R @ g_dir = +z`` for the mean still acceleration.

    Apply as ``v_new = v @ R.T``. The smallest rotation keeps the pitch axis (y) as
    close as possible to where it was, so a tilted but correctly labelled sensor
    keeps its axis meaning.
    """
    g = np.asarray(acc_still_ms2, float)
    g = g / np.linalg.norm(g)
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(g, z)
    c = float(np.dot(g, z))
    s = float(np.linalg.norm(v))
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * ((1 - c) / s**2)


def align_to_gravity(acc_ms2: np.ndarray, gyro_dps: np.ndarray, still: np.ndarray,
                     where: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Rotate acc/gyro (already in the canonical axes up to a tilt) so still acc is +z.

    Returns the rotated arrays and a meta dict (rotation matrix, tilt angles in deg,
    still-sample count, |acc| when still in m/s²).
    """
    if still.sum() < 10:
        raise ValueError(f"{where}: no still period (>= 1 s with |gyro| < 15 deg/s) "
                         "to find gravity; cannot align the IMU to the canonical frame")
    g = acc_ms2[still].mean(axis=0)
    rot = gravity_rotation(g)
    meta = {
        "imu_rotation": rot.tolist(),
        "imu_tilt_pitch_deg": float(np.degrees(np.arctan2(g[0], g[2]))),  # toe-up +
        "imu_tilt_roll_deg": float(np.degrees(np.arctan2(g[1], g[2]))),  # +y side up +
        "still_acc_norm_ms2": float(np.linalg.norm(g)),
        "still_samples": int(still.sum()),
        "gravity_ms2": GRAVITY_MS2,
    }
    return acc_ms2 @ rot.T, gyro_dps @ rot.T, meta
