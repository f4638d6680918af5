"""ScienceMode2 (Hasomed RehaStim2) wire codec: frames, stuffing, CRC, command payloads. No I/O.

Over 400 lines: one wire protocol's codec, every command's payload in one place, in the order of
the protocol document.

Frame on the wire (see docs/sciencemode2.md and /work/shared/protocols/sciencemode2.md)::

    F0 | 81 | CRC^55 | 81 | LEN^55 | PKT | CMD | DATA... | 0F

* From PKT on, a byte equal to F0, 0F or 81 is sent as ``81, b^0x55`` (stuffing).
* CRC is CRC-8 (poly 0x07, init 0, no reflection) over the *stuffed* bytes PKT..last data byte;
  LEN is the number of those stuffed bytes. Both are always sent stuffed (``81, x^0x55``).
* Multi-byte fields are MSB first. A result byte is signed (two's complement).

Units in this module: current in integer mA, pulse width in integer µs, intervals in ms,
frequency in Hz. Channels are 1-based everywhere in the Python API (channel 1 = mask bit 0);
the only zero-based channel on the wire is SinglePulse's, and ``single_pulse`` converts it.

Builders validate their arguments and raise ``ValueError`` naming the value and the allowed
range *before* producing any bytes. ``FrameDecoder`` never raises on bad input.
"""
from __future__ import annotations

import math
from enum import IntEnum
from typing import Iterable, NamedTuple, Sequence

from .framing import START, STOP, STUFF, STUFF_KEY, DelimitedFrameDecoder, stuff, unstuff


MAX_CURRENT_MA = 126          #: vendor limit (the protocol text allows 130; we keep the lower one)
MIN_PULSE_WIDTH_US = 20       #: a non-zero pulse width must be 20..500 µs
MAX_PULSE_WIDTH_US = 500
MIN_INTERVAL_MS = 8.0         #: t1 (main) and t2 (inter-pulse) must both be >= 8 ms
MAX_MAIN_INTERVAL_MS = 1025.0  #: t1 code 2048 -> 1 + 2048 * 0.5 ms
MAX_INTER_PULSE_MS = 129.0     #: t2 code 255 -> 1.5 + 255 * 0.5 ms
MAX_CHANNELS = 8
MAX_LF_FACTOR = 7


class Command(IntEnum):
    """Command ids. An acknowledgement id is the request id + 1."""
    INIT = 1                        # device -> host, every 500 ms until acknowledged
    INIT_ACK = 2                    # host -> device, PKT = the Init's PKT
    WATCHDOG = 4                    # host -> device, not acknowledged
    GET_STIMULATION_MODE = 10
    GET_STIMULATION_MODE_ACK = 11
    INIT_CHANNEL_LIST_MODE = 30
    INIT_CHANNEL_LIST_MODE_ACK = 31
    START_CHANNEL_LIST_MODE = 32
    START_CHANNEL_LIST_MODE_ACK = 33
    STOP_CHANNEL_LIST_MODE = 34
    STOP_CHANNEL_LIST_MODE_ACK = 35
    SINGLE_PULSE = 36
    SINGLE_PULSE_ACK = 37
    STIMULATION_ERROR = 38          # device -> host, unsolicited


#: request id -> acknowledgement id, for the commands the device acknowledges
ACKNOWLEDGED = {
    Command.GET_STIMULATION_MODE: Command.GET_STIMULATION_MODE_ACK,
    Command.INIT_CHANNEL_LIST_MODE: Command.INIT_CHANNEL_LIST_MODE_ACK,
    Command.START_CHANNEL_LIST_MODE: Command.START_CHANNEL_LIST_MODE_ACK,
    Command.STOP_CHANNEL_LIST_MODE: Command.STOP_CHANNEL_LIST_MODE_ACK,
    Command.SINGLE_PULSE: Command.SINGLE_PULSE_ACK,
}


class Result(IntEnum):
    """Signed result byte of an acknowledgement."""
    OK = 0
    TRANSFER_ERROR = -1     # CRC or length error
    PARAMETER_ERROR = -2
    WRONG_MODE = -3
    BUSY = -8


class StimulationErrorCode(IntEnum):
    """Data byte of an unsolicited StimulationError (cmd 38)."""
    EMERGENCY_SWITCH = -1
    ELECTRODE_ERROR = -2
    MODULE_ERROR = -3


