"""The generic CSV recording (docs/recordings.md): loading, errors with file/line/column,
sidecar events, conversion round trips, `fes sim` and `fes recording convert` on it."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.cli import main
from fescontrol.sim.recording import Recording
from fescontrol.sim.replay import replay
from fescontrol.sim.run import load_any
from fescontrol.sim.scoring import score
from fescontrol.sim.sources import load_recording
from fescontrol.sim.sources.csv_recording import (CsvRecordingError, RecordingWarning, events_path_for,
                                       load_csv_recording, write_csv_recording)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FES_CACHE_DIR", str(tmp_path / "cache"))


def _walk(n: int = 400, rate: float = 100.0, imu: bool = True) -> str:
    t = np.arange(n) / rate
    heel = np.where((t % 1.0) < 0.6, 400.0, 0.0)
    cols = {"t_s": t, "heel_n": heel}
    if imu:
        cols.update({"acc_x_ms2": 0 * t, "acc_y_ms2": 0 * t, "acc_z_ms2": 9.81 + 0 * t,
                     "gyro_x_dps": 0 * t, "gyro_y_dps": -100 * np.sin(2 * np.pi * t), "gyro_z_dps": 0 * t})
    lines = [",".join(cols)] + [",".join(f"{cols[c][i]:.6g}" for c in cols) for i in range(n)]
    return "\n".join(lines) + "\n"


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_file_loads_with_rate_from_t_s(tmp_path):
    rec = load_recording(write(tmp_path / "w.csv", _walk()))
    assert isinstance(rec, Recording) and rec.rate_hz == pytest.approx(100.0)
    assert rec.has_heel and rec.has_imu and rec.n_samples == 400 and rec.side == "left"
    assert rec.meta["reference_events"] is False and rec.unscored_intervals_s == ((0.0, rec.duration_s),)
    assert rec.source == "csv" and rec.name == "w"


def test_columns_any_order_subset_and_comments(tmp_path):
    text = "# rate_hz: 50\n# side: right\n# subject: S7\n# source: my lab\n# a free note\nheel_n,t_s\n"
    text += "".join(f"{10 * (i % 7)},{i / 50:.2f}\n" for i in range(100))
    rec = load_recording(write(tmp_path / "h.csv", text), "right")
    assert rec.rate_hz == 50 and rec.has_heel and not rec.has_imu and rec.side == "right"
    assert rec.meta["subject"] == "S7" and rec.meta["source_declared"] == "my lab"
    assert rec.meta["notes"] == ["a free note"]
    assert rec.heel_n[3] == 30
    with pytest.raises(ValueError, match="holds the right foot"):
        load_recording(tmp_path / "h.csv", "left")


def test_unknown_columns_warned_once_naming_them(tmp_path):
    text = _walk().replace("t_s,heel_n", "t_s,temperature_c,heel_n,notes", 1)
    lines = text.splitlines()
    lines = [lines[0]] + [f"{ln.split(',', 1)[0]},21.5,{ln.split(',', 1)[1]},7" for ln in lines[1:]]
    path = write(tmp_path / "u.csv", "\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = load_csv_recording(path)
    mine = [w for w in caught if issubclass(w.category, RecordingWarning)]
    assert len(mine) == 1 and "temperature_c" in str(mine[0].message) and "notes" in str(mine[0].message)
    assert rec.heel_n[0] == 400.0


@pytest.mark.parametrize("mutate, line, column, what", [
    (lambda s: s.replace("0.05,", "0.05x,", 1), 7, "t_s", "'0.05x' is not a number"),
    (lambda s: s.replace("\n0.03,", "\n0.01,", 1), 5, "t_s", "backwards"),
    (lambda s: s.replace("t_s,", "time,", 1), 1, "t_s", "missing the required time column"),
    (lambda s: s.replace("acc_x_ms2", "acc_x_g", 1), 1, "3 ('acc_x_g')", "unknown unit suffix 'g'"),
    (lambda s: s.replace("heel_n", "heel_kg", 1), 1, "2 ('heel_kg')", "unknown unit suffix 'kg'"),
    (lambda s: s.replace("gyro_z_dps", "gz", 1), 1, "gyro_z_dps", "all six columns"),
])
@pytest.mark.filterwarnings("ignore::fescontrol.sim.sources.csv_recording.RecordingWarning")
def test_bad_files_name_file_line_and_column(tmp_path, mutate, line, column, what):
    path = write(tmp_path / "bad.csv", mutate(_walk()))
    with pytest.raises(CsvRecordingError) as err:
        load_recording(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}, line {line}") and what in msg, msg
    if column:
        assert f"column {column}" in msg, msg


def test_non_uniform_time_needs_rate_hz_and_resamples_with_gaps(tmp_path):
    rows = [i / 100 for i in range(300)]
    rows = rows[:100] + rows[110:]           # 0.1 s of dropped samples
    body = "t_s,heel_n\n" + "".join(f"{t:.2f},{100 + t}\n" for t in rows)
    with pytest.raises(CsvRecordingError, match=r"line 102, column t_s: t_s is not uniform.*rate_hz"):
        load_recording(write(tmp_path / "g.csv", body))
    rec = load_recording(write(tmp_path / "g2.csv", "# rate_hz: 100\n" + body))
    assert rec.n_samples == 300 and rec.rate_hz == 100
    assert not rec.valid[100:110].any() and rec.valid[:100].all() and rec.valid[110:].all()
    assert rec.heel_n[105] == pytest.approx(101.05)


def test_nan_cells_are_dropped_samples(tmp_path):
    text = _walk(imu=False).replace("\n0.05,400\n", "\n0.05,nan\n")
    rec = load_recording(write(tmp_path / "n.csv", text))
    assert not rec.valid[5] and rec.valid.sum() == rec.n_samples - 1 and rec.heel_n[5] == 400


def test_events_sidecar_scores_and_errors(tmp_path):
    path = write(tmp_path / "e.csv", "# rate_hz: 100\n" + _walk(imu=False))
    ev = events_path_for(path)
    assert ev.name == "e.events.csv"
    ev.write_text("t_s,event,kind\n0.55,heel_off,\n0.6,toe_off,\n1.0,heel_strike,\n1.6,toe_off,\n"
                  "2.0,heel_strike,\n2.6,toe_off,\n3.0,heel_strike,\n3.1,quiet_start,sitting\n"
                  "3.9,quiet_end,sitting\n0.0,unscored_start,\n0.3,unscored_end,\n")
    rec = load_recording(path)
    assert rec.meta["reference_events"] is True and len(rec.reference_swings()) == 3
    assert rec.heel_off_s[0] == pytest.approx(0.55) and np.isnan(rec.heel_off_s[1])
    assert rec.quiet_intervals_s == ((3.1, 3.9, "sitting"),) and rec.unscored_intervals_s == ((0.0, 0.3),)
    for text, line, column, what in [
        ("t_s,event\n0.6,toe_of\n", 2, "event", "unknown event 'toe_of'"),
        ("t_s,event\n0.6,toe_off\n9.5,heel_strike\n", 3, "t_s", "outside the recording"),
        ("t_s,event\nabc,toe_off\n", 2, "t_s", "not a time"),
        ("t_s,event,kind\n1,quiet_start,dancing\n2,quiet_end,\n", 2, "kind", "unknown quiet kind"),
        ("t_s,event\n1,quiet_end\n", 2, "event", "without a quiet_start"),
        ("# made by hand\ntime,event\n", 2, None, "header must be"),
    ]:
        ev.write_text(text)
        with pytest.raises(CsvRecordingError) as err:
            load_recording(path)
        msg = str(err.value)
        assert msg.startswith(f"{ev}, line {line}") and what in msg, msg
        if column:
            assert f"column {column}" in msg


@pytest.mark.parametrize("name, side", [("physionet:GaCo01", "right"), ("gaitmap:imu_sample", "left"),
                                        ("synthetic:mixed", "left")])
def test_convert_round_trip_scores_identically(tmp_path, name, side):
    from fescontrol.core.profile import default_profile_for, load_profile
    rec = load_any(name, side)
    out, ev = write_csv_recording(rec, tmp_path / "c.csv")
    back = load_recording(out)
    assert back.side == side and back.rate_hz == rec.rate_hz and np.array_equal(back.valid, rec.valid)
    assert len(back.reference_swings()) == len(rec.reference_swings())
    profile = load_profile(default_profile_for(rec.has_heel, rec.has_imu))
    a = score(rec, replay(rec, profile).bursts_s).to_dict()
    b = score(back, replay(back, profile).bursts_s).to_dict()
    a.pop("name"), b.pop("name")
    assert json.dumps(a, default=str) == json.dumps(b, default=str)


def test_cache_gives_the_same_recording_and_follows_edits(tmp_path):
    path = write(tmp_path / "k.csv", _walk(imu=False))
    first = load_recording(path)
    cached = load_recording(path)
    assert np.array_equal(first.heel_n, cached.heel_n) and any((tmp_path / "cache").iterdir())
    write(path, _walk(n=300, imu=False))
    assert load_recording(path).n_samples == 300


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0, 2000, allow_nan=False), min_size=2, max_size=60), st.sampled_from([50.0, 100.0, 128.0]))
def test_any_heel_signal_round_trips(tmp_path_factory, heel, rate):
    d = tmp_path_factory.mktemp("rt")
    rec = Recording(name="x", source="synthetic", side="left", rate_hz=rate, heel_n=np.array(heel),
                    acc_ms2=None, gyro_dps=None, valid=np.ones(len(heel), bool), toe_off_s=[],
                    heel_strike_s=[], heel_off_s=None, quiet_intervals_s=())
    out, _ = write_csv_recording(rec, d / "r.csv")
    back = load_csv_recording(out)
    assert back.rate_hz == rate and np.allclose(back.heel_n, rec.heel_n, rtol=1e-9, atol=1e-9)


def test_fes_sim_and_convert_commands(tmp_path):
    runner = CliRunner()
    out = tmp_path / "walk.csv"
    res = runner.invoke(main, ["recording", "convert", "physionet:GaCo01", str(out), "--side", "left"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and (tmp_path / "walk.events.csv").is_file()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert runner.invoke(main, ["sim", "--recording", str(out), "--json", str(a)]).exit_code == 0
    assert runner.invoke(main, ["sim", "--recording", "physionet:GaCo01", "--json", str(b)]).exit_code == 0
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    for key in ("name", "recording"):
        ja.pop(key), jb.pop(key)
    assert ja == jb
    (tmp_path / "walk.events.csv").unlink()
    res = runner.invoke(main, ["sim", "--recording", str(out), "--json", str(a)])
    assert res.exit_code == 0 and "not scored" in res.output
    assert json.loads(a.read_text())["scored"] is False
    bad = write(tmp_path / "bad.csv", "t_s,heel_n\n0,1\n0.01,x\n")
    res = runner.invoke(main, ["sim", "--recording", str(bad)])
    assert res.exit_code == 2 and "line 3, column heel_n" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["recording", "convert", "physionet:GaCo01", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and "must end in .csv" in res.output


def _recording_fields(rec) -> dict:
    return {"toe_off": rec.toe_off_s.tolist(), "heel_strike": rec.heel_strike_s.tolist(),
            "heel_off": None if rec.heel_off_s is None else [repr(x) for x in rec.heel_off_s.tolist()],
            "quiet": rec.quiet_intervals_s, "unscored": rec.unscored_intervals_s}


def test_the_events_sidecar_is_cached_parsed_and_refused_every_time(tmp_path, monkeypatch):
    """A sidecar with every kind of mark loads the same from the cache as parsed (the cache off:
    FES_CSV_CACHE=0), including the swing's heel-off pairing and quiet kinds; a broken sidecar
    is never cached: it is refused with its line on every load."""
    path = write(tmp_path / "q.csv", _walk(n=600, imu=False))
    events = tmp_path / "q.events.csv"
    events.write_text("t_s,event,kind\n0.5,unscored_start,\n0.9,unscored_end,\n1.2,heel_off,\n"
                      "1.6,toe_off,\n2.0,heel_strike,\n2.2,heel_off,\n2.6,toe_off,\n3.0,heel_strike,\n"
                      "3.5,quiet_start,sitting\n4.5,quiet_end,sitting\n4.6,quiet_start,\n5.0,quiet_end,\n")
    monkeypatch.setenv("FES_CSV_CACHE", "0")
    parsed = _recording_fields(load_recording(path))
    monkeypatch.delenv("FES_CSV_CACHE")
    first, cached = load_recording(path), load_recording(path)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2      # the table and the events
    assert _recording_fields(first) == _recording_fields(cached) == parsed
    assert parsed["quiet"] == ((3.5, 4.5, "sitting"), (4.6, 5.0, "standing")) and len(parsed["toe_off"]) == 2
    events.write_text(events.read_text() + "6.0,toe_off,\n6.0,toe_off,\n")
    for _ in range(2):
        with pytest.raises(CsvRecordingError, match="line 15, column t_s: two toe_off events"):
            load_recording(path)
