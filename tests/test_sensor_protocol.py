"""Sensor wire protocol: worked bytes, encoder agreement, and a fuzzed parser."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.drivers import sensor_protocol as sp

WORKED = bytes.fromhex("A5 5A 1C 01 01 01 00 10 27 00 00 03 14 03 14"
                       " 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 95 FD")


def test_worked_example_bytes():
    frame = sp.SensorFrame(1, 10_000, sp.FLAG_HEEL_PRESENT, 5123, 5123, (0, 0, 0), (0, 0, 0), 0)
    assert sp.encode_frame(frame) == WORKED
    assert sp.crc16_ccitt(b"123456789") == 0x29B1
    (parsed,) = sp.FrameParser().feed(WORKED)
    assert parsed == frame and abs(parsed.heel_n - 512.3) < 1e-9


def test_units_roundtrip_and_saturation():
    f = sp.frame_from_units(7, 123, heel_n=400.04, acc_ms2=(1.0, -2.0, 9.81), gyro_dps=(5000.0, -12.3, 0.0))
    assert f.heel_force == 4000 and f.acc == (100, -200, 981) and f.gyro == (32767, -123, 0)
    assert f.flags & sp.FLAG_IMU_SATURATED and f.flags & sp.FLAG_HEEL_PRESENT
    assert not sp.frame_from_units(0, 0, heel_n=1.0).flags & sp.FLAG_IMU_PRESENT


frames_st = st.lists(st.builds(
    sp.SensorFrame, seq=st.integers(0, 0xFFFF), timestamp_us=st.integers(0, 0xFFFFFFFF),
    flags=st.integers(0, 0x3F), heel_force=st.integers(0, 0xFFFF), heel_raw=st.integers(0, 0xFFFF),
    acc=st.tuples(*[st.integers(-32768, 32767)] * 3), gyro=st.tuples(*[st.integers(-32768, 32767)] * 3),
    tilt=st.integers(-32768, 32767)), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(frames=frames_st, junk=st.lists(st.binary(max_size=50), max_size=30),
       chunk=st.integers(1, 200))
def test_parser_recovers_every_intact_frame_between_garbage(frames, junk, chunk):
    pieces = []
    for i, f in enumerate(frames):
        if i < len(junk):
            # garbage that cannot complete a frame prefix by accident: no sync byte in it
            pieces.append(junk[i].replace(b"\xa5", b"\x00"))
        pieces.append(sp.encode_frame(f))
    data = b"".join(pieces)
    parser = sp.FrameParser()
    out = []
    for start in range(0, len(data), chunk):
        out += parser.feed(data[start:start + chunk])
    assert out == frames
    assert parser.counters.frames == len(frames)
    assert parser.counters.garbage_bytes == sum(len(p) for p in pieces) - len(frames) * sp.FRAME_LEN


@settings(max_examples=300, deadline=None)
@given(frames=frames_st, flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=5))
def test_parser_never_accepts_a_corrupted_frame(frames, flips):
    data = bytearray(b"".join(sp.encode_frame(f) for f in frames))
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    out = sp.FrameParser().feed(bytes(data))
    # every accepted frame re-encodes to bytes present in the stream with a valid CRC, and a
    # frame whose own bytes were hit is never accepted unless the flips cancelled out
    hit = {(pos % len(data)) // sp.FRAME_LEN for pos, _ in flips}
    intact = [f for i, f in enumerate(frames) if i not in hit]
    for f in intact:
        assert f in out
    for f in out:
        assert sp.encode_frame(f) in bytes(data)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2000))
def test_parser_survives_random_bytes(data):
    parser = sp.FrameParser()
    for f in parser.feed(data):
        assert sp.encode_frame(f) in data
    c = parser.counters
    assert c.garbage_bytes <= len(data)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(0, 33), st.integers(0, 2**32 - 1))
def test_row_crc_equals_the_bytewise_crc(rows, width, seed):
    """Two bytes per look-up (encode_frames' checksum) gives crc16_ccitt of each row, odd and
    even widths, empty rows too."""
    data = np.random.default_rng(seed).integers(0, 256, (rows, width), dtype=np.uint8)
    got = sp.crc16_rows(data)
    assert got.dtype == np.uint16
    assert got.tolist() == [sp.crc16_ccitt(row.tobytes()) for row in data]


def test_vectorised_encoder_matches_single_frames():
    rng = np.random.default_rng(3)
    n = 64
    flags, heel, acc, gyro = sp.counts_from_units(rng.uniform(0, 900, n), rng.normal(0, 50, (n, 3)),
                                                  rng.normal(0, 2000, (n, 3)))
    seq, ts = np.arange(n) + 65500, np.arange(n) * 1000 + 2**32 - 5000
    frames = sp.encode_frames(seq, ts, flags, heel, acc, gyro)
    for i in range(n):
        single = sp.SensorFrame(int(seq[i]) & 0xFFFF, int(ts[i]) & 0xFFFFFFFF, int(flags[i]), int(heel[i]),
                                int(heel[i]), tuple(map(int, acc[i])), tuple(map(int, gyro[i])), 0)
        assert frames[i].tobytes() == sp.encode_frame(single)
