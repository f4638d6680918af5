"""Loader for PhysioNet "Gait in Parkinson's Disease" (gaitpdb) force-insole files.

Format (``format.txt`` of the database): whitespace separated, no header, 19 columns,
100 Hz: time (s); L1..L8 vertical force (N) under the left foot; R1..R8 under the
right; total left (N); total right (N). L1/R1 is the heel sensor. Any file of this
format is accepted (``*.txt`` or ``*.txt.gz``); nothing is subject specific.

Reference events, from the foot's TOTAL force (exact contact: ~0 N in swing):

1. loaded = total >= the contact threshold: ``load_threshold_n`` when given, else
   max(``min_load_threshold_n`` (20 N), ``contact_load_fraction`` (6 %) × the 95th percentile
   of the foot's total force, i.e. of its stance load). Why relative: some insoles keep a
   residual on their sensors through swing (JuPt26: the total reads 14–55 N in swing while
   the other foot carries the body, its stance load ~1000 N), so a fixed 20 N calls those
   swings stance and the device's onsets in them false. A foot carrying under 6 % of its
   own stance load (~4 kg of a 70 kg walker) is not bearing weight; 6 % sits above the
   largest swing residual seen (~5 %). For a clean insole (0 N in swing) the edges are
   refined to the contact edge anyway (step 2); what changes there is that a dip to
   20–60 N lasting ``min_swing_s`` counts as a (short) swing. The threshold uses the whole
   file (the reference is offline; the device never sees it). Loaded blips shorter than
   ``min_stance_s`` inside a swing are noise, unloaded dips shorter than ``min_swing_s``
   are not swings (both are merged into their surroundings);
2. each unloaded run is a swing. Its edges are moved to the contact edge: toe-off = the
   first sample with total <= ``contact_zero_n`` (2 N) after the threshold crossing,
   heel strike = the first sample above it at the end of the swing, each searched at
   most ``refine_max_s`` (0.1 s) from the crossing (else the crossing sample is used).
   A swing cut by the file start or end gives no toe-off / heel strike;
3. heel-off of the stance that ends at a toe-off = the first sample after the heel
   force was last above ``max(heel_off_min_n, heel_off_fraction × stance heel peak)``
   (5 N, 5 %); NaN when the heel never got above it.

Quiet intervals: both feet loaded (each over its own contact threshold, same cleaning) for at least
``standing_min_s`` (1 s) is "standing" (quiet standing, the turns at the walkway ends,
shuffling on the spot), minus reference swings ± 0.3 s. No IMU in this database.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..recording import QUIET_SWING_MARGIN_S, Recording, quiet_without_swings
from ._common import bool_runs, fill_short_runs, open_text, strip_gz

SOURCE = "physionet_gaitpdb"
RATE_HZ = 100.0
N_COLUMNS = 19
HEEL_COLUMN = {"left": 1, "right": 9}      # L1 / R1, 0-based
TOTAL_COLUMN = {"left": 17, "right": 18}
_NAME_RE = re.compile(r"^(?P<study>[A-Za-z]{2})(?P<group>Co|Pt)(?P<subject>\d+)_(?P<walk>\d+)$")


def read_physionet(path: str | Path) -> np.ndarray:
    """The (n, 19) float array of a gaitpdb file; raises ValueError on another format."""
    from .csv_recording import cached_array   # parsed once, then a binary copy

    def parse(p):
        with open_text(p) as fh:
            return np.loadtxt(fh, ndmin=2)
    data = cached_array(path, parse)
    if data.shape[1] != N_COLUMNS or data.shape[0] < 2:
        raise ValueError(f"{path}: expected the gaitpdb format with {N_COLUMNS} columns, "
                         f"got an array of shape {data.shape}")
    return data


def recording_name(path: str | Path) -> str:
    """``physionet:<stem>``; the usual-walk suffix ``_01`` is dropped (GaCo01_01 -> GaCo01)."""
    stem = strip_gz(Path(path).name)
    stem = stem[:-4] if stem.endswith(".txt") else stem
    return "physionet:" + (stem[:-3] if stem.endswith("_01") else stem)


def loaded_mask(total_n: np.ndarray, rate_hz: float, load_threshold_n: float,
                min_stance_s: float, min_swing_s: float) -> np.ndarray:
    """Cleaned foot-contact mask from the total force (see module doc, step 1)."""
    loaded = total_n >= load_threshold_n
    loaded = fill_short_runs(loaded, True, int(round(min_stance_s * rate_hz)))
    return fill_short_runs(loaded, False, int(round(min_swing_s * rate_hz)))


def contact_threshold_n(total_n: np.ndarray, min_threshold_n: float = 20.0,
                        load_fraction: float = 0.06) -> float:
    """The reference's contact threshold for one foot (N): max(``min_threshold_n``,
    ``load_fraction`` × the 95th percentile of its total force) (module doc, step 1)."""
    return max(float(min_threshold_n), float(load_fraction) * float(np.percentile(total_n, 95)))


def load_physionet(path: str | Path, side: str = "left", *, name: str | None = None,
                   load_threshold_n: float | None = None, min_load_threshold_n: float = 20.0,
                   contact_load_fraction: float = 0.06, min_swing_s: float = 0.15,
                   min_stance_s: float = 0.10, contact_zero_n: float = 2.0,
                   refine_max_s: float = 0.10, heel_off_min_n: float = 5.0,
                   heel_off_fraction: float = 0.05, standing_min_s: float = 1.0) -> Recording:
    """Load one foot of a gaitpdb file as a :class:`Recording` (heel channel only, 100 Hz)."""
    if side not in HEEL_COLUMN:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    data = read_physionet(path)
    rate = RATE_HZ
    n = data.shape[0]
    total = data[:, TOTAL_COLUMN[side]]
    heel = np.clip(data[:, HEEL_COLUMN[side]], 0.0, None)
    other_total = data[:, TOTAL_COLUMN["right" if side == "left" else "left"]]
    threshold_n, other_threshold_n = (
        contact_threshold_n(t, min_load_threshold_n, contact_load_fraction)
        if load_threshold_n is None else float(load_threshold_n) for t in (total, other_total))
    loaded = loaded_mask(total, rate, threshold_n, min_stance_s, min_swing_s)

    refine = int(round(refine_max_s * rate))
    starts, ends = bool_runs(~loaded)
    toe_off_i, heel_strike_i = [], []
    for a, b in zip(starts, ends):
        if a > 0:  # observed toe-off
            zero = np.flatnonzero(total[a:min(b, a + refine + 1)] <= contact_zero_n)
            toe_off_i.append(a + int(zero[0]) if len(zero) else a)
        if b < n:  # observed heel strike: first sample above the zero band
            lo = max(a, b - refine - 1)
            zero = np.flatnonzero(total[lo:b] <= contact_zero_n)
            heel_strike_i.append(lo + int(zero[-1]) + 1 if len(zero) else b)
    toe_off_i = np.asarray(toe_off_i, int)
    heel_strike_i = np.asarray(heel_strike_i, int)

    heel_off = np.full(len(toe_off_i), np.nan)
    for k, to in enumerate(toe_off_i):
        prev = heel_strike_i[heel_strike_i < to]
        st = int(prev[-1]) if len(prev) else 0
        seg = heel[st:to + 1]
        thr = max(heel_off_min_n, heel_off_fraction * float(seg.max(initial=0.0)))
        above = np.flatnonzero(seg > thr)
        if len(above):
            heel_off[k] = min(st + int(above[-1]) + 1, to) / rate

    rec_to = toe_off_i / rate
    rec_hs = heel_strike_i / rate
    both = loaded & loaded_mask(other_total, rate, other_threshold_n, min_stance_s, min_swing_s)
    bs, be = bool_runs(both)
    min_len = int(round(standing_min_s * rate))
    quiet = [(a / rate, b / rate, "standing") for a, b in zip(bs, be) if b - a >= min_len]

    stem = strip_gz(Path(path).name)
    stem = stem[:-4] if stem.endswith(".txt") else stem
    m = _NAME_RE.match(stem)
    meta = {
        "path": str(path),
        "file": stem,
        "study": m["study"] if m else None,
        "group": {"Co": "control", "Pt": "parkinsons"}.get(m["group"]) if m else None,
        "licence": "ODC-By 1.0 (PhysioNet gaitpdb 1.0.0, Hausdorff et al.)",
        "events_from": "total force of the foot (contact edges), heel-off from the heel sensor",
        "load_threshold_n": threshold_n, "min_swing_s": min_swing_s,
        "min_stance_s": min_stance_s, "contact_zero_n": contact_zero_n,
        "refine_max_s": refine_max_s, "heel_off_min_n": heel_off_min_n,
        "heel_off_fraction": heel_off_fraction, "standing_min_s": standing_min_s,
        "time_column_start_s": float(data[0, 0]),
    }
    rec = Recording(
        name=name or recording_name(path), source=SOURCE, side=side, rate_hz=rate,
        heel_n=heel, acc_ms2=None, gyro_dps=None, valid=np.ones(n, dtype=bool),
        toe_off_s=rec_to, heel_strike_s=rec_hs, heel_off_s=heel_off,
        quiet_intervals_s=(), meta=meta)
    quiet_s = quiet_without_swings(quiet, rec.reference_swings(), QUIET_SWING_MARGIN_S)
    return replace(rec, quiet_intervals_s=quiet_s)