class StimulationMode(IntEnum):
    """Second data byte of GetStimulationModeAck."""
    START = 0
    INITIALISED = 1
    RUNNING = 2


class PulseMode(IntEnum):
    """Per-channel pulse mode in StartChannelListMode: pulses per group."""
    SINGLE = 0
    DOUBLET = 1
    TRIPLET = 2


class Packet(NamedTuple):
    """A decoded frame: host/device counter ``pkt`` (0-255), command id, unstuffed data."""
    pkt: int
    cmd: int
    data: bytes


class RejectedFrame(NamedTuple):
    """A frame the decoder refused. ``pkt``/``cmd`` are None when they could not be read."""
    reason: str             # "crc" or "length"
    pkt: int | None
    cmd: int | None


# --------------------------------------------------------------------------- CRC, stuffing

def _make_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc8(data: Iterable[int]) -> int:
    """CRC-8, polynomial 0x07, initial value 0, no reflection, no final XOR."""
    crc = 0
    for byte in data:
        crc = _CRC_TABLE[crc ^ byte]
    return crc


def _check_byte(name: str, value: int) -> int:
    if not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError(f"{name}={value!r} is not a byte; allowed 0..255")
    return value


def encode_frame(pkt: int, cmd: int, data: bytes | Iterable[int] = b"") -> bytes:
    """One complete frame for packet number ``pkt`` (0-255), command ``cmd`` and payload ``data``.

    Invariant: ``FrameDecoder().feed(encode_frame(p, c, d)) == [Packet(p, c, bytes(d))]``.
    Raises ValueError when the stuffed body is longer than 255 bytes (LEN is one byte).
    """
    _check_byte("pkt", pkt)
    _check_byte("cmd", cmd)
    return encode_stuffed_frame(pkt, cmd, stuff(bytes(data)))


_STUFFED_BYTE = tuple(stuff(bytes((b,))) for b in range(256))
_STOP_BYTE = bytes((STOP,))


def encode_stuffed_frame(pkt: int, cmd: int, stuffed_data: bytes) -> bytes:
    """``encode_frame(pkt, cmd, data)`` for a payload given already stuffed (``stuff(data)``):
    the same bytes (stuffing is byte by byte, so the body is ``stuff(pkt, cmd) + stuff(data)``).
    For a payload sent again and again (the control loop's output update) it is stuffed once.
    Raises ValueError for a ``pkt`` or ``cmd`` that is not a byte, or a body over 255 bytes."""
    _check_byte("pkt", pkt)
    _check_byte("cmd", cmd)
    body = _STUFFED_BYTE[pkt] + _STUFFED_BYTE[cmd] + stuffed_data
    if len(body) > 255:
        raise ValueError(f"stuffed frame body is {len(body)} bytes; allowed at most 255")
    crc = 0
    table = _CRC_TABLE
    for byte in body:
        crc = table[crc ^ byte]
    return bytes((START, STUFF, crc ^ STUFF_KEY, STUFF, len(body) ^ STUFF_KEY)) + body + _STOP_BYTE


def signed_byte(value: int) -> int:
    """Two's-complement reading of one byte (0xFE -> -2)."""
    return value - 256 if value >= 128 else value


# --------------------------------------------------------------------------- decoder

