"""Loader for the IPOL healthy-gait IMU data set (XSens MTw on both feet, 100 Hz).

LICENCE: the upstream repository is AGPL-3.0. Its files are NEVER copied into this
repository; they are read from the shared development folder
(:func:`fescontrol.sim.sources._common.shared_gait_data_dir`, ``$FES_GAIT_DATA``) and callers skip
when it is absent.

Files per trial ``<subject>-<trial>``: ``_lf.txt`` / ``_rf.txt`` (left/right foot),
``.json`` (metadata and events). Text: line 1 ``Acquisition frequency: 100 Hz``, line 2
a tab-separated header, then rows ``PacketCounter, Acc_X/Y/Z (m/s²), Gyr_X/Y/Z (rad/s),
Mag_X/Y/Z``. Columns are found by header name.

Time base: packets get dropped (PacketCounter jumps). Every sample is put on the
PacketCounter clock (index = PacketCounter - PacketCounter[0], 16-bit wrap undone,
duplicates dropped), the gaps are linearly interpolated and marked ``valid = False``.
The JSON event indices are on that clock; each file uses its own first counter (the
three sensors' first counters differ by 0–2 samples, so events are good to ±20 ms).

Axes: the raw sensor frame has X pointing back up the instep, Y to the subject's right,
Z out of the dorsum, on both feet (checked on the data: raw +Gyr_Y has the mid-swing
peak, standing Acc_X ≈ +5 m/s² because the dorsum slopes ~30° down toward the toes).
Canonical = (-X, -Y, Z), then a gravity alignment on the still standing before the trial
removes the ~20–40° mounting tilt (meta ``imu_tilt_pitch_deg``).

Events: ``LeftFootEvents`` / ``RightFootEvents``: one ``[start, end]`` per swing,
start = toe-off, end = heel strike.

Quiet and unscored intervals (decided from the data; see docs/gait-data-notes.md):

* before ``TrialBoundaries[0]``: "standing";
* ``UTurnBoundaries``: "turning";
* after ``TrialBoundaries[1]`` the annotation is incomplete (several trials have
  un-annotated steps there, mostly the walk-off at the file end): only periods with
  BOTH feet still (|gyro| < 15 deg/s for >= 1 s) are "standing"; the rest after
  ``TrialBoundaries[1]`` is unscored;
* every quiet interval excludes the reference swings ± 0.3 s.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..recording import (QUIET_SWING_MARGIN_S, Recording, quiet_without_swings,
                           subtract_intervals)
from ._common import (align_to_gravity, bool_runs, open_text, shared_gait_data_dir,
                                 still_mask, strip_gz, with_or_without_gz)

SOURCE = "ipol_healthy_imu"
FOOT_SUFFIX = {"left": "_lf.txt", "right": "_rf.txt"}
EVENTS_KEY = {"left": "LeftFootEvents", "right": "RightFootEvents"}
RAW_TO_CANONICAL = np.diag([-1.0, -1.0, 1.0])   # v_canonical = v_raw @ RAW_TO_CANONICAL.T
COUNTER_WRAP = 65536


def ipol_data_dir() -> Path:
    """``<shared gait-data>/ipol_healthy_imu/GaitData`` (may not exist)."""
    return shared_gait_data_dir() / "ipol_healthy_imu" / "GaitData"


def available_trials() -> list[str]:
    """Trial names (``"1-1"``, …) found in :func:`ipol_data_dir`, empty if absent."""
    folder = ipol_data_dir()
    if not folder.is_dir():
        return []
    names = [strip_gz(p.name)[:-5] for p in folder.iterdir() if strip_gz(p.name).endswith(".json")]
    return sorted(names, key=lambda s: [int(x) if x.isdigit() else x for x in s.split("-")])


def trial_stem(path: str | Path) -> tuple[Path, str | None]:
    """(folder/trial stem, foot side named by the file or None) for any file of a trial."""
    path = Path(path)
    name = strip_gz(path.name)
    for side, suffix in FOOT_SUFFIX.items():
        if name.endswith(suffix):
            return path.parent / name[: -len(suffix)], side
    if name.endswith(".json"):
        return path.parent / name[:-5], None
    return path.parent / name, None


def read_ipol_imu(path: str | Path) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(rate_hz, counter (m,) int, acc (m, 3) m/s², gyro (m, 3) rad/s) of one sensor file.

    The counter has its 16-bit wrap undone and starts at 0; duplicate counters are dropped.
    """
    with open_text(path) as fh:
        first = fh.readline()
        header = fh.readline().strip().split("\t")
        data = np.loadtxt(fh, delimiter="\t", ndmin=2)
    try:
        rate = float(first.split(":")[1].split()[0])
    except (IndexError, ValueError):
        raise ValueError(f"{path}: line 1 should be 'Acquisition frequency: <rate> Hz', "
                         f"got {first.strip()!r}") from None
    cols = {}
    for key in ("PacketCounter", "Acc_X", "Acc_Y", "Acc_Z", "Gyr_X", "Gyr_Y", "Gyr_Z"):
        if key not in header:
            raise ValueError(f"{path}: header lacks column {key!r} (has {header})")
        cols[key] = header.index(key)
    step = np.diff(np.round(data[:, cols["PacketCounter"]]).astype(np.int64))
    step = np.where(step < -COUNTER_WRAP // 2, step + COUNTER_WRAP, step)
    if np.any(step < 0):
        raise ValueError(f"{path}: PacketCounter goes backwards at row "
                         f"{int(np.flatnonzero(step < 0)[0]) + 3}")
    counter = np.concatenate([[0], np.cumsum(step)])
    keep = np.concatenate([[True], step > 0])
    acc = data[:, [cols["Acc_X"], cols["Acc_Y"], cols["Acc_Z"]]]
    gyro = data[:, [cols["Gyr_X"], cols["Gyr_Y"], cols["Gyr_Z"]]]
    return rate, counter[keep], acc[keep], gyro[keep]


def on_counter_grid(counter: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values on the uniform counter grid 0..counter[-1] (linear fill) and the valid mask."""
    n = int(counter[-1]) + 1
    grid = np.arange(n)
    out = np.stack([np.interp(grid, counter, values[:, k]) for k in range(values.shape[1])], 1)
    valid = np.zeros(n, dtype=bool)
    valid[counter] = True
    return out, valid


def load_ipol(path: str | Path, side: str | None = None, *, name: str | None = None) -> Recording:
    """Load one foot of an IPOL trial; ``path`` is any file of the trial or its stem.

    ``side`` defaults to the foot the file names (``_lf``/``_rf``), else "left"; a side
    that contradicts the file name raises ValueError.
    """
    stem, file_side = trial_stem(path)
    if side is None:
        side = file_side or "left"
    if side not in FOOT_SUFFIX:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    if file_side is not None and side != file_side:
        raise ValueError(f"{path} is the {file_side} foot's file but side={side!r} was asked")
    files = {}
    for s in (*FOOT_SUFFIX, "json"):
        target = Path(str(stem) + (".json" if s == "json" else FOOT_SUFFIX[s]))
        found = with_or_without_gz(target)
        if found is None:
            raise FileNotFoundError(f"IPOL trial {stem.name}: missing {target}")
        files[s] = found
    with open_text(files["json"]) as fh:
        info = json.load(fh)

    rate, counter, acc_raw, gyro_raw = read_ipol_imu(files[side])
    imu, valid = on_counter_grid(counter, np.hstack([acc_raw, np.degrees(gyro_raw)]))
    acc = imu[:, :3] @ RAW_TO_CANONICAL.T
    gyro = imu[:, 3:] @ RAW_TO_CANONICAL.T
    other = "right" if side == "left" else "left"
    _, c2, _, g2 = read_ipol_imu(files[other])
    gyro_other, _ = on_counter_grid(c2, np.degrees(g2))
    n = len(valid)
    duration = n / rate

    trial = [float(v) / rate for v in info["TrialBoundaries"]]
    uturn = [float(v) / rate for v in info["UTurnBoundaries"]]
    events = np.asarray(info[EVENTS_KEY[side]], dtype=float).reshape(-1, 2) / rate
    events = events[np.argsort(events[:, 0])]
    beyond = events[events[:, 1] > (n - 1) / rate]
    events = events[events[:, 1] <= (n - 1) / rate]
    swings = [(float(a), float(b)) for a, b in events]

    own_still = still_mask([gyro], rate)
    before = own_still & (np.arange(n) / rate < trial[0])
    acc, gyro, frame_meta = align_to_gravity(acc, gyro, before if before.sum() >= 10 else own_still,
                                             str(files[side]))

    both_still = still_mask([gyro, gyro_other[:n]], rate)
    still_iv = [(a / rate, b / rate) for a, b in zip(*bool_runs(both_still))]
    after_still = subtract_intervals(still_iv, [(0.0, trial[1])])
    quiet = [(0.0, trial[0], "standing"), (uturn[0], uturn[1], "turning")]
    quiet += [(a, b, "standing") for a, b in after_still]
    quiet_s = quiet_without_swings(quiet, swings, QUIET_SWING_MARGIN_S)
    unscored = subtract_intervals([(trial[1], duration)], after_still, min_len_s=0.05)

    weight = info.get("Weight")
    meta = {
        "path": str(files[side]), "trial": stem.name, "subject": info.get("Subject"),
        "age": info.get("Age"), "gender": info.get("Gender"), "height_cm": info.get("Height"),
        "weight_kg": None if weight is None or (isinstance(weight, float) and math.isnan(weight))
        else weight,
        "trial_boundaries_s": trial, "uturn_boundaries_s": uturn,
        "rows": int(len(counter)), "dropped_samples": int(n - valid.sum()),
        "events_beyond_file_s": beyond.tolist(),
        "licence": "AGPL-3.0 upstream repository: read from ../shared only, never bundled",
        "events_from": "validated algorithms with a manual check (swing = [toe-off, heel strike])",
        **frame_meta,
    }
    return Recording(
        name=name or f"ipol:{stem.name}", source=SOURCE, side=side, rate_hz=rate, heel_n=None,
        acc_ms2=acc, gyro_dps=gyro, valid=valid,
        toe_off_s=events[:, 0].copy(), heel_strike_s=events[:, 1].copy(), heel_off_s=None,
        quiet_intervals_s=quiet_s, meta=meta, unscored_intervals_s=tuple(unscored))
