"""ScienceMode4 (Hasomed P24) wire codec: frames, stuffing, CRC, packet numbers, payloads. No I/O.

Over 400 lines: one wire protocol's codec, every command's payload in one place, in the order of
the protocol document.

Frame on the wire (see docs/sciencemode4.md and /work/shared/protocols/sciencemode4.md)::

    F0 | 81 L1^55 81 L0^55 | 81 C1^55 81 C0^55 | prefix (2 B) | data... | 0F

* **Stuffing.** A byte equal to F0, 0F or 81 in the prefix or the data is sent as
  ``81, b^0x55``. The four length and CRC bytes are *always* sent that way, so the header is
  9 bytes and its escaped bytes may themselves be F0 or 0F; the decoder reads it by position.
* **Length** (L1 L0): 16-bit big-endian number of bytes on the wire, start and stop included,
  after stuffing. 12 for a packet without data, at most 1200.
* **CRC** (C1 C0): CRC-16/XMODEM (poly 0x1021, init 0, no reflection, no final XOR) over the
  *stuffed* prefix and data, big-endian.
* **Prefix:** big-endian ``nr << 10 | cmd`` with packet number ``nr`` 0..63 and command
  0..1023. An acknowledgement is ``cmd + 1`` with the request's ``nr``.

Units in this module: current in mA (0.5 mA steps on the wire, code ``2*mA + 300``), point
durations in µs, periods in ms. Channels are 1-based in the Python API (channel 1 = mask
bit 0). Builders validate their arguments and raise ``ValueError`` naming the value and the
allowed range *before* producing any bytes. ``FrameDecoder`` never raises on bad input.
"""
from __future__ import annotations

import math
from enum import IntEnum
from typing import Iterable, Mapping, NamedTuple, Sequence

from .framing import START, STOP, STUFF, STUFF_KEY, DelimitedFrameDecoder, stuff, unstuff


HEADER_BYTES = 9                 #: F0 + four escaped length/CRC bytes
MIN_PACKET_BYTES = 12            #: header + 2-byte prefix + stop, no data
MAX_PACKET_BYTES = 1200
MAX_PACKET_NUMBER = 63           #: 6 bits
MAX_COMMAND = 1023               #: 10 bits

CHANNELS = 8
MAX_POINTS = 16
MAX_POINT_US = 4095              #: 12 bits
POINT_CODE_MAX_MA = 150.0        #: the code range is ±150 mA ...
OUTPUT_MAX_MA = 130.0            #: ... the output stage delivers 0..130 mA (the C library refuses more)
MIN_PERIOD_MS = 0.5
MAX_PERIOD_MS = 16383.5          #: 15-bit ticks of 0.5 ms (f = 0)
MAX_RAMP = 15
DUTY_LIMIT = 1000                #: Σ over channels of (Σ point µs + 60) / period_ms must stay below this
CURRENT_DATA_CHANNELS = 4        #: data selection of ml_get_current_data: channel errors
DEVICE_ID_CHARS = 10


class Command(IntEnum):
    """Command ids. An acknowledgement id is the request id + 1."""
    LL_INIT = 0
    LL_INIT_ACK = 1
    LL_CHANNEL_CONFIG = 2
    LL_CHANNEL_CONFIG_ACK = 3
    LL_STOP = 4
    LL_STOP_ACK = 5
    ML_INIT = 30
    ML_INIT_ACK = 31
    ML_UPDATE = 32
    ML_UPDATE_ACK = 33
    ML_STOP = 34
    ML_STOP_ACK = 35
    ML_GET_CURRENT_DATA = 36
    ML_GET_CURRENT_DATA_ACK = 37
    GET_DEVICE_ID = 52
    GET_DEVICE_ID_ACK = 53
    GET_BATTERY_STATUS = 54
    GET_BATTERY_STATUS_ACK = 55
    RESET = 58
    RESET_ACK = 59
    GET_STIM_STATUS = 62
    GET_STIM_STATUS_ACK = 63
    GENERAL_ERROR = 66               # device -> host: result (e.g. 1 transfer error)
    UNKNOWN_COMMAND = 67             # device -> host: result 11
    GET_EXTENDED_VERSION = 68
    GET_EXTENDED_VERSION_ACK = 69