class FrameDecoder(DelimitedFrameDecoder):
    """Incremental frame decoder: ``feed(bytes) -> list[Packet]``. Never raises on bad input.

    Resynchronises on the next F0 after garbage or a rejected frame (a rejected candidate
    gives up only its first byte, so a real frame hidden behind a false start is still
    found). A frame is rejected when its LEN differs from the stuffed body length
    (``length_errors``; also for a frame cut short by a new F0) or its CRC does not match
    (``crc_errors``). ``garbage_bytes`` counts every byte discarded outside a valid frame.
    ``on_reject`` (optional) is called with a ``RejectedFrame`` for each CRC/LEN rejection.
    Buffering is bounded: a candidate frame is decided at most LEN + 6 bytes after its F0.
    """

    REJECTED = RejectedFrame

    def _header_of(self, stuffed_body: bytes) -> tuple[int | None, int | None]:
        head = unstuff(stuffed_body[:4]) or unstuff(stuffed_body[:3]) or b""
        return (head[0] if len(head) >= 1 else None), (head[1] if len(head) >= 2 else None)

    def _parse_candidate(self, buf: bytearray) -> tuple[str, int, Packet | None]:
        """Try a frame starting at buf[0] (== F0). Returns (status, bytes used, packet)."""
        n = len(buf)
        if n < 2:
            return "incomplete", 0, None
        if buf[1] != STUFF:
            return "bad", 0, None
        if n < 4:
            return "incomplete", 0, None
        if buf[3] != STUFF:
            return "bad", 0, None
        if n < 5:
            return "incomplete", 0, None
        crc = buf[2] ^ STUFF_KEY
        length = buf[4] ^ STUFF_KEY
        scan_end = min(n, 5 + length + 1)
        stop_at = buf.find(STOP, 5, scan_end)
        interrupt = buf.find(START, 5, stop_at if stop_at >= 0 else scan_end)
        if interrupt >= 0:                       # a new frame began inside this one
            return self._reject("length", bytes(buf[5:interrupt]))
        if stop_at < 0:
            if n < 5 + length + 1:
                return "incomplete", 0, None
            return self._reject("length", bytes(buf[5:scan_end]))   # no 0F where LEN says
        body = bytes(buf[5:stop_at])
        if len(body) != length:
            return self._reject("length", body)
        if crc8(body) != crc:
            return self._reject("crc", body)
        raw = unstuff(body)
        if raw is None or len(raw) < 2:
            return self._reject("length", body)
        return "ok", stop_at + 1, Packet(raw[0], raw[1], raw[2:])


# --------------------------------------------------------------------------- host builders

def init_ack(pkt: int) -> bytes:
    """InitAck (result 0) answering the device's Init; ``pkt`` must be that Init's PKT."""
    return encode_frame(pkt, Command.INIT_ACK, bytes((0,)))


def watchdog(pkt: int) -> bytes:
    """Watchdog: keeps the device's 1.2 s watchdog from firing; not acknowledged."""
    return encode_frame(pkt, Command.WATCHDOG)


def get_stimulation_mode(pkt: int) -> bytes:
    return encode_frame(pkt, Command.GET_STIMULATION_MODE)


def stop_channel_list_mode(pkt: int) -> bytes:
    """StopChannelListMode: stops all channels; the device returns to start mode."""
    return encode_frame(pkt, Command.STOP_CHANNEL_LIST_MODE)


def _channel_mask(name: str, channels: Iterable[int]) -> int:
    mask = 0
    for ch in channels:
        if not isinstance(ch, int) or not 1 <= ch <= MAX_CHANNELS:
            raise ValueError(f"{name} contains channel {ch!r}; allowed 1..{MAX_CHANNELS} (1-based)")
        if mask & (1 << (ch - 1)):
            raise ValueError(f"{name} lists channel {ch} twice")
        mask |= 1 << (ch - 1)
    return mask


def main_interval_code(frequency_hz: float) -> int:
    """t1 code (t1 - 1 ms) / 0.5 ms for a stimulation frequency.

    Rounded UP to the next 0.5 ms step, so the delivered frequency is never above the one
    asked (40 Hz -> t1 25 ms -> 48; 30 Hz -> t1 33.5 ms -> 65). t1 must be 8..1025 ms.
    """
    if not isinstance(frequency_hz, (int, float)) or not math.isfinite(frequency_hz) or frequency_hz <= 0:
        raise ValueError(f"frequency_hz={frequency_hz!r}; allowed {1000 / MAX_MAIN_INTERVAL_MS:.3f}..125 Hz")
    t1_ms = 1000.0 / frequency_hz
    code = math.ceil((t1_ms - 1.0) / 0.5 - 1e-9)
    t1_coded_ms = 1.0 + 0.5 * code
    if not (MIN_INTERVAL_MS - 1e-9 <= t1_ms and t1_coded_ms <= MAX_MAIN_INTERVAL_MS):
        raise ValueError(f"frequency_hz={frequency_hz!r} gives t1={t1_ms:.3f} ms; allowed t1 "
                         f"{MIN_INTERVAL_MS:g}..{MAX_MAIN_INTERVAL_MS:g} ms "
                         f"({1000 / MAX_MAIN_INTERVAL_MS:.3f}..125 Hz)")
    return code


