"""The one recording loader (fescontrol.sim.load.load_any): every command that takes a recording
accepts the same things, raw .fesraw frames included, with the same errors; the evaluation
cache is the loader's."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from fescontrol.cli import main
from fescontrol.sim.load import load_any
from fescontrol.sim.recording import RecordingError
from fescontrol.sim.replay import recording_stream
from fescontrol.sim.sources.frames import recording_from_frames
from fescontrol.tools.calibration import load_walk


@pytest.fixture(scope="module")
def fesraw(tmp_path_factory):
    """A walk saved as raw sensor frames, as ``fes calibrate --save-walk`` keeps it."""
    rec = load_any("physionet:GaCo01", "left")
    frames, _ = recording_stream(rec)
    path = tmp_path_factory.mktemp("walks") / "walk.fesraw"
    path.write_bytes(frames.tobytes())
    return path, rec


def test_fes_sim_replays_a_saved_fesraw_walk(fesraw, tmp_path):
    path, rec = fesraw
    out = tmp_path / "sim.json"
    res = CliRunner().invoke(main, ["sim", "--recording", str(path), "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["delivered"]["frames"] == rec.n_samples
    assert data["delivered"]["crc_errors"] == 0


def test_calibration_and_sim_load_the_same_walk(fesraw):
    path, rec = fesraw
    a, b = load_walk(path), load_any(str(path))
    assert a.name == b.name == "walk" and a.rate_hz == b.rate_hz == pytest.approx(rec.rate_hz)
    np.testing.assert_array_equal(a.heel_n, b.heel_n)
    np.testing.assert_allclose(a.heel_n, rec.heel_n, atol=0.1)      # one heel count of resolution


@pytest.mark.parametrize("bad", ["synthetic:nope", "synthetic:"])
def test_an_unknown_scenario_is_the_same_error_everywhere(bad):
    for load in (load_walk, lambda r: load_any(r, "left")):
        with pytest.raises(RecordingError, match=r"unknown synthetic scenario; known: synthetic:"):
            load(bad)


def test_frames_that_are_not_a_walk_raise_a_recording_error(tmp_path):
    with pytest.raises(RecordingError, match="fewer than 2 valid sensor frames"):
        recording_from_frames(b"\x00garbage" * 10, name="junk")
    junk = tmp_path / "junk.fesraw"
    junk.write_bytes(b"\x00garbage" * 10)
    res = CliRunner().invoke(main, ["sim", "--recording", str(junk)])
    assert res.exit_code != 0 and "fewer than 2 valid sensor frames" in res.output
    assert "Traceback" not in res.output


def test_the_cache_keeps_a_file_until_it_changes(fesraw, tmp_path):
    from fescontrol.sim.evaluate import load_cached
    path, _ = fesraw
    copy = tmp_path / "again.fesraw"
    copy.write_bytes(path.read_bytes())
    first = load_cached(str(copy), "left")
    assert load_cached(str(copy), "left") is first
    assert load_any(str(copy), "left") is not first                  # no cache unless asked
    copy.write_bytes(path.read_bytes()[: 33 * 500])                  # a shorter walk, a new mtime
    os.utime(copy, ns=(first_ns := os.stat(copy).st_mtime_ns + 10 ** 9, first_ns))
    again = load_cached(str(copy), "left")
    assert again is not first and again.n_samples == 500
