"""The events sidecar's fast paths are the plain ones: a line without quotes is split as
``csv.reader`` splits it, and each heel-off is paired with its stance by bisection instead of a
mask over every heel strike; checked against the plain code on hypothesis event sets and on
every bundled walk converted to CSV."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.sim.run import load_any
from fescontrol.sim.sources import list_bundled
from fescontrol.sim.sources import csv_recording as cr

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FES_CACHE_DIR", str(tmp_path / "cache"))


def plain_heel_off_per_toe_off(path, ev):
    """The pairing as written before (the reference): a mask over every heel strike."""
    out = np.full(ev.toe_off_s.shape, np.nan)
    for t, line in ev.heel_off:
        i = int(np.searchsorted(ev.toe_off_s, t - 1e-9, side="left"))
        if i >= len(ev.toe_off_s):
            continue
        prev_hs = ev.heel_strike_s[ev.heel_strike_s < ev.toe_off_s[i]]
        prev_to = ev.toe_off_s[i - 1] if i else -math.inf
        if len(prev_hs) and prev_hs[-1] > t or t <= prev_to:
            continue
        if not math.isnan(out[i]):
            cr._fail(path, line, "t_s", "a second heel_off in the same stance (one per stance, before its toe_off)")
        out[i] = t
    return out


def _outcome(fn, path, ev):
    try:
        return ("ok", repr(fn(path, ev).tolist()))
    except cr.CsvRecordingError as err:
        return ("error", str(err))


distinct_times = st.lists(st.integers(0, 3000), unique=True, max_size=30).map(lambda v: np.array(sorted(v)) / 50.0)


@settings(max_examples=300, deadline=None)
@given(toe_off=distinct_times, heel_strike=distinct_times,
       heel_off=st.lists(st.integers(0, 3000), unique=True, max_size=30))
def test_heel_off_pairing_is_the_plain_one(toe_off, heel_strike, heel_off):
    ev = cr.ReferenceEvents(toe_off, heel_strike, [(t / 50.0 + 0.001, k + 2) for k, t in enumerate(sorted(heel_off))],
                            [], [])
    assert _outcome(cr._heel_off_per_toe_off, "x.events.csv", ev) == _outcome(
        plain_heel_off_per_toe_off, "x.events.csv", ev)


def _quoted(path, out):
    """The same sidecar with every cell quoted (parsed by csv.reader, not split)."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    with open(out, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for line in lines:
            if line.startswith("#") or line.startswith("t_s"):
                fh.write(line + "\n")
            else:
                w.writerow(line.split(","))


@pytest.mark.parametrize("name", list_bundled())
def test_bundled_sidecars_parse_alike_split_or_quoted(name, tmp_path):
    for side in ("left", "right"):
        rec = load_any(name, side)
        out = tmp_path / f"{side}.csv"
        cr.write_csv_recording(rec, out)
        ev_path = cr.events_path_for(out)
        quoted = tmp_path / f"{side}_q.events.csv"
        _quoted(ev_path, quoted)
        end = rec.duration_s + 1.0
        a, b = cr.read_events(ev_path, 0.0, end), cr.read_events(quoted, 0.0, end)
        assert len(a.toe_off_s) > 10
        for f in ("toe_off_s", "heel_strike_s"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        assert (a.heel_off, a.quiet, a.unscored) == (b.heel_off, b.quiet, b.unscored)
        np.testing.assert_array_equal(cr._heel_off_per_toe_off(ev_path, a), plain_heel_off_per_toe_off(ev_path, a))
