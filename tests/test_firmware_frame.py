"""Host conformance of the firmware's portable C against the Python protocol reference.

firmware/src/fes_frame.c and sensor_unit.c (the sources the AVR build links) are compiled
with the host compiler; their frames must be byte for byte what fescontrol.drivers.sensor_protocol
encodes, parse back through FrameParser unchanged, and be rejected when corrupted.
Run with --hypothesis-show-statistics to see how many cases each property ran.
"""
from __future__ import annotations

import ctypes
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.drivers import sensor_protocol as sp
from tests import firmware_host as fw

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
I16 = st.integers(-32768, 32767)
I16x3 = st.tuples(I16, I16, I16)
frames_st = st.builds(sp.SensorFrame, seq=U16, timestamp_us=U32, flags=st.integers(0, 0xFF),
                      heel_force=U16, heel_raw=U16, acc=I16x3, gyro=I16x3, tilt=I16)
MOUNT_COUNT = int(re.search(r"#define FES_MOUNT_COUNT (\d+)",
                            (fw.FIRMWARE_SRC / "sensor_unit.h").read_text()).group(1))


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return fw.build_library(tmp_path_factory.mktemp("fesfw"))


def c_encode(lib, f: sp.SensorFrame) -> bytes:
    return fw.encode(lib, f.seq, f.timestamp_us, f.flags, f.heel_force, f.heel_raw, f.acc, f.gyro, f.tilt)


def test_crc_check_value_and_worked_example(lib):
    assert lib.fes_crc16_ccitt(b"123456789", 9, 0xFFFF) == 0x29B1
    worked = sp.SensorFrame(1, 10_000, sp.FLAG_HEEL_PRESENT, 5123, 5123, (0, 0, 0), (0, 0, 0), 0)
    assert c_encode(lib, worked).hex(" ").upper() == (
        "A5 5A 1C 01 01 01 00 10 27 00 00 03 14 03 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 95 FD")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80), init=U16)
def test_crc_matches_python_for_any_bytes_and_start_value(lib, data, init):
    assert lib.fes_crc16_ccitt(data, len(data), init) == sp.crc16_ccitt(data, init)


@settings(max_examples=500, deadline=None)
@given(frame=frames_st)
def test_c_frames_are_the_python_encoders_bytes_and_parse_back(lib, frame):
    wire = c_encode(lib, frame)
    assert wire == sp.encode_frame(frame)
    parser = sp.FrameParser()
    assert parser.feed(wire) == [frame]
    assert parser.counters == sp.ParserCounters(frames=1)