#: request id -> acknowledgement id, for every request the device acknowledges
ACKNOWLEDGED = {cmd: Command(cmd + 1) for cmd in (
    Command.LL_INIT, Command.LL_CHANNEL_CONFIG, Command.LL_STOP, Command.ML_INIT, Command.ML_UPDATE,
    Command.ML_STOP, Command.ML_GET_CURRENT_DATA, Command.GET_DEVICE_ID, Command.GET_BATTERY_STATUS,
    Command.RESET, Command.GET_STIM_STATUS, Command.GET_EXTENDED_VERSION)}


class Result(IntEnum):
    """Result byte of an acknowledgement (unsigned, 0 = ok)."""
    OK = 0
    TRANSFER_ERROR = 1          # CRC or length
    PARAMETER_ERROR = 2
    PROTOCOL_ERROR = 3
    UC_STIM_TIMEOUT = 4
    NOT_INITIALIZED = 7         # not initialised, or the wrong level (low/mid mixed)
    HV_ERROR = 8
    ELECTRODE_ERROR = 10
    INVALID_COMMAND = 11
    PULSE_TIMEOUT = 16
    BUSY = 21
    PULSE_LOW_CURRENT = 28


RESULT_TEXT = {
    0: "ok", 1: "transfer error (CRC/length)", 2: "parameter error", 3: "protocol error",
    4: "stimulation µC timeout", 7: "not initialised or wrong level", 8: "high-voltage error",
    10: "electrode error", 11: "invalid command", 16: "pulse timeout", 21: "busy",
    28: "pulse low current",
}


def result_text(result: int) -> str:
    """Human text of a result code ("unknown result N" for codes the protocol notes do not list)."""
    return RESULT_TEXT.get(result, f"unknown result {result}")


class ChannelError(IntEnum):
    """One nibble of ml_get_current_data's acknowledgement, per channel."""
    OK = 0
    ELECTRODE = 1
    PULSE_TIMEOUT = 2
    LOW_CURRENT = 3


class StimStatus(IntEnum):
    """Second data byte of GetStimStatusAck."""
    IDLE = 0
    LL_INITIALIZED = 1
    ML_INITIALIZED = 2
    ML_RUNNING = 3


class HighVoltage(IntEnum):
    """Third data byte of GetStimStatusAck."""
    OFF = 1
    V150 = 6


class Packet(NamedTuple):
    """A decoded frame: packet number ``nr`` (0-63), command id, unstuffed data."""
    nr: int
    cmd: int
    data: bytes


class RejectedFrame(NamedTuple):
    """A frame the decoder refused. ``nr``/``cmd`` are None when they could not be read."""
    reason: str             # "crc" or "length"
    nr: int | None
    cmd: int | None


# --------------------------------------------------------------------------- CRC, stuffing