def inter_pulse_code(inter_pulse_ms: float) -> int:
    """t2 code (t2 - 1.5 ms) / 0.5 ms; t2 must be a multiple of 0.5 ms in 8..129 ms."""
    if not isinstance(inter_pulse_ms, (int, float)) or not math.isfinite(inter_pulse_ms):
        raise ValueError(f"inter_pulse_ms={inter_pulse_ms!r}; allowed {MIN_INTERVAL_MS:g}..{MAX_INTER_PULSE_MS:g} ms")
    code_f = (inter_pulse_ms - 1.5) / 0.5
    code = round(code_f)
    if abs(code_f - code) > 1e-6 or not MIN_INTERVAL_MS <= inter_pulse_ms <= MAX_INTER_PULSE_MS:
        raise ValueError(f"inter_pulse_ms={inter_pulse_ms!r}; allowed {MIN_INTERVAL_MS:g}..{MAX_INTER_PULSE_MS:g} ms "
                         f"in 0.5 ms steps")
    return code


def init_channel_list_mode(pkt: int, channels: Sequence[int], frequency_hz: float, lf_factor: int = 0,
                           lf_channels: Sequence[int] = (), inter_pulse_ms: float = 8.0) -> bytes:
    """InitChannelListMode for the 1-based ``channels`` at ``frequency_hz`` (t1 = 1000/f ms).

    Data: LF factor (0-7), channel mask (bit 0 = channel 1), LF channel mask, t2 code,
    t1 code MSB, LSB, channel execution 0. ``lf_channels`` must be a subset of ``channels``.
    """
    if not channels:
        raise ValueError("channels is empty; allowed 1..8 distinct channels out of 1..8")
    mask = _channel_mask("channels", channels)
    lf_mask = _channel_mask("lf_channels", lf_channels)
    if lf_mask & ~mask:
        raise ValueError(f"lf_channels={list(lf_channels)} must be a subset of channels={list(channels)}")
    if not isinstance(lf_factor, int) or not 0 <= lf_factor <= MAX_LF_FACTOR:
        raise ValueError(f"lf_factor={lf_factor!r}; allowed 0..{MAX_LF_FACTOR}")
    t2 = inter_pulse_code(inter_pulse_ms)
    t1 = main_interval_code(frequency_hz)
    return encode_frame(pkt, Command.INIT_CHANNEL_LIST_MODE,
                        bytes((lf_factor, mask, lf_mask, t2, t1 >> 8, t1 & 0xFF, 0)))


def check_pulse(pulse_width_us: int, current_ma: int) -> None:
    """ValueError unless pulse width is 0 or 20..500 µs and current an integer 0..126 mA."""
    if (not isinstance(pulse_width_us, int) or isinstance(pulse_width_us, bool)
            or not (pulse_width_us == 0 or MIN_PULSE_WIDTH_US <= pulse_width_us <= MAX_PULSE_WIDTH_US)):
        raise ValueError(f"pulse_width_us={pulse_width_us!r}; allowed 0 or "
                         f"{MIN_PULSE_WIDTH_US}..{MAX_PULSE_WIDTH_US} µs (integer)")
    if (not isinstance(current_ma, int) or isinstance(current_ma, bool)
            or not 0 <= current_ma <= MAX_CURRENT_MA):
        raise ValueError(f"current_ma={current_ma!r}; allowed integer 0..{MAX_CURRENT_MA} mA")


def start_channel_list_mode(pkt: int, settings: Sequence[tuple[int, int, int]]) -> bytes:
    """StartChannelListMode (start or update): one (mode, pulse_width_us, current_ma) per
    initialised channel, in ascending channel order. Mode 0 single, 1 doublet, 2 triplet."""
    return encode_frame(pkt, Command.START_CHANNEL_LIST_MODE, start_channel_list_payload(settings))


