"""Hasomed RehaStim2 over ScienceMode2, channel list mode.

Link: 460800 Bd, 8 data bits, even parity, 1 stop bit, no flow control.

Handshake (``open()``, and ``recover()`` after a device reset): flush input, wait up to
``handshake_timeout_s`` (1.5 s) for the device's Init (it repeats every 500 ms until
acknowledged), answer InitAck with that Init's PKT, send InitChannelListMode (t1 from
``frequency_hz``, t2 = ``inter_pulse_ms``) and check its acknowledgement.
After a StimulationError the device stays connected (start mode), so ``recover()`` only
re-sends InitChannelListMode.

Running: every ``set_output`` sends StartChannelListMode (it starts, then updates); after
``stop()`` or a fault the next one re-sends InitChannelListMode first. An unsolicited Init
while open means the device reset (watchdog or power): ``poll()`` raises
StimulationFault("device_reset") and the driver does NOT answer the Init until ``recover()``.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from . import sciencemode2 as sm
from .stimulator import (
    StimulatorError,
    StimulatorInitError,
    StimulatorTimeoutError,
    Stimulator,
)

log = logging.getLogger(__name__)

_FAULT_REASON = {
    sm.StimulationErrorCode.EMERGENCY_SWITCH: "emergency_switch",
    sm.StimulationErrorCode.ELECTRODE_ERROR: "electrode_error",
    sm.StimulationErrorCode.MODULE_ERROR: "module_error",
}
_ACK_IDS = frozenset(int(c) for c in sm.ACKNOWLEDGED.values())


class RehaStim2(Stimulator):
    """RehaStim2 driver. Extra keyword arguments: ``inter_pulse_ms`` (t2, 8..129 ms in 0.5 ms
    steps; only used by doublets/triplets) and ``handshake_timeout_s`` (wait for Init).

    Currents are sent as integer mA, rounded down from ``ChannelOutput.current_ma``, and
    limited to 0..126 mA; pulse widths 0 or 20..500 µs (ValueError otherwise, nothing sent).
    Channels are 1..8; t1 = 1000 / frequency_hz is rounded up to the device's 0.5 ms grid.
    """

    SERIAL_SETTINGS = {"baudrate": 460800, "bytesize": 8, "parity": "E", "stopbits": 1,
                       "xonxoff": False, "rtscts": False, "dsrdtr": False,
                       "timeout": 0, "write_timeout": 0.1}

    def __init__(self, port: str, *, inter_pulse_ms: float = 8.0, handshake_timeout_s: float = 1.5,
                 **kwargs: Any):
        super().__init__(port, **kwargs)
        self.inter_pulse_ms = float(inter_pulse_ms)
        if not 0.6 <= handshake_timeout_s <= 10:
            raise ValueError(f"handshake_timeout_s={handshake_timeout_s!r}; allowed 0.6..10 s "
                             f"(the device repeats Init every 0.5 s)")
        self.handshake_timeout_s = float(handshake_timeout_s)
        self._init_frame(0)                      # validates channels, frequency, t2 now
        self._decoder = sm.FrameDecoder()
        self._updates: dict[tuple[tuple[int, int], ...], tuple[bytes, str]] = {}   # see _update_of
        self._pkt = 0                            # last host PKT used
        self._needs_init_ack = True              # the device is (or may be) sending Init
        self._initialised = False                # device believed in channel-list init/run mode
        self._handshaking = False
        self._init_pkt_seen: int | None = None
        self._init_acked = False
        self._reacked = False

    @property
    def link_stats(self) -> dict[str, int]:
        """Frames decoded and rejected on the device -> host direction."""
        return self._decoder.stats

    # ------------------------------------------------------------------ helpers

    def _next_pkt(self) -> int:
        self._pkt = (self._pkt + 1) % 256
        return self._pkt

    def _init_frame(self, pkt: int) -> bytes:
        return sm.init_channel_list_mode(pkt, list(self.channels), self.frequency_hz,
                                         inter_pulse_ms=self.inter_pulse_ms)

    # ------------------------------------------------------------------ Stimulator hooks

    def _handshake(self) -> None:
        deadline = time.monotonic() + self.handshake_timeout_s
        self._handshaking = True
        self._initialised = False
        self._init_acked = False
        self._reacked = False
        try:
            self._service()                       # notice an Init already waiting
            if self._needs_init_ack:
                self._exchange_init(deadline)
            while True:
                pkt = self._next_pkt()
                try:
                    self._transact(self._init_frame(pkt), (sm.Command.INIT_CHANNEL_LIST_MODE_ACK, pkt),
                                   f"InitChannelListMode pkt {pkt}")
                    break
                except StimulatorTimeoutError:
                    # our first InitAck was not taken (an Init came after it): try once more
                    if self._reacked and time.monotonic() < deadline:
                        self._reacked = False
                        continue
                    raise
            self._initialised = True
        finally:
            self._handshaking = False

    def _exchange_init(self, deadline: float) -> None:
        """Flush stale input, wait for a fresh Init and acknowledge it with its PKT."""
        try:
            self._port.reset_input_buffer()
        except Exception as exc:  # noqa: BLE001 - any port failure here is an init failure
            raise StimulatorInitError(f"cannot flush stimulator port {self.port!r}: {exc}") from exc
        self._decoder.reset()
        self._init_pkt_seen = None
        while self._init_pkt_seen is None:
            if time.monotonic() >= deadline:
                raise StimulatorInitError(
                    f"no Init from the RehaStim2 on {self.port!r} within {self.handshake_timeout_s:g} s: "
                    f"is it switched on, connected, and not held by another program?")
            time.sleep(0.002)
            self._service()
        self._write(sm.init_ack(self._init_pkt_seen))
        self._init_acked = True
        self._needs_init_ack = False
        log.debug("InitAck sent for Init pkt %d", self._init_pkt_seen)

    def _send_output(self, levels: Mapping[int, tuple[int, int]]) -> None:
        key = tuple([levels[ch] for ch in self.channels])     # (current mA, pulse width µs) per channel
        update = self._updates.get(key)
        if update is None:
            update = self._update_of(key)                     # ValueError before any write
        payload, summary = update
        pkt = (self._pkt + 1) % 256
        if self._initialised:
            frame = sm.encode_stuffed_frame(pkt, sm.Command.START_CHANNEL_LIST_MODE, payload)
            self._pkt = pkt
            self._write(frame)
            self._expect((sm.Command.START_CHANNEL_LIST_MODE_ACK, pkt), ("StartChannelListMode pkt %d (%s)", pkt,
                                                                        summary))
            self._running = True
            return
        init_pkt, pkt = pkt, (pkt + 1) % 256
        frames = self._init_frame(init_pkt) + sm.encode_stuffed_frame(pkt, sm.Command.START_CHANNEL_LIST_MODE, payload)
        self._pkt = pkt
        self._write(frames)
        self._expect((sm.Command.INIT_CHANNEL_LIST_MODE_ACK, init_pkt), f"InitChannelListMode pkt {init_pkt}")
        self._expect((sm.Command.START_CHANNEL_LIST_MODE_ACK, pkt), ("StartChannelListMode pkt %d (%s)", pkt, summary))
        self._initialised = True
        self._running = True

    #: distinct outputs whose payload is kept (one channel at a fixed pulse width has at most 127)
    UPDATE_CACHE_MAX = 1024

    def _update_of(self, key: tuple[tuple[int, int], ...]) -> tuple[bytes, str]:
        """The stuffed StartChannelListMode payload and its text for ``key`` (current mA, pulse
        width µs per channel, as ``set_output`` built them: ints, rounded down), validated by
        the codec (ValueError outside the device's range); kept for the next output of the same
        values, up to UPDATE_CACHE_MAX of them."""
        payload = sm.start_channel_list_payload([(sm.PulseMode.SINGLE, pw, current) for current, pw in key])
        summary = ", ".join(f"ch{ch} {current} mA {pw} µs" for ch, (current, pw) in zip(self.channels, key))
        update = (sm.stuff(payload), summary)
        if len(self._updates) < self.UPDATE_CACHE_MAX:
            self._updates[key] = update
        return update

    def _send_keepalive(self) -> None:
        # GetStimulationMode, not Watchdog: the device answers it, so silence is a timeout
        # within keepalive_interval_s + ack_timeout_s instead of going unnoticed during a plateau
        pkt = self._next_pkt()
        self._write(sm.get_stimulation_mode(pkt))
        self._expect((sm.Command.GET_STIMULATION_MODE_ACK, pkt), f"GetStimulationMode keep-alive pkt {pkt}")

    def _send_stop(self) -> None:
        try:
            pkt = self._next_pkt()
            self._write(sm.start_channel_list_mode(pkt, [(0, 0, 0)] * len(self.channels)))
            self._expect((sm.Command.START_CHANNEL_LIST_MODE_ACK, pkt), f"zero-current update pkt {pkt}")
        except StimulatorError as exc:
            log.warning("stop: zero-current update not sent: %s", exc)
        pkt = self._next_pkt()
        self._initialised = False
        self._write(sm.stop_channel_list_mode(pkt))
        self._expect((sm.Command.STOP_CHANNEL_LIST_MODE_ACK, pkt), f"StopChannelListMode pkt {pkt}")

    def _on_reconnect(self) -> None:
        self._decoder.reset()
        self._needs_init_ack = True
        self._initialised = False

    def _handle_bytes(self, data: bytes) -> None:
        errors_before = self._decoder.crc_errors + self._decoder.length_errors
        for packet in self._decoder.feed(data):
            self._handle_packet(packet)
        rejected = self._decoder.crc_errors + self._decoder.length_errors - errors_before
        if rejected:
            log.warning("discarded %d corrupted frame(s) from the RehaStim2 on %s", rejected, self.port)

    def _handle_packet(self, packet: sm.Packet) -> None:
        cmd = packet.cmd
        if cmd in _ACK_IDS:
            result = sm.signed_byte(packet.data[0]) if packet.data else int(sm.Result.TRANSFER_ERROR)
            self._ack_received((cmd, packet.pkt), result)
            if (cmd == sm.Command.GET_STIMULATION_MODE_ACK and result == 0 and len(packet.data) > 1
                    and self._running and packet.data[1] == sm.StimulationMode.START):
                self._initialised = False
                self._device_fault("device_reset", "RehaStim2 reports start mode (not stimulating) while "
                                                   "it should be running; call recover() after a person "
                                                   "has cleared it")
        elif cmd == sm.Command.INIT:
            self._on_init(packet.pkt)
        elif cmd == sm.Command.STIMULATION_ERROR:
            code = sm.signed_byte(packet.data[0]) if packet.data else None
            reason = _FAULT_REASON.get(code, "module_error")
            self._initialised = False
            self._pending.clear()
            self._device_fault(reason, f"RehaStim2 reported StimulationError {code} ({reason}) and stopped "
                                       f"stimulating; call recover() after a person has cleared it")
        else:
            log.debug("ignoring %r from the RehaStim2", packet)

    def _on_init(self, device_pkt: int) -> None:
        if self._handshaking:
            if self._init_acked:      # crossed our InitAck, or the InitAck was not taken: ack again
                self._write(sm.init_ack(device_pkt))
                self._reacked = True
            else:
                self._init_pkt_seen = device_pkt
            return
        self._needs_init_ack = True
        self._initialised = False
        if self._session_open:
            self._pending.clear()
            self._device_fault("device_reset",
                               f"RehaStim2 sent Init (pkt {device_pkt}): it reset (watchdog or power) and "
                               f"stopped stimulating; call recover() after a person has cleared it")
