"""Real-data loaders: formats, units, the canonical IMU frame per foot, reference events."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from fescontrol.sim.recording import Recording, RecordingError, pitch_rate_dps
from fescontrol.sim.sources import (BUNDLED_DIR, list_bundled, load_gaitmap, load_ipol, load_physionet,
                         load_recording, resolve_name, shared_gait_data_dir)
from fescontrol.sim.sources.ipol import available_trials, ipol_data_dir

SIDES = ("left", "right")
PHYSIONET = ["physionet:GaCo01", "physionet:JuCo01", "physionet:GaPt03", "physionet:SiPt02"]
IPOL_TRIALS = ["1-1", "3-3", "8-5"]   # 3-3 and 8-5: many dropped packets, events beyond the rows
needs_ipol = pytest.mark.skipif(not ipol_data_dir().is_dir(),
                                reason="ipol_healthy_imu not in ../shared/gait-data (AGPL, never bundled)")
needs_shared = pytest.mark.skipif(not (shared_gait_data_dir() / "physionet_gaitpdb").is_dir(),
                                  reason="../shared/gait-data absent")


@pytest.fixture(scope="module")
def physionet_recs() -> dict:
    return {(n, s): load_recording(n, s) for n in PHYSIONET for s in SIDES}


@pytest.fixture(scope="module")
def gaitmap_recs() -> dict:
    return {s: load_recording("gaitmap:imu_sample", s) for s in SIDES}


@pytest.fixture(scope="module")
def ipol_recs() -> dict:
    if not ipol_data_dir().is_dir():
        pytest.skip("ipol_healthy_imu absent")
    return {(t, s): load_recording(f"ipol:{t}", s) for t in IPOL_TRIALS for s in SIDES}


# ----------------------------------------------------------------- shared checks
def check_events(rec: Recording) -> np.ndarray:
    """Events monotone, inside the recording, swings alternate; returns the swings array."""
    assert np.all(np.diff(rec.toe_off_s) > 0) and np.all(np.diff(rec.heel_strike_s) > 0)
    sw = np.array(rec.reference_swings())
    assert len(sw) >= 10, rec
    assert sw.min() >= 0 and sw.max() <= rec.duration_s
    assert np.all(sw[:, 1] > sw[:, 0])
    assert np.all(sw[1:, 0] > sw[:-1, 1]), "a swing starts before the previous one ended"
    return sw


def swing_fraction(sw: np.ndarray) -> float:
    stride = np.diff(sw[:, 0])
    ok = stride < 2.0       # skip pauses and turns
    return float(np.median((sw[:-1, 1] - sw[:-1, 0])[ok] / stride[ok]))


def check_canonical_frame(rec: Recording) -> None:
    """Toe-up pitch rate = -gyro_y: +mid-swing peak, push-off dip, ~0 in flat stance,
    acc z ≈ +g when standing. Must hold for both feet."""
    pr = pitch_rate_dps(rec)
    fs = rec.rate_hz
    sw = np.array(rec.reference_swings())
    peaks, dips, mids = [], [], []
    for k, (to, hs) in enumerate(sw):
        d = hs - to                        # middle half of the swing, and just before toe-off
        peaks.append(pr[int((to + 0.25 * d) * fs):int((to + 0.75 * d) * fs) + 1].max())
        dips.append(pr[int((to - 0.15) * fs):int(to * fs) + 1].min())
        if k > 0 and to - sw[k - 1, 1] < 2.0:      # mid-stance of the previous stance
            a, b = sw[k - 1, 1], to
            mids.append(np.median(np.abs(pr[int((a + 0.4 * (b - a)) * fs):int((a + 0.5 * (b - a)) * fs)])))
    assert np.median(peaks) > 250, f"{rec}: mid-swing toe-up peak {np.median(peaks):.0f} deg/s"
    assert np.median(dips) < -150, f"{rec}: push-off dip {np.median(dips):.0f} deg/s"
    assert np.median(mids) < 20, f"{rec}: flat stance rate {np.median(mids):.0f} deg/s"
    standing = [(a, b) for a, b, kind in rec.quiet_intervals_s if kind == "standing" and b - a > 0.5]
    assert standing, f"{rec}: no standing interval to check gravity on"
    a, b = standing[0]
    acc = rec.acc_ms2[int(a * fs):int(b * fs)].mean(axis=0)
    assert 9.3 < acc[2] < 10.6 and abs(acc[0]) < 0.5 and abs(acc[1]) < 0.5, f"{rec}: standing acc {acc}"


# --------------------------------------------------------------------- bundle
def test_bundle_names_size_and_licences() -> None:
    assert list_bundled() == PHYSIONET[:1] + ["physionet:GaPt03", "physionet:JuCo01",
                                              "physionet:SiPt02", "gaitmap:imu_sample"]
    size = sum(p.stat().st_size for p in BUNDLED_DIR.rglob("*") if p.is_file())
    assert size < 4.2e6
    readme = (BUNDLED_DIR / "README.md").read_text()
    for must in ("ODC-By", "Goldberger", "Hausdorff", "MIT", "Küderle"):
        assert must in readme
    assert "MIT License" in (BUNDLED_DIR / "gaitmap_example" / "LICENSE-gaitmap.txt").read_text()
    assert not list(BUNDLED_DIR.rglob("*_lf.txt*")), "IPOL (AGPL) data must never be bundled"


# ------------------------------------------------------------------ physionet
@pytest.mark.parametrize("name", PHYSIONET)
@pytest.mark.parametrize("side", SIDES)
def test_physionet_heel_and_events(physionet_recs, name, side) -> None:
    rec = physionet_recs[(name, side)]
    assert rec.name == name and rec.side == side and rec.source == "physionet_gaitpdb"
    assert rec.rate_hz == 100 and rec.has_heel and not rec.has_imu
    assert rec.heel_n.shape == (rec.n_samples,) and rec.valid.all()
    assert rec.heel_n.min() >= 0 and 50 < rec.heel_n.max() < 2000      # newtons
    sw = check_events(rec)
    assert 0.22 < swing_fraction(sw) < 0.45                            # PD shuffling ~0.25
    assert 0.25 < np.median(sw[:, 1] - sw[:, 0]) < 0.6
    fs = rec.rate_hz
    inner = np.array([rec.heel_n[int(to * fs) + 5:int(hs * fs) - 5].max(initial=0) for to, hs in sw])
    # shuffling steps that unload the foot under 6 % of its load are swings too (the reference
    # of sim/sources/physionet.py): their heel may keep a few N (GaPt03 shuffles)
    assert np.mean(inner == 0) > 0.8 and np.mean(inner < 20) > 0.97, "heel not unloaded in swing"
    lead = rec.toe_off_s - rec.heel_off_s
    assert np.nanmin(lead) >= 0 and 0.1 < np.nanmedian(lead) < 0.5
    assert np.isfinite(rec.heel_off_s).mean() > 0.95


def test_physionet_contact_edges_exact(physionet_recs) -> None:
    rec = physionet_recs[("physionet:GaCo01", "left")]
    from fescontrol.sim.sources.physionet import read_physionet
    total = read_physionet(BUNDLED_DIR / "physionet_gaitpdb" / "GaCo01_01.txt.gz")[:, 17]
    to_i = np.round(rec.toe_off_s * 100).astype(int)
    hs_i = np.round(rec.heel_strike_s * 100).astype(int)
    assert np.mean(total[to_i] <= 2.0) > 0.85 and np.all(total[to_i - 1] > 2.0)
    assert np.all(total[hs_i] > 2.0) and np.mean(total[hs_i - 1] <= 2.0) > 0.9


def test_physionet_standing_at_start_is_quiet(physionet_recs) -> None:
    from fescontrol.sim.sources.physionet import load_physionet
    # with a fixed 20 N contact threshold GaCo01 starts with 1.8 s of standing ...
    path = BUNDLED_DIR / "physionet_gaitpdb" / "GaCo01_01.txt.gz"
    fixed = load_physionet(path, "left", load_threshold_n=20.0)
    a, b, kind = fixed.quiet_intervals_s[0]
    assert (a, kind) == (0.0, "standing") and b > 1.0
    assert b <= fixed.toe_off_s[0] - 0.3 + 1e-9
    # ... whose end is the first step: the insole's flat 25-38 N residual while the foot is in
    # the air (its heel reads a flat ~20 N), under 6 % of the foot's ~1000 N load, so the
    # relative reference calls it the first swing, and standing before it lasts < 1 s
    rec = physionet_recs[("physionet:GaCo01", "left")]
    assert rec.meta["load_threshold_n"] > 40 and abs(rec.toe_off_s[0] - 0.81) < 0.02
    assert fixed.toe_off_s[0] > 2.0 and all(q[0] > 1.0 for q in rec.quiet_intervals_s)


def test_physionet_any_path_and_gz_transparent(tmp_path, physionet_recs) -> None:
    src = BUNDLED_DIR / "physionet_gaitpdb" / "JuCo01_01.txt.gz"
    plain = tmp_path / "XyPt99_01.txt"
    with gzip.open(src, "rb") as fh:
        plain.write_bytes(fh.read())
    rec = load_recording(plain, "right")
    ref = physionet_recs[("physionet:JuCo01", "right")]
    assert rec.name == "physionet:XyPt99" and rec.meta["group"] == "parkinsons"
    np.testing.assert_array_equal(rec.heel_n, ref.heel_n)
    np.testing.assert_array_equal(rec.toe_off_s, ref.toe_off_s)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n4 5 6\n")
    with pytest.raises(ValueError, match="19"):
        load_physionet(bad)


@needs_shared
def test_bundled_equals_shared() -> None:
    shared = load_physionet(shared_gait_data_dir() / "physionet_gaitpdb" / "data" / "GaPt03_01.txt", "left")
    bundled = load_recording("physionet:GaPt03", "left")
    np.testing.assert_array_equal(shared.heel_n, bundled.heel_n)
    np.testing.assert_array_equal(shared.heel_strike_s, bundled.heel_strike_s)


def test_resampled_keeps_events(physionet_recs) -> None:
    rec = physionet_recs[("physionet:JuCo01", "left")]
    half = rec.resampled(50.0)
    assert half.rate_hz == 50 and half.n_samples == (rec.n_samples - 1) // 2 + 1
    np.testing.assert_array_equal(half.toe_off_s, rec.toe_off_s)
    np.testing.assert_allclose(half.heel_n, rec.heel_n[::2])


# -------------------------------------------------------------------- gaitmap
@pytest.mark.parametrize("side", SIDES)
def test_gaitmap_imu_frame_and_events(gaitmap_recs, side) -> None:
    rec = gaitmap_recs[side]
    assert rec.rate_hz == 204.8 and rec.has_imu and not rec.has_heel and rec.heel_off_s is None
    assert rec.acc_ms2.shape == (7928, 3) and rec.gyro_dps.shape == (7928, 3)
    sw = check_events(rec)
    assert 0.28 < swing_fraction(sw) < 0.42
    check_canonical_frame(rec)
    # events are motion-capture sample indices at 204.8 Hz
    assert np.allclose(rec.toe_off_s * 204.8, np.round(rec.toe_off_s * 204.8))


def test_gaitmap_turn_stride_dropped_and_unscored(gaitmap_recs) -> None:
    rec = gaitmap_recs["left"]
    (to, hs), = rec.meta["dropped_swings_s"]
    assert hs - to > 1.0 and len(rec.reference_swings()) == 27
    assert any(a <= to and hs <= b for a, b in rec.unscored_intervals_s)
    assert rec.unscored_intervals_s[0][0] == 0.0     # gait initiation is not annotated


def test_gaitmap_ic_stride_variant_has_no_toe_off(tmp_path) -> None:
    (tmp_path / "imu_x.csv").write_text("sensor,left_sensor\naxis,acc_x\n0,1\n")
    (tmp_path / "stride_borders_x.csv").write_text("s_id,foot,start,end\n")
    with pytest.raises(FileNotFoundError, match="no toe-off"):
        load_gaitmap(tmp_path / "imu_x.csv")


# ----------------------------------------------------------------------- ipol
@needs_ipol
@pytest.mark.parametrize("trial", IPOL_TRIALS)
@pytest.mark.parametrize("side", SIDES)
def test_ipol_frame_and_events(ipol_recs, trial, side) -> None:
    rec = ipol_recs[(trial, side)]
    assert rec.rate_hz == 100 and rec.source == "ipol_healthy_imu"
    sw = check_events(rec)
    assert 0.3 < swing_fraction(sw) < 0.45
    check_canonical_frame(rec)
    kinds = {k for _, _, k in rec.quiet_intervals_s}
    assert "standing" in kinds and kinds <= {"standing", "turning"}
    if trial == "1-1":
        assert "turning" in kinds
    for a, b, _ in rec.quiet_intervals_s:     # quiet never overlaps a swing ± 0.3 s
        assert all(b <= to - 0.3 + 1e-9 or a >= hs + 0.3 - 1e-9 for to, hs in sw)


def _raw_counters(path: Path) -> np.ndarray:
    pc = np.loadtxt(path, skiprows=2, usecols=0)
    return (pc - pc[0]).astype(int)


@needs_ipol
def test_ipol_gaps_invalid_and_events_on_counter_clock(ipol_recs) -> None:
    rec = ipol_recs[("3-3", "left")]
    counters = _raw_counters(ipol_data_dir() / "3-3_lf.txt")
    assert rec.n_samples == counters[-1] + 1 > len(counters)
    expect = np.zeros(rec.n_samples, bool)
    expect[counters] = True
    np.testing.assert_array_equal(rec.valid, expect)
    assert rec.meta["dropped_samples"] == rec.n_samples - len(counters) > 300
    info = json.loads((ipol_data_dir() / "3-3.json").read_text())
    ev = np.array(info["LeftFootEvents"], float)
    assert ev.max() > len(counters)            # beyond the row count, inside the counter grid
    np.testing.assert_allclose(rec.toe_off_s, ev[:, 0] / 100)
    np.testing.assert_allclose(rec.heel_strike_s, ev[:, 1] / 100)
    # on the counter clock the mid-swing peak sits mid-swing; on the row-index clock the
    # later swings drift off (hundreds of packets are missing before them)
    pr = pitch_rate_dps(rec)

    def centred(sig: np.ndarray) -> float:
        sw = [(a, b) for a, b in rec.reference_swings() if b * 100 < len(sig)]
        pos = [np.argmax(sig[int(a * 100):int(b * 100) + 1]) / (100 * (b - a)) for a, b in sw]
        return float(np.mean((np.array(pos) > 0.3) & (np.array(pos) < 0.7)))

    assert centred(pr) > 0.85
    assert centred(pr[counters]) < centred(pr) - 0.15


@needs_ipol
def test_ipol_file_paths_and_sides() -> None:
    left = load_recording(ipol_data_dir() / "1-1_lf.txt")
    assert left.side == "left" and left.name == "ipol:1-1"
    assert load_recording(ipol_data_dir() / "1-1.json", "right").side == "right"
    with pytest.raises(ValueError, match="left foot"):
        load_ipol(ipol_data_dir() / "1-1_lf.txt", "right")
    assert len(available_trials()) >= 40


def test_ipol_absent_is_clean(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FES_GAIT_DATA", str(tmp_path / "nowhere"))
    assert available_trials() == []
    with pytest.raises(FileNotFoundError, match="shared"):
        resolve_name("ipol:1-1")


def test_ipol_loader_on_a_hand_made_trial(tmp_path) -> None:
    """Gaps, the counter clock, rad/s -> deg/s and the axis flip on a tiny synthetic trial."""
    n = 600
    counters = np.delete(np.arange(n), [300, 301, 302, 450])
    t = np.arange(n) / 100
    gy_raw = np.where((t > 3.2) & (t < 3.6), np.radians(300.0), 0.0)   # raw +Y = toe-up
    rows = []
    for c in counters:
        rows.append(f"{c + 7}.0\t0.0\t0.0\t9.81\t0.0\t{gy_raw[c]:.6f}\t0.0\t0\t0\t0")
    header = "\t".join(["PacketCounter", "Acc_X", "Acc_Y", "Acc_Z", "Gyr_X", "Gyr_Y", "Gyr_Z",
                        "Mag_X", "Mag_Y", "Mag_Z"])
    text = f"Acquisition frequency: 100 Hz\n{header}\n"
    for suffix in ("_lf.txt", "_rf.txt"):
        (tmp_path / f"9-9{suffix}").write_text(text + "\n".join(rows) + "\n")
    swings = [[320, 360], [520, 560]]
    (tmp_path / "9-9.json").write_text(json.dumps({
        "TrialBoundaries": [310, 560], "UTurnBoundaries": [400, 480],
        "LeftFootEvents": swings, "RightFootEvents": swings}))
    rec = load_ipol(tmp_path / "9-9.json", "left")
    assert rec.n_samples == n and (~rec.valid).sum() == 4 and not rec.valid[300:303].any()
    assert pitch_rate_dps(rec)[340] == pytest.approx(300.0)
    assert rec.acc_ms2[0, 2] == pytest.approx(9.81)
    assert rec.reference_swings() == [(3.2, 3.6), (5.2, 5.6)]
    assert [k for *_, k in rec.quiet_intervals_s[:2]] == ["standing", "turning"]
    np.testing.assert_allclose([iv[:2] for iv in rec.quiet_intervals_s[:2]], [(0, 2.9), (4.0, 4.8)])


# --------------------------------------------------------------- dispatching
def test_load_recording_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="short name"):
        load_recording("nosuch:thing")
    with pytest.raises(FileNotFoundError):
        load_recording("physionet:ZzCo42")
    with pytest.raises(FileNotFoundError):
        load_recording(tmp_path / "missing.txt")
    odd = tmp_path / "odd.txt"
    odd.write_text("hello world\n")
    with pytest.raises(ValueError, match="not a gaitpdb"):
        load_recording(odd)


def test_recording_invariants() -> None:
    base = dict(name="x", source="synthetic", side="left", rate_hz=100.0,
                heel_n=np.zeros(100), acc_ms2=None, gyro_dps=None, valid=np.ones(100, bool),
                toe_off_s=np.array([0.2, 0.5]), heel_strike_s=np.array([0.4, 0.7]),
                heel_off_s=np.array([0.1, 0.4]), quiet_intervals_s=())
    rec = Recording(**base)
    assert rec.duration_s == 1.0 and rec.reference_swings() == [(0.2, 0.4), (0.5, 0.7)]
    with pytest.raises(ValueError):
        rec.heel_n[0] = 1.0                    # read-only
    for bad in (dict(side="middle"), dict(toe_off_s=np.array([0.5, 0.2])),
                dict(heel_off_s=np.array([0.3, 0.4])), dict(heel_n=np.zeros(99)),
                dict(quiet_intervals_s=((0.0, 1.0, "dancing"),)), dict(source="mocap")):
        with pytest.raises(RecordingError):
            Recording(**{**base, **bad})