def _make_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16_xmodem(data: Iterable[int]) -> int:
    """CRC-16/XMODEM: polynomial 0x1021, init 0, no reflection, no final XOR (check 0x31C3)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def _escaped(byte: int) -> bytes:
    return bytes((STUFF, byte ^ STUFF_KEY))


def check_packet_number(nr: int) -> int:
    if not isinstance(nr, int) or isinstance(nr, bool) or not 0 <= nr <= MAX_PACKET_NUMBER:
        raise ValueError(f"packet number {nr!r}; allowed 0..{MAX_PACKET_NUMBER}")
    return nr


def next_packet_number(nr: int) -> int:
    """The packet number after ``nr`` (0..63, wrapping)."""
    return (check_packet_number(nr) + 1) % (MAX_PACKET_NUMBER + 1)


def encode_frame(nr: int, cmd: int, data: bytes | Iterable[int] = b"") -> bytes:
    """One complete frame for packet number ``nr`` (0-63), command ``cmd`` and payload ``data``.

    Invariant: ``FrameDecoder().feed(encode_frame(n, c, d)) == [Packet(n, c, bytes(d))]``.
    Raises ValueError for a packet number or command out of range, or a frame longer than
    1200 bytes on the wire.
    """
    check_packet_number(nr)
    if not isinstance(cmd, int) or not 0 <= cmd <= MAX_COMMAND:
        raise ValueError(f"command {cmd!r}; allowed 0..{MAX_COMMAND}")
    prefix = (nr << 10) | cmd
    body = stuff(bytes((prefix >> 8, prefix & 0xFF)) + bytes(data))
    length = HEADER_BYTES + len(body) + 1
    if length > MAX_PACKET_BYTES:
        raise ValueError(f"frame is {length} bytes on the wire; allowed at most {MAX_PACKET_BYTES}")
    crc = crc16_xmodem(body)
    return (bytes((START,)) + _escaped(length >> 8) + _escaped(length & 0xFF)
            + _escaped(crc >> 8) + _escaped(crc & 0xFF) + body + bytes((STOP,)))


# --------------------------------------------------------------------------- decoder

class FrameDecoder(DelimitedFrameDecoder):
    """Incremental frame decoder: ``feed(bytes) -> list[Packet]``. Never raises on bad input.

    A candidate starts at an F0 followed by the fixed header (81 at offsets 1, 3, 5, 7). It is
    rejected as soon as it is known to be bad: a length outside 12..1200, a raw (unescaped) F0
    or 0F before the position the length gives, no 0F at that position, an unstuffing error
    (``length_errors``) or a CRC mismatch (``crc_errors``). A rejected candidate gives up only
    its first byte, so a real frame behind a false start is still found; a frame is therefore
    never held back waiting for bytes that a corrupted length promised. ``garbage_bytes``
    counts every byte discarded outside a valid frame. ``on_reject`` (optional) is called with
    a ``RejectedFrame`` for each CRC/length rejection of a complete-looking header.
    """

    REJECTED = RejectedFrame

    def _header_of(self, stuffed_body: bytes) -> tuple[int | None, int | None]:
        head = unstuff(stuffed_body[:4]) or unstuff(stuffed_body[:3]) or unstuff(stuffed_body[:2]) or b""
        if len(head) < 2:
            return None, None
        prefix = (head[0] << 8) | head[1]
        return prefix >> 10, prefix & MAX_COMMAND

    def _parse_candidate(self, buf: bytearray) -> tuple[str, int, Packet | None]:
        """Try a frame starting at buf[0] (== F0). Returns (status, bytes used, packet)."""
        n = len(buf)
        for offset in (1, 3, 5, 7):
            if n <= offset:
                return "incomplete", 0, None
            if buf[offset] != STUFF:
                return "bad", 0, None
        if n < HEADER_BYTES:
            return "incomplete", 0, None
        length = ((buf[2] ^ STUFF_KEY) << 8) | (buf[4] ^ STUFF_KEY)
        crc = ((buf[6] ^ STUFF_KEY) << 8) | (buf[8] ^ STUFF_KEY)
        if not MIN_PACKET_BYTES <= length <= MAX_PACKET_BYTES:
            return self._reject("length", bytes(buf[HEADER_BYTES:min(n, HEADER_BYTES + 4)]))
        # walk the body: a raw delimiter before the stop position means the length is wrong
        stop_at = length - 1
        escaped = False
        for i in range(HEADER_BYTES, min(n, stop_at)):
            byte = buf[i]
            if escaped:
                escaped = False
            elif byte == STUFF:
                escaped = True
            elif byte in (START, STOP):
                return self._reject("length", bytes(buf[HEADER_BYTES:i]))
        if n < length:
            return "incomplete", 0, None
        body = bytes(buf[HEADER_BYTES:stop_at])
        if buf[stop_at] != STOP or escaped:
            return self._reject("length", body)
        if crc16_xmodem(body) != crc:
            return self._reject("crc", body)
        raw = unstuff(body)
        if raw is None or len(raw) < 2:
            return self._reject("length", body)
        prefix = (raw[0] << 8) | raw[1]
        return "ok", length, Packet(prefix >> 10, prefix & MAX_COMMAND, raw[2:])


# --------------------------------------------------------------------------- values

class Point(NamedTuple):
    """One point of a pulse shape: ``duration_us`` (0..4095 µs) at ``current_ma`` (±150 mA, 0.5 mA steps)."""
    duration_us: int
    current_ma: float


class ChannelConfig(NamedTuple):
    """Mid-level settings of one channel: a pulse shape repeated every ``period_ms``.

    ``ramp`` (0..15) is the number of pulses over which the device ramps a newly started
    channel up; ``points`` are 1..16 :class:`Point`.
    """
    period_ms: float
    points: tuple[Point, ...]
    ramp: int = 0

    @property
    def phase_charge_nc(self) -> tuple[float, float]:
        """(positive, negative) charge of one pulse in nC (mA × µs); equal for a balanced pulse."""
        pos = sum(p.current_ma * p.duration_us for p in self.points if p.current_ma > 0)
        neg = -sum(p.current_ma * p.duration_us for p in self.points if p.current_ma < 0)
        return pos, neg


def current_code(current_ma: float) -> int:
    """Wire code ``2*mA + 300`` of a point current; ValueError unless a 0.5 mA step within ±150 mA."""
    if (not isinstance(current_ma, (int, float)) or isinstance(current_ma, bool)
            or not math.isfinite(current_ma)):
        raise ValueError(f"current_ma={current_ma!r}; allowed ±{POINT_CODE_MAX_MA:g} mA in 0.5 mA steps")
    doubled = current_ma * 2
    if doubled != int(doubled) or abs(current_ma) > POINT_CODE_MAX_MA:
        raise ValueError(f"current_ma={current_ma!r}; allowed ±{POINT_CODE_MAX_MA:g} mA in 0.5 mA steps")
    return int(doubled) + 300


def current_from_code(code: int) -> float:
    return (code - 300) / 2


def encode_point(point: Point) -> bytes:
    """u32 big-endian ``duration_us << 20 | (2*mA + 300) << 10``."""
    duration = point.duration_us
    if not isinstance(duration, int) or isinstance(duration, bool) or not 0 <= duration <= MAX_POINT_US:
        raise ValueError(f"point duration_us={duration!r}; allowed integer 0..{MAX_POINT_US} µs")
    return ((duration << 20) | (current_code(point.current_ma) << 10)).to_bytes(4, "big")


def decode_point(raw: bytes) -> Point:
    word = int.from_bytes(raw, "big")
    return Point(word >> 20, current_from_code((word >> 10) & 0x3FF))


def period_ticks(period_ms: float) -> int:
    """Ticks of 0.5 ms (f = 0); ValueError unless a 0.5 ms multiple in 0.5..16383.5 ms."""
    if (not isinstance(period_ms, (int, float)) or isinstance(period_ms, bool)
            or not math.isfinite(period_ms)):
        raise ValueError(f"period_ms={period_ms!r}; allowed {MIN_PERIOD_MS:g}..{MAX_PERIOD_MS:g} ms in 0.5 ms steps")
    ticks = period_ms * 2
    if ticks != int(ticks) or not MIN_PERIOD_MS <= period_ms <= MAX_PERIOD_MS:
        raise ValueError(f"period_ms={period_ms!r}; allowed {MIN_PERIOD_MS:g}..{MAX_PERIOD_MS:g} ms in 0.5 ms steps")
    return int(ticks)


def period_for_frequency(frequency_hz: float) -> float:
    """Period (ms) for a frequency, rounded UP to the 0.5 ms grid: never faster than asked.

    40 Hz -> 25 ms; 30 Hz -> 33.5 ms. ValueError outside ≈0.061..2000 Hz.
    """
    if (not isinstance(frequency_hz, (int, float)) or isinstance(frequency_hz, bool)
            or not math.isfinite(frequency_hz) or frequency_hz <= 0):
        raise ValueError(f"frequency_hz={frequency_hz!r}; allowed {1000 / MAX_PERIOD_MS:.3f}..2000 Hz")
    period = math.ceil(2000.0 / frequency_hz - 1e-9) / 2
    if not MIN_PERIOD_MS <= period <= MAX_PERIOD_MS:
        raise ValueError(f"frequency_hz={frequency_hz!r}; allowed {1000 / MAX_PERIOD_MS:.3f}..2000 Hz")
    return period


def balanced_biphasic(current_ma: float, pulse_width_us: int) -> tuple[Point, Point]:
    """A symmetric, charge-balanced biphasic pulse: +I for the pulse width, then -I as long."""
    return (Point(pulse_width_us, current_ma), Point(pulse_width_us, -current_ma if current_ma else 0))


def duty_load(configs: Mapping[int, ChannelConfig]) -> float:
    """Σ over channels of (Σ point µs + 60) / period_ms; the C library requires < 1000."""
    return sum((sum(p.duration_us for p in c.points) + 60) / c.period_ms for c in configs.values())


def _channel_mask(channels: Iterable[int]) -> int:
    mask = 0
    for ch in channels:
        if not isinstance(ch, int) or isinstance(ch, bool) or not 1 <= ch <= CHANNELS:
            raise ValueError(f"channel {ch!r}; allowed 1..{CHANNELS} (1-based)")
        mask |= 1 << (ch - 1)
    return mask


def mask_channels(mask: int) -> tuple[int, ...]:
    """1-based channels of a bit mask (bit 0 = channel 1)."""
    return tuple(ch for ch in range(1, CHANNELS + 1) if mask & (1 << (ch - 1)))


def encode_channel_config(config: ChannelConfig) -> bytes:
    points = tuple(config.points)
    if not 1 <= len(points) <= MAX_POINTS:
        raise ValueError(f"{len(points)} points; allowed 1..{MAX_POINTS}")
    if not isinstance(config.ramp, int) or not 0 <= config.ramp <= MAX_RAMP:
        raise ValueError(f"ramp={config.ramp!r}; allowed 0..{MAX_RAMP}")
    ticks = period_ticks(config.period_ms)
    return (bytes(((len(points) - 1) << 4 | config.ramp,)) + (ticks << 1).to_bytes(2, "big")
            + b"".join(encode_point(p) for p in points))


# --------------------------------------------------------------------------- host builders

def get_device_id(nr: int) -> bytes:
    return encode_frame(nr, Command.GET_DEVICE_ID)


def get_extended_version(nr: int) -> bytes:
    return encode_frame(nr, Command.GET_EXTENDED_VERSION)


def get_stim_status(nr: int) -> bytes:
    return encode_frame(nr, Command.GET_STIM_STATUS)


def get_battery_status(nr: int) -> bytes:
    return encode_frame(nr, Command.GET_BATTERY_STATUS)


def reset(nr: int) -> bytes:
    return encode_frame(nr, Command.RESET)


def ml_init(nr: int, stop_all_on_error: bool = True) -> bytes:
    """Mid-level init; ``stop_all_on_error`` (s=1) stops every channel on any channel's error."""
    return encode_frame(nr, Command.ML_INIT, bytes((1 if stop_all_on_error else 0,)))


