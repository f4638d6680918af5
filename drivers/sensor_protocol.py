"""The sensor unit's binary frame (version 1). Full description: docs/protocol.md.

Little-endian. One frame is 33 bytes::

    off size field            unit / scaling
    0   2    sync              0xA5 0x5A
    2   1    length            payload bytes, 28 in version 1
    3   1    version           1
    4   1    flags             FLAG_* bits below
    5   2    seq               uint16, +1 per frame, wraps
    7   4    timestamp_us      uint32 device clock, µs, wraps
    11  2    heel_force        uint16, 0.1 N per count
    13  2    heel_raw          uint16, ADC counts (for calibration only)
    15  6    acc x, y, z       int16 each, 0.01 m/s² per count (gravity included)
    21  6    gyro x, y, z      int16 each, 0.1 deg/s per count
    27  2    tilt              int16, 0.01 deg per count (sensors that compute it)
    29  2    reserved          0
    31  2    crc               CRC-16/CCITT-FALSE over bytes 2..30 (length + payload)

IMU axes are the body frame of the sensor unit: x anterior, y to the subject's
left, z up when standing, right-handed; the toe-up sagittal rotation rate is
therefore ``-gyro_y``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

SYNC = b"\xA5\x5A"
PAYLOAD_LEN = 28
FRAME_LEN = 3 + PAYLOAD_LEN + 2
VERSION = 1

FLAG_HEEL_PRESENT = 0x01
FLAG_IMU_PRESENT = 0x02
FLAG_TILT_PRESENT = 0x04
FLAG_IMU_SATURATED = 0x08
FLAG_HEEL_FAULT = 0x10
FLAG_LOW_BATTERY = 0x20

#: The reference sensor unit's baud (firmware/, docs/firmware.md): a 16 MHz AVR makes
#: 1000000 Bd exactly (921600 would be 8.5 % off), and 1 kHz frames use a third of it.
SENSOR_BAUD_DEFAULT = 1_000_000

HEEL_N_PER_COUNT = 0.1
ACC_MS2_PER_COUNT = 0.01
GYRO_DPS_PER_COUNT = 0.1
TILT_DEG_PER_COUNT = 0.01

_PAYLOAD = struct.Struct("<BBHIHH3h3hhH")
assert _PAYLOAD.size == PAYLOAD_LEN


def crc16_ccitt(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final xor.

    ``crc`` continues a running CRC. Returns 0..0xFFFF; never raises for bytes-like input."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


@dataclass
class SensorFrame:
    """One decoded frame, in raw counts (scale with the *_PER_COUNT constants).

    ``seq`` 0..0xFFFF (wraps), ``timestamp_us`` device clock µs 0..0xFFFFFFFF (wraps),
    ``flags`` FLAG_* bits, ``heel_force`` / ``heel_raw`` 0..0xFFFF, ``acc`` / ``gyro`` /
    ``tilt`` int16 counts in the sensor's body frame (module doc). A channel whose FLAG_*_PRESENT
    bit is clear carries zeros that mean nothing.
    """

    seq: int
    timestamp_us: int
    flags: int = FLAG_HEEL_PRESENT | FLAG_IMU_PRESENT
    heel_force: int = 0
    heel_raw: int = 0
    acc: tuple[int, int, int] = (0, 0, 0)
    gyro: tuple[int, int, int] = (0, 0, 0)
    tilt: int = 0
    version: int = VERSION

    @property
    def heel_n(self) -> float:
        """The heel force in N (0.1 N per count)."""
        return self.heel_force * HEEL_N_PER_COUNT


def _clip(value: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(round(value))))


def frame_from_units(seq: int, timestamp_us: int, *, heel_n: float | None = None,
                     acc_ms2=None, gyro_dps=None, tilt_deg: float | None = None,
                     extra_flags: int = 0) -> SensorFrame:
    """Build a frame from physical units; absent channels (None) are flagged absent.

    Values beyond a field's range are clipped to it and the frame is flagged
    saturated, as a real IMU front end would do.
    """
    flags = extra_flags
    heel = raw = 0
    acc = gyro = (0, 0, 0)
    tilt = 0
    if heel_n is not None:
        flags |= FLAG_HEEL_PRESENT
        heel = _clip(heel_n / HEEL_N_PER_COUNT, 0, 0xFFFF)
        raw = heel
    if acc_ms2 is not None and gyro_dps is not None:
        flags |= FLAG_IMU_PRESENT
        counts = [a / ACC_MS2_PER_COUNT for a in acc_ms2] + [g / GYRO_DPS_PER_COUNT for g in gyro_dps]
        if any(abs(c) > 32767 for c in counts):
            flags |= FLAG_IMU_SATURATED
        clipped = [_clip(c, -32768, 32767) for c in counts]
        acc, gyro = tuple(clipped[:3]), tuple(clipped[3:])
    if tilt_deg is not None:
        flags |= FLAG_TILT_PRESENT
        tilt = _clip(tilt_deg / TILT_DEG_PER_COUNT, -32768, 32767)
    return SensorFrame(seq & 0xFFFF, timestamp_us & 0xFFFFFFFF, flags, heel, raw, acc, gyro, tilt)


def encode_frame(frame: SensorFrame) -> bytes:
    """Frame bytes ready for the wire (FRAME_LEN bytes, CRC included). ``seq`` and
    ``timestamp_us`` wrap; raises struct.error for another field outside its range."""
    payload = _PAYLOAD.pack(frame.version, frame.flags, frame.seq & 0xFFFF,
                            frame.timestamp_us & 0xFFFFFFFF, frame.heel_force, frame.heel_raw,
                            *frame.acc, *frame.gyro, frame.tilt, 0)
    body = bytes([PAYLOAD_LEN]) + payload
    return SYNC + body + crc16_ccitt(body).to_bytes(2, "little")


@dataclass
class ParserCounters:
    """What a :class:`FrameParser` has seen: whole valid ``frames``, frames dropped for a bad
    ``crc_errors`` or a wrong ``length_errors`` byte, and ``garbage_bytes`` skipped (every byte
    not part of a valid frame). Counts only grow."""

    frames: int = 0
    crc_errors: int = 0
    length_errors: int = 0
    garbage_bytes: int = 0


@dataclass
class FrameParser:
    """Incremental parser: feed any bytes, get whole, CRC-checked frames back.

    It never blocks and never raises on bad input. After garbage it resynchronises
    on the next sync pattern; a frame with a bad CRC is dropped (its first byte is
    skipped and scanning resumes). Every skipped byte counts in ``garbage_bytes``.
    """

    counters: ParserCounters = field(default_factory=ParserCounters)
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[SensorFrame]:
        """Append ``data`` (any split of the stream) and return every whole, CRC-checked frame
        now complete, in order; an incomplete tail is kept for the next call. Never raises."""
        self._buf += data
        frames = []
        while True:
            frame = self.next_frame()
            if frame is None:
                return frames
            frames.append(frame)

    def next_frame(self) -> SensorFrame | None:
        """Parse one frame from what is buffered, or return None when more bytes are needed."""
        buf, c = self._buf, self.counters
        i = 0
        try:
            while len(buf) - i >= 3:
                if buf[i] != 0xA5 or buf[i + 1] != 0x5A:
                    c.garbage_bytes += 1
                    i += 1
                    continue
                length = buf[i + 2]
                if length != PAYLOAD_LEN:
                    c.length_errors += 1
                    c.garbage_bytes += 1
                    i += 1
                    continue
                if len(buf) - i < FRAME_LEN:
                    return None
                end = i + 3 + PAYLOAD_LEN
                if crc16_ccitt(buf[i + 2:end]) != buf[end] | (buf[end + 1] << 8):
                    c.crc_errors += 1
                    c.garbage_bytes += 1
                    i += 1
                    continue
                fields = _PAYLOAD.unpack_from(buf, i + 3)
                i += FRAME_LEN
                c.frames += 1
                version, flags, seq, ts, heel, raw, ax, ay, az, gx, gy, gz, tilt, _ = fields
                return SensorFrame(seq, ts, flags, heel, raw, (ax, ay, az), (gx, gy, gz), tilt, version)
            return None
        finally:
            del buf[:i]


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
        table.append(crc)
    return table


_CRC_TABLE = _crc16_table()
_CRC_WORD_TABLE = None       # numpy uint16[65536], made on first use (:func:`_crc16_word_table`)


def _crc16_word_table():
    """CRC-16/CCITT-FALSE two bytes at a time: ``T[r ^ (b0 << 8 | b1)]`` is the register after
    the bytes ``b0, b1`` from register ``r`` (the register is 16 bits wide: two bytes shift all
    of it out, so the input and the register meet in one XOR). 128 kB, built once."""
    global _CRC_WORD_TABLE
    if _CRC_WORD_TABLE is None:
        import numpy as np
        t8 = np.array(_CRC_TABLE, dtype=np.uint32)
        x = np.arange(1 << 16, dtype=np.uint32)
        for _ in range(2):
            x = ((x << 8) & 0xFFFF) ^ t8[x >> 8]
        _CRC_WORD_TABLE = x.astype(np.uint16)
    return _CRC_WORD_TABLE


def crc16_rows(data):
    """:func:`crc16_ccitt` of every row of an ``(n, m)`` uint8 array (numpy), as uint16[n]:
    two bytes per table look-up (:func:`_crc16_word_table`), a last odd byte with the byte
    table; ~2.6x faster than a byte per step for the 29 bytes of a frame."""
    import numpy as np
    data = np.asarray(data, dtype=np.uint8)
    n, m = data.shape
    crc = np.full(n, 0xFFFF, dtype=np.uint16)
    pairs = m // 2
    if pairs:
        words = np.ascontiguousarray(data[:, :2 * pairs]).view(">u2").astype(np.uint16)   # b0 << 8 | b1
        table = _crc16_word_table()
        for k in range(pairs):
            np.bitwise_xor(crc, words[:, k], out=crc)
            crc = table.take(crc)
    if m % 2:
        table8 = np.array(_CRC_TABLE, dtype=np.uint16)
        crc = ((crc << 8) & 0xFFFF) ^ table8[((crc >> 8) ^ data[:, m - 1]) & 0xFF]
    return crc


def encode_frames(seq, timestamp_us, flags, heel_force, acc, gyro, tilt=None, heel_raw=None):
    """Many frames at once (numpy), byte-identical to :func:`encode_frame` per frame.

    Arguments are arrays of raw counts of one length n (acc and gyro shaped (n, 3)).
    Returns an (n, FRAME_LEN) uint8 array; ``.tobytes()`` is the wire stream. ``seq`` and
    ``timestamp_us`` wrap like the device's; other counts are stored as given (the caller
    keeps them in range, e.g. with :func:`counts_from_units`). Raises ValueError when the
    arrays' lengths or shapes disagree.
    """
    import numpy as np

    n = len(seq)
    dtype = np.dtype([("sync", "u1", 2), ("length", "u1"), ("version", "u1"), ("flags", "u1"),
                      ("seq", "<u2"), ("ts", "<u4"), ("heel", "<u2"), ("raw", "<u2"),
                      ("acc", "<i2", 3), ("gyro", "<i2", 3), ("tilt", "<i2"), ("reserved", "<u2"),
                      ("crc", "<u2")])
    assert dtype.itemsize == FRAME_LEN
    rec = np.zeros(n, dtype=dtype)
    rec["sync"] = (0xA5, 0x5A)
    rec["length"] = PAYLOAD_LEN
    rec["version"] = VERSION
    rec["flags"] = flags
    rec["seq"] = np.asarray(seq) & 0xFFFF
    rec["ts"] = np.asarray(timestamp_us, dtype=np.int64) & 0xFFFFFFFF
    rec["heel"] = heel_force
    rec["raw"] = heel_force if heel_raw is None else heel_raw
    rec["acc"] = acc
    rec["gyro"] = gyro
    rec["tilt"] = 0 if tilt is None else tilt
    raw = rec.view(np.uint8).reshape(n, FRAME_LEN)
    rec["crc"] = crc16_rows(raw[:, 2:3 + PAYLOAD_LEN])
    return raw


def counts_from_units(heel_n=None, acc_ms2=None, gyro_dps=None, n: int | None = None):
    """Raw counts and flags (numpy arrays) from physical units; None = channel absent.

    Out-of-range IMU values are clipped and flagged FLAG_IMU_SATURATED per sample; the heel
    force is clipped to 0..0xFFFF counts. N, m/s² and deg/s in (arrays of n and (n, 3)); out
    ``(flags uint8 (n,), heel (n,), acc (n, 3), gyro (n, 3))`` int64 counts. ``n`` defaults to
    the length of the first channel given; the IMU counts only when both acc and gyro are.
    """
    import numpy as np

    if n is None:
        n = len(heel_n) if heel_n is not None else len(acc_ms2)
    flags = np.zeros(n, dtype=np.uint8)
    heel = np.zeros(n, dtype=np.int64)
    acc = np.zeros((n, 3), dtype=np.int64)
    gyro = np.zeros((n, 3), dtype=np.int64)
    if heel_n is not None:
        flags |= FLAG_HEEL_PRESENT
        heel = np.clip(np.rint(np.asarray(heel_n) / HEEL_N_PER_COUNT), 0, 0xFFFF).astype(np.int64)
    if acc_ms2 is not None and gyro_dps is not None:
        flags |= FLAG_IMU_PRESENT
        a = np.rint(np.asarray(acc_ms2) / ACC_MS2_PER_COUNT)
        g = np.rint(np.asarray(gyro_dps) / GYRO_DPS_PER_COUNT)
        saturated = (np.abs(a) > 32767).any(axis=1) | (np.abs(g) > 32767).any(axis=1)
        flags[saturated] |= FLAG_IMU_SATURATED
        acc = np.clip(a, -32768, 32767).astype(np.int64)
        gyro = np.clip(g, -32768, 32767).astype(np.int64)
    return flags, heel, acc, gyro
