"""What both ScienceMode protocols share on the wire: byte stuffing, and the hunt for frames
delimited by F0 … 0F, decoded incrementally without ever raising on bad input.

A protocol's decoder subclasses :class:`DelimitedFrameDecoder` and supplies
``_parse_candidate(buf)`` (try a frame at ``buf[0] == START``; return ``("ok", bytes used,
packet)``, ``("incomplete", 0, None)`` or what ``_reject`` returns) and ``_header_of(stuffed)``
(the packet number and command of a rejected frame's stuffed body, None where unreadable).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

START = 0xF0
STOP = 0x0F
STUFF = 0x81        #: escape byte
STUFF_KEY = 0x55    #: an escaped byte is sent as ``STUFF, byte ^ STUFF_KEY``
_NEEDS_STUFFING = frozenset((START, STOP, STUFF))


def stuff(data) -> bytes:
    """Escape F0, 0F and 81 as ``81, b^0x55`` (0x55 itself is left alone)."""
    out = bytearray()
    for byte in data:
        if byte in _NEEDS_STUFFING:
            out += bytes((STUFF, byte ^ STUFF_KEY))
        else:
            out.append(byte)
    return bytes(out)


def unstuff(data: bytes) -> bytes | None:
    """Undo ``stuff``: ``81, x`` -> ``x^0x55`` (any byte may be escaped). None if it ends in 81."""
    out = bytearray()
    escaped = False
    for byte in data:
        if escaped:
            out.append(byte ^ STUFF_KEY)
            escaped = False
        elif byte == STUFF:
            escaped = True
        else:
            out.append(byte)
    return None if escaped else bytes(out)


class DelimitedFrameDecoder:
    """Incremental decoder: ``feed(bytes) -> list[packet]``. Never raises on bad input.

    Resynchronises on the next F0 after garbage or a rejected candidate; a rejected candidate
    gives up only its first byte, so a real frame hidden behind a false start is still found.
    Counters: ``frames`` decoded, ``crc_errors``, ``length_errors``, ``garbage_bytes`` (every
    byte discarded outside a valid frame). ``on_reject`` (optional) is called with a
    ``REJECTED(reason, packet number, command)`` for each CRC/length rejection; an exception
    in it is swallowed, because a callback bug must not break decoding.
    """

    REJECTED: type[NamedTuple] = NamedTuple  # the protocol's RejectedFrame

    def __init__(self, on_reject: Callable[[Any], None] | None = None):
        self.on_reject = on_reject
        self.crc_errors = 0
        self.length_errors = 0
        self.garbage_bytes = 0
        self.frames = 0
        self._buf = bytearray()

    @property
    def stats(self) -> dict[str, int]:
        """The counters: frames, crc_errors, length_errors, garbage_bytes."""
        return {"frames": self.frames, "crc_errors": self.crc_errors,
                "length_errors": self.length_errors, "garbage_bytes": self.garbage_bytes}

    def reset(self) -> None:
        """Forget buffered bytes (counters are kept)."""
        self._buf.clear()

    def feed(self, data: bytes) -> list:
        """Append ``data`` and return every packet completed by it, oldest first."""
        self._buf += data
        buf = self._buf
        packets: list = []
        while True:
            start = buf.find(START)
            if start < 0:
                self.garbage_bytes += len(buf)
                buf.clear()
                break
            if start:
                self.garbage_bytes += start
                del buf[:start]
            status, end, packet = self._parse_candidate(buf)
            if status == "incomplete":
                break
            if status == "ok":
                packets.append(packet)
                self.frames += 1
                del buf[:end]
            else:  # drop only the F0 and search again
                self.garbage_bytes += 1
                del buf[:1]
        return packets

    def _reject(self, reason: str, stuffed_body: bytes) -> tuple[str, int, None]:
        """Count a ``"crc"`` or ``"length"`` rejection and tell ``on_reject``."""
        if reason == "crc":
            self.crc_errors += 1
        else:
            self.length_errors += 1
        if self.on_reject is not None:
            number, cmd = self._header_of(stuffed_body)
            try:
                self.on_reject(self.REJECTED(reason, number, cmd))
            except Exception:  # noqa: BLE001 - a callback bug must not break decoding
                pass
        return "bad", 0, None

    def _parse_candidate(self, buf: bytearray) -> tuple[str, int, Any]:
        raise NotImplementedError

    def _header_of(self, stuffed_body: bytes) -> tuple[int | None, int | None]:
        raise NotImplementedError