def ml_update(nr: int, configs: Mapping[int, ChannelConfig]) -> bytes:
    """Mid-level update: starts or replaces stimulation on the 1-based channels given.

    ValueError for a channel outside 1..8, a point outside the code range, a current above
    the 130 mA output range, a period off the 0.5 ms grid, or a duty load >= 1000.
    """
    return encode_frame(nr, Command.ML_UPDATE, ml_update_data(configs))


def ml_update_data(configs: Mapping[int, ChannelConfig]) -> bytes:
    """The payload of :func:`ml_update` (it does not depend on the packet number, so a driver
    may keep it for the next update of the same values); the same checks and ValueErrors."""
    mask = _channel_mask(configs)
    data = bytearray((mask,))
    for ch in sorted(configs):
        cfg = configs[ch]
        for p in cfg.points:
            if abs(p.current_ma) > OUTPUT_MAX_MA:
                raise ValueError(f"channel {ch}: point current {p.current_ma:g} mA; the P24 delivers "
                                 f"at most ±{OUTPUT_MAX_MA:g} mA")
        data += encode_channel_config(cfg)
    if configs and duty_load(configs) >= DUTY_LIMIT:
        raise ValueError(f"duty load {duty_load(configs):.1f} (Σ (pulse µs + 60) / period ms over "
                         f"channels); allowed below {DUTY_LIMIT}")
    return bytes(data)