def start_channel_list_payload(settings: Sequence[tuple[int, int, int]]) -> bytes:
    """The (unstuffed) data of ``start_channel_list_mode``: 4 bytes per (mode, pulse_width_us,
    current_ma). Raises the same ValueError, naming the value and the allowed range."""
    if not settings or len(settings) > MAX_CHANNELS:
        raise ValueError(f"{len(settings)} channel settings; allowed 1..{MAX_CHANNELS}")
    data = bytearray()
    for mode, pulse_width_us, current_ma in settings:
        if mode not in (0, 1, 2):
            raise ValueError(f"mode={mode!r}; allowed 0 (single), 1 (doublet), 2 (triplet)")
        check_pulse(pulse_width_us, current_ma)
        data += bytes((int(mode), pulse_width_us >> 8, pulse_width_us & 0xFF, current_ma))
    return bytes(data)


def single_pulse(pkt: int, channel: int, pulse_width_us: int, current_ma: int) -> bytes:
    """SinglePulse on 1-based ``channel`` (sent zero-based on the wire); only in start mode."""
    if not isinstance(channel, int) or not 1 <= channel <= MAX_CHANNELS:
        raise ValueError(f"channel={channel!r}; allowed 1..{MAX_CHANNELS} (1-based)")
    check_pulse(pulse_width_us, current_ma)
    return encode_frame(pkt, Command.SINGLE_PULSE,
                        bytes((channel - 1, pulse_width_us >> 8, pulse_width_us & 0xFF, current_ma)))


# --------------------------------------------------------------------------- device builders

def device_init(pkt: int, version: int = 1) -> bytes:
    """Init as the device sends it (every 500 ms until acknowledged)."""
    return encode_frame(pkt, Command.INIT, bytes((version,)))


def acknowledgement(pkt: int, request_cmd: int, result: int, extra: bytes = b"") -> bytes:
    """Acknowledgement of ``request_cmd`` (id + 1) echoing the host's ``pkt``; signed result."""
    if not -128 <= result <= 127:
        raise ValueError(f"result={result!r}; allowed -128..127")
    return encode_frame(pkt, request_cmd + 1, bytes((result & 0xFF,)) + bytes(extra))


def stimulation_error(pkt: int, code: int) -> bytes:
    """Unsolicited StimulationError (-1 emergency switch, -2 electrode, -3 module)."""
    return encode_frame(pkt, Command.STIMULATION_ERROR, bytes((code & 0xFF,)))


# --------------------------------------------------------------------------- payload parsers

class ChannelListConfig(NamedTuple):
    """Parsed InitChannelListMode payload. Intervals in ms; t1 = 0 means one-shot."""
    lf_factor: int
    channels: tuple[int, ...]       # 1-based, ascending
    lf_channels: tuple[int, ...]
    inter_pulse_ms: float           # t2
    main_interval_ms: float         # t1 (0 = one-shot)
    execution: int


def _mask_channels(mask: int) -> tuple[int, ...]:
    return tuple(ch for ch in range(1, MAX_CHANNELS + 1) if mask & (1 << (ch - 1)))


def parse_init_channel_list_mode(data: bytes) -> ChannelListConfig:
    """Payload of InitChannelListMode; ValueError if it is not 7 bytes."""
    if len(data) != 7:
        raise ValueError(f"InitChannelListMode payload is {len(data)} bytes; expected 7")
    t1_code = (data[4] << 8) | data[5]
    return ChannelListConfig(data[0], _mask_channels(data[1]), _mask_channels(data[2]),
                             1.5 + 0.5 * data[3], 0.0 if t1_code == 0 else 1.0 + 0.5 * t1_code, data[6])


def parse_start_channel_list_mode(data: bytes) -> list[tuple[int, int, int]]:
    """Payload of StartChannelListMode -> [(mode, pulse_width_us, current_ma)]; no range checks."""
    if not data or len(data) % 4:
        raise ValueError(f"StartChannelListMode payload is {len(data)} bytes; expected 4 per channel")
    return [(data[i], (data[i + 1] << 8) | data[i + 2], data[i + 3]) for i in range(0, len(data), 4)]


def parse_single_pulse(data: bytes) -> tuple[int, int, int]:
    """Payload of SinglePulse -> (1-based channel, pulse_width_us, current_ma)."""
    if len(data) != 4:
        raise ValueError(f"SinglePulse payload is {len(data)} bytes; expected 4")
    return data[0] + 1, (data[1] << 8) | data[2], data[3]