@settings(max_examples=100, deadline=None)
@given(first_seq=st.integers(0xFFFF - 40, 0xFFFF), first_ts=st.integers(0xFFFFFFFF - 40 * 10_000, 0xFFFFFFFF),
       period_us=st.sampled_from([1000, 2000, 5000, 10_000]), n=st.integers(2, 60),
       chunk=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
def test_a_stream_across_sequence_and_clock_wrap_parses_in_any_chunking(lib, first_seq, first_ts, period_us,
                                                                        n, chunk, seed):
    """What the firmware sends: seq +1 and timestamp +period per frame, both wrapping."""
    rng = np.random.default_rng(seed)
    frames = [sp.SensorFrame((first_seq + i) & 0xFFFF, (first_ts + i * period_us) & 0xFFFFFFFF,
                             int(rng.integers(0, 0x40)), int(rng.integers(0, 0x10000)), int(rng.integers(0, 1024)),
                             tuple(int(v) for v in rng.integers(-32768, 32768, 3)),
                             tuple(int(v) for v in rng.integers(-32768, 32768, 3)), 0) for i in range(n)]
    stream = b"".join(c_encode(lib, f) for f in frames)
    assert stream == b"".join(sp.encode_frame(f) for f in frames)
    parser, got = sp.FrameParser(), []
    for i in range(0, len(stream), chunk):
        got += parser.feed(stream[i:i + chunk])
    assert got == frames and parser.counters == sp.ParserCounters(frames=n)
    assert any(f.seq == 0 for f in got[1:]) or first_seq + n <= 0x10000  # last seq ≤ 0xFFFF: no wrap
    deltas = {(b.timestamp_us - a.timestamp_us) & 0xFFFFFFFF for a, b in zip(got, got[1:])}
    assert deltas == {period_us}


@settings(max_examples=400, deadline=None)
@given(frame=frames_st, following=frames_st,
       bits=st.lists(st.integers(3 * 8, 33 * 8 - 1), min_size=1, max_size=3, unique=True))
def test_corrupted_c_frames_are_rejected_as_crc_errors_and_the_next_frame_survives(lib, frame, following, bits):
    """1-3 flipped bits after the length byte: CRC-16/CCITT catches every such error."""
    wire = bytearray(c_encode(lib, frame))
    for bit in bits:
        wire[bit // 8] ^= 1 << (bit % 8)
    parser = sp.FrameParser()
    assert parser.feed(bytes(wire)) == []
    assert parser.counters.crc_errors >= 1 and parser.counters.frames == 0
    assert parser.feed(c_encode(lib, following)) == [following]


@settings(max_examples=200, deadline=None)
@given(frame=frames_st, bit=st.integers(0, 3 * 8 - 1))
def test_corrupted_sync_or_length_is_never_a_frame(lib, frame, bit):
    wire = bytearray(c_encode(lib, frame))
    wire[bit // 8] ^= 1 << (bit % 8)
    parser = sp.FrameParser()
    assert parser.feed(bytes(wire)) == []
    assert parser.counters.frames == 0
    if bit >= 16:
        assert parser.counters.length_errors >= 1


# ---- sensor_unit.c: the data path from registers to frame -------------------------------------------

def test_every_mounting_is_a_proper_rotation(lib):
    for index in range(MOUNT_COUNT):
        rot = np.array(fw.mounting(lib, index)).reshape(3, 3)
        assert set(np.abs(rot).sum(axis=0)) == {1} and set(np.abs(rot).sum(axis=1)) == {1}, index
        assert round(np.linalg.det(rot)) == 1, f"mounting {index} is a reflection, not a rotation"


def test_mountings_put_gravity_up_and_the_toes_forward(lib):
    """Standing still, each mounting's sensor reading must come out as +1 g on body z."""
    one_g = 2048  # LSB at +-16 g
    # sensor-frame gravity reaction and toe direction for each documented mounting (docs/firmware.md)
    cases = {0: ((0, 0, one_g), (1, 0, 0)), 1: ((0, 0, one_g), (-1, 0, 0)),
             2: ((0, one_g, 0), (1, 0, 0)), 3: ((0, -one_g, 0), (1, 0, 0))}
    assert len(cases) == MOUNT_COUNT
    for index, (gravity, toes) in cases.items():
        rot = np.array(fw.mounting(lib, index)).reshape(3, 3)
        assert tuple(rot @ np.array(gravity)) == (0, 0, one_g), index
        assert tuple(rot @ np.array(toes)) == (1, 0, 0), index


def python_imu_to_body(raw, rot):
    r = np.array(rot, dtype=np.int64).reshape(3, 3)
    acc = np.minimum(r @ np.array(raw[:3], dtype=np.int64), 32767)
    gyro = np.minimum(r @ np.array(raw[3:], dtype=np.int64), 32767)
    scale = lambda v, q: tuple(int((int(x) * q + 32768) >> 16) for x in v)  # noqa: E731
    return scale(acc, 31381), scale(gyro, 39961), any(v in (-32768, 32767) for v in raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.tuples(*[I16] * 6), index=st.integers(0, 3))
def test_imu_rotation_scaling_and_saturation_flag(lib, raw, index):
    rot = fw.mounting(lib, index)
    acc, gyro = (ctypes.c_int16 * 3)(), (ctypes.c_int16 * 3)()
    sat = lib.fes_imu_to_body((ctypes.c_int16 * 6)(*raw), (ctypes.c_int8 * 9)(*rot), acc, gyro)
    want_acc, want_gyro, want_sat = python_imu_to_body(raw, rot)
    assert (tuple(acc), tuple(gyro), bool(sat)) == (want_acc, want_gyro, want_sat)
    # the scaling is the MPU-6050's at +-16 g / +-2000 deg/s: rounding (0.5) plus the Q16
    # constant's error (< 0.25 count at full scale)
    r = np.array(rot).reshape(3, 3)
    if not want_sat:
        assert np.all(np.abs(np.array(acc) - r @ np.array(raw[:3]) * 980.665 / 2048) <= 0.75)
        assert np.all(np.abs(np.array(gyro) - r @ np.array(raw[3:]) * 10 / 16.4) <= 0.75)


def test_one_g_and_full_scale_rates_in_wire_units(lib):
    acc, gyro = (ctypes.c_int16 * 3)(), (ctypes.c_int16 * 3)()
    dorsum = (ctypes.c_int8 * 9)(*fw.mounting(lib, 0))
    sat = lib.fes_imu_to_body((ctypes.c_int16 * 6)(0, 0, 2048, 164, 0, -1640), dorsum, acc, gyro)
    assert tuple(acc) == (0, 0, 981) and tuple(gyro) == (100, 0, -1000) and sat == 0  # 9.81 m/s^2; 10, -100 deg/s
    sat = lib.fes_imu_to_body((ctypes.c_int16 * 6)(0, 0, 0, 0, -32768, 0), (ctypes.c_int8 * 9)(*fw.mounting(lib, 1)),
                              acc, gyro)
    assert sat == 1 and tuple(gyro) == (0, 19980, 0)  # -(-32768) clipped to 32767, flagged


def python_fsr(counts, table):
    if counts <= table[0][0]:
        return table[0][1]
    for (c0, f0), (c1, f1) in zip(table, table[1:]):
        if counts <= c1:
            num, den = (f1 - f0) * (counts - c0), c1 - c0
            return f0 + ((num + den // 2) // den if num >= 0 else -((-num + den // 2) // den))
    return table[-1][1]


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(0, 1023), min_size=1, max_size=20, unique=True),
       forces=st.lists(U16, min_size=20, max_size=20), probe=st.integers(0, 1023))
def test_fsr_lookup_interpolates_and_clamps(lib, counts, forces, probe):
    table = list(zip(sorted(counts), forces))
    points = (fw.FsrPoint * len(table))(*[fw.FsrPoint(c, f) for c, f in table])
    got = lib.fes_fsr_force_dn(probe, points, len(table))
    assert got == python_fsr(probe, table)
    assert min(forces[:len(table)]) <= got <= max(forces[:len(table)])


def test_shipped_fsr_table_and_heel_fault_rails(lib):
    table = fw.fsr_table(lib)
    assert [c for c, _ in table] == sorted({c for c, _ in table}), "counts must increase strictly"
    forces = [f for _, f in table]
    assert forces == sorted(forces, reverse=True), "more load, lower voltage: force falls with counts"
    assert table[-1][1] == 0, "the unloaded end must read 0 N"
    short_max = ctypes.c_uint16.in_dll(lib, "fes_fsr_short_max_counts").value
    open_min = ctypes.c_uint16.in_dll(lib, "fes_fsr_open_min_counts").value
    assert short_max < table[0][0] and table[-1][0] < open_min
    faults = [c for c in range(1024) if lib.fes_heel_fault(c)]
    assert faults == [*range(0, short_max + 1), *range(open_min, 1024)]


@settings(max_examples=300, deadline=None)
@given(heel_fitted=st.booleans(), counts=st.integers(0, 1023), imu_ok=st.booleans(),
       raw=st.tuples(*[I16] * 6), index=st.integers(0, 3), seq=U16, ts=U32, low_battery=st.booleans())
def test_unit_frame_flags_and_absent_channels(lib, heel_fitted, counts, imu_ok, raw, index, seq, ts, low_battery):
    rot = fw.mounting(lib, index)
    sample = fw.UnitSample(heel_fitted, counts, imu_ok, (ctypes.c_int16 * 6)(*raw), low_battery)
    out = fw.Frame()
    lib.fes_unit_frame(ctypes.byref(sample), (ctypes.c_int8 * 9)(*rot), seq, ts, ctypes.byref(out))
    wire = fw.encode(lib, out.seq, out.timestamp_us, out.flags, out.heel_force, out.heel_raw, out.acc, out.gyro,
                     out.tilt)
    (frame,) = sp.FrameParser().feed(wire)
    assert (frame.seq, frame.timestamp_us, frame.tilt) == (seq, ts, 0)
    assert frame.flags & ~0x3B == 0, "only heel present/fault, IMU present/saturated and low battery are ever set"
    assert bool(frame.flags & sp.FLAG_LOW_BATTERY) == low_battery
    fault = counts <= 3 or counts >= 1010
    assert bool(frame.flags & sp.FLAG_HEEL_PRESENT) == heel_fitted
    assert bool(frame.flags & sp.FLAG_HEEL_FAULT) == (heel_fitted and fault)
    if heel_fitted:
        assert frame.heel_raw == counts
        assert frame.heel_force == (0 if fault else python_fsr(counts, fw.fsr_table(lib)))
    else:
        assert (frame.heel_force, frame.heel_raw) == (0, 0)
    assert bool(frame.flags & sp.FLAG_IMU_PRESENT) == imu_ok
    if imu_ok:
        acc, gyro, sat = python_imu_to_body(raw, rot)
        assert (frame.acc, frame.gyro, bool(frame.flags & sp.FLAG_IMU_SATURATED)) == (acc, gyro, sat)
    else:
        assert frame.acc == frame.gyro == (0, 0, 0) and not frame.flags & sp.FLAG_IMU_SATURATED