def ml_stop(nr: int) -> bytes:
    """Mid-level stop: stimulation off, high voltage off, leaves the mid level."""
    return encode_frame(nr, Command.ML_STOP)


def ml_get_current_data(nr: int) -> bytes:
    """Channel status poll (data selection 4); also the mid-level watchdog's keep-alive."""
    return encode_frame(nr, Command.ML_GET_CURRENT_DATA, bytes((CURRENT_DATA_CHANNELS,)))


def ll_init(nr: int, high_voltage_on: bool = True, measurement: int = 0) -> bytes:
    """Low-level init ``[meas << 4 | hv << 1]`` (hv 0 = 150 V, 1 = off)."""
    if not isinstance(measurement, int) or not 0 <= measurement <= 15:
        raise ValueError(f"measurement={measurement!r}; allowed 0..15")
    return encode_frame(nr, Command.LL_INIT, bytes((measurement << 4 | (0 if high_voltage_on else 1) << 1,)))


def ll_channel_config(nr: int, channel: int, points: Sequence[Point], connector: int = 0,
                      enable: bool = True) -> bytes:
    """Low-level single pulse on ``channel`` (0..3 of ``connector`` 0..1)."""
    if not isinstance(channel, int) or not 0 <= channel <= 3:
        raise ValueError(f"low-level channel {channel!r}; allowed 0..3")
    if connector not in (0, 1):
        raise ValueError(f"connector {connector!r}; allowed 0 or 1")
    if not 1 <= len(points) <= MAX_POINTS:
        raise ValueError(f"{len(points)} points; allowed 1..{MAX_POINTS}")
    head = (1 if enable else 0) << 7 | channel << 5 | connector << 4 | (len(points) - 1)
    return encode_frame(nr, Command.LL_CHANNEL_CONFIG, bytes((head,)) + b"".join(encode_point(p) for p in points))


def ll_stop(nr: int) -> bytes:
    return encode_frame(nr, Command.LL_STOP)


# --------------------------------------------------------------------------- device builders

def _result_byte(result: int) -> int:
    if not isinstance(result, int) or not 0 <= result <= 255:
        raise ValueError(f"result={result!r}; allowed 0..255")
    return result


def acknowledgement(nr: int, request_cmd: int, result: int, extra: bytes = b"") -> bytes:
    """Acknowledgement of ``request_cmd`` (id + 1) with the request's ``nr`` and a result byte."""
    return encode_frame(nr, request_cmd + 1, bytes((_result_byte(result),)) + bytes(extra))


def device_id_ack(nr: int, device_id: str, result: int = 0) -> bytes:
    raw = device_id.encode("ascii")
    if len(raw) != DEVICE_ID_CHARS:
        raise ValueError(f"device id {device_id!r} is {len(raw)} characters; allowed exactly {DEVICE_ID_CHARS}")
    return acknowledgement(nr, Command.GET_DEVICE_ID, result, raw)


class ExtendedVersion(NamedTuple):
    firmware: tuple[int, int, int]
    science_mode: tuple[int, int, int]
    firmware_hash: int
    hash_type: int          # 1 git, 2 md5, 3 sha256
    hash_valid: bool


def extended_version_ack(nr: int, version: ExtendedVersion, result: int = 0) -> bytes:
    data = (bytes(version.firmware) + bytes(version.science_mode) + version.firmware_hash.to_bytes(4, "big")
            + bytes((version.hash_type, 1 if version.hash_valid else 0)))
    return acknowledgement(nr, Command.GET_EXTENDED_VERSION, result, data)


def stim_status_ack(nr: int, status: int, high_voltage: int, result: int = 0) -> bytes:
    return acknowledgement(nr, Command.GET_STIM_STATUS, result, bytes((int(status), int(high_voltage))))


def current_data_ack(nr: int, active_channels: Iterable[int] = (),
                     channel_errors: Mapping[int, int] | None = None, result: int = 0) -> bytes:
    """Acknowledgement of ml_get_current_data: result, 04, active mask, 4 bytes of error nibbles
    (byte k: low nibble channel 2k+1, high nibble channel 2k+2)."""
    nibbles = bytearray(4)
    for ch, err in (channel_errors or {}).items():
        _channel_mask((ch,))
        if not 0 <= int(err) <= 15:
            raise ValueError(f"channel {ch} error {err!r}; allowed 0..15")
        index = ch - 1
        nibbles[index // 2] |= int(err) << (4 * (index % 2))
    return acknowledgement(nr, Command.ML_GET_CURRENT_DATA, result,
                           bytes((CURRENT_DATA_CHANNELS, _channel_mask(active_channels))) + bytes(nibbles))


def general_error(nr: int, result: int = Result.TRANSFER_ERROR) -> bytes:
    return encode_frame(nr, Command.GENERAL_ERROR, bytes((_result_byte(result),)))


def unknown_command(nr: int) -> bytes:
    return encode_frame(nr, Command.UNKNOWN_COMMAND, bytes((Result.INVALID_COMMAND,)))


# --------------------------------------------------------------------------- payload parsers

def parse_ml_update(data: bytes) -> dict[int, ChannelConfig]:
    """Payload of ml_update -> {1-based channel: ChannelConfig}; ValueError if malformed.

    Decodes the period flag as the protocol notes give it (f = 0: ticks of 0.5 ms; f = 1:
    ticks of 0.25 ms). Does no range checks beyond the encoding itself.
    """
    if not data:
        raise ValueError("ml_update payload is empty; expected a channel mask")
    configs: dict[int, ChannelConfig] = {}
    pos = 1
    for ch in mask_channels(data[0]):
        if len(data) < pos + 3:
            raise ValueError(f"ml_update payload ends inside channel {ch}'s settings")
        n_points = (data[pos] >> 4) + 1
        ramp = data[pos] & 0x0F
        word = int.from_bytes(data[pos + 1:pos + 3], "big")
        period_ms = (word >> 1) / (4 if word & 1 else 2)
        pos += 3
        end = pos + 4 * n_points
        if len(data) < end:
            raise ValueError(f"ml_update payload ends inside channel {ch}'s {n_points} points")
        points = tuple(decode_point(data[i:i + 4]) for i in range(pos, end, 4))
        configs[ch] = ChannelConfig(period_ms, points, ramp)
        pos = end
    if pos != len(data):
        raise ValueError(f"ml_update payload has {len(data) - pos} byte(s) after the last channel")
    return configs


class CurrentData(NamedTuple):
    """Parsed acknowledgement of ml_get_current_data."""
    result: int
    data_selection: int
    active_channels: tuple[int, ...]
    channel_errors: dict[int, int]          # only channels with a non-zero nibble


def parse_current_data_ack(data: bytes) -> CurrentData:
    """Payload of ack 37; ValueError unless 7 bytes."""
    if len(data) != 7:
        raise ValueError(f"ml_get_current_data acknowledgement payload is {len(data)} bytes; expected 7")
    errors = {}
    for index in range(CHANNELS):
        nibble = (data[3 + index // 2] >> (4 * (index % 2))) & 0x0F
        if nibble:
            errors[index + 1] = nibble
    return CurrentData(data[0], data[1], mask_channels(data[2]), errors)


class StimStatusReply(NamedTuple):
    result: int
    status: int
    high_voltage: int


def parse_stim_status_ack(data: bytes) -> StimStatusReply:
    if len(data) != 3:
        raise ValueError(f"GetStimStatus acknowledgement payload is {len(data)} bytes; expected 3")
    return StimStatusReply(data[0], data[1], data[2])


def parse_device_id_ack(data: bytes) -> tuple[int, str]:
    """(result, device id) of ack 53; ValueError unless result + 10 characters."""
    if len(data) != 1 + DEVICE_ID_CHARS:
        raise ValueError(f"GetDeviceId acknowledgement payload is {len(data)} bytes; expected {1 + DEVICE_ID_CHARS}")
    return data[0], data[1:].decode("ascii", "replace")


def parse_extended_version_ack(data: bytes) -> tuple[int, ExtendedVersion]:
    if len(data) != 13:
        raise ValueError(f"GetExtendedVersion acknowledgement payload is {len(data)} bytes; expected 13")
    return data[0], ExtendedVersion(tuple(data[1:4]), tuple(data[4:7]), int.from_bytes(data[7:11], "big"),
                                    data[11], bool(data[12]))


def parse_ll_channel_config(data: bytes) -> tuple[bool, int, int, tuple[Point, ...]]:
    """Payload of ll_channel_config -> (enable, channel 0..3, connector 0..1, points)."""
    if not data:
        raise ValueError("ll_channel_config payload is empty")
    head = data[0]
    n_points = (head & 0x0F) + 1
    if len(data) != 1 + 4 * n_points:
        raise ValueError(f"ll_channel_config payload is {len(data)} bytes; expected {1 + 4 * n_points}")
    points = tuple(decode_point(data[i:i + 4]) for i in range(1, len(data), 4))
    return bool(head >> 7), (head >> 5) & 0x03, (head >> 4) & 0x01, points
