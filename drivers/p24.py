"""Hasomed P24 over ScienceMode4, mid level.

Link: USB CDC-ACM (``/dev/ttyACM*``), opened as the IFU says: 3 000 000 Bd, 8N2, RTS/CTS
(a CDC-ACM device ignores these; a pty accepts them).

Handshake (``open()``, and ``recover()`` after a fault): flush input, GetDeviceId,
GetExtendedVersion, GetStimStatus; a low level still initialised gets ll_stop, a mid level
still initialised or running gets ml_stop; then ml_init with "stop all channels on any
error". Every acknowledgement is matched on command + 1 and packet number and its result
checked; each waits up to ``init_timeout_s``.

Running: ``set_output`` sends ml_update for every configured channel, each a symmetric,
charge-balanced biphasic pulse (+I for the pulse width, then -I as long) repeated at the
profile frequency (period rounded up to 0.5 ms, so never faster than asked). A channel at
zero stays in the update with 0 mA points: the device's handling of a channel left out of
the mask is not documented, 0 mA is. At most one ml_update is in flight: an output asked
for while one waits for its acknowledgement is sent when it arrives (newest wins), so the
6-bit packet numbers are never reused while still pending. After ``stop()`` or a fault the
next update is preceded by ml_init.

Keep-alive: ``keepalive()`` (from the control loop, through the supervisor) sends
ml_get_current_data every ``keepalive_interval_s`` while stimulation runs, whether or not
updates went out meanwhile (``KEEPALIVE_WHEN_BUSY``). The P24 stops by itself 2 s after the last
ml_update or ml_get_current_data, so a hung loop lets the device stop. Its acknowledgement
reports per-channel errors: an electrode error, a pulse timeout or a low current latches a
StimulationFault naming the channel; a channel that should stimulate but is reported off
latches "device_stopped". General-error (66) and unknown-command (67) packets, corrupted
frames and non-zero results are errors; ``poll()`` raises them and the supervisor stops.
``stop()`` sends ml_stop (stimulation and high voltage off) and waits for its acknowledgement.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from . import sciencemode4 as sm4
from .stimulator import (
    Stimulator,
    StimulatorError,
    StimulatorInitError,
    StimulatorOperationError,
)

log = logging.getLogger(__name__)

MAX_CURRENT_MA = int(sm4.OUTPUT_MAX_MA)     #: 130 mA: the output stage's range (limits.py caps lower)
MIN_POINT_US = 10                          #: the device lengthens shorter points to 10 µs
#: a channel's start is not expected in the device's report until this long after its ack
START_SETTLE_S = 0.05
#: the device stops by itself this long after the last ml_update / ml_get_current_data
DEVICE_WATCHDOG_S = 2.0
#: silence this long while running means our loop stalled: the device may have stopped
#: (the protocol asks for a poll at least every second), so the link state is in doubt
MAX_SILENCE_S = 1.0

_CHANNEL_FAULT = {
    sm4.ChannelError.ELECTRODE: ("electrode_error", "electrode error (electrode off or broken cable)"),
    sm4.ChannelError.PULSE_TIMEOUT: ("pulse_timeout", "pulse timeout"),
    sm4.ChannelError.LOW_CURRENT: ("low_current", "current lower than set (high skin or electrode impedance)"),
}
_ACK_IDS = frozenset(int(c) for c in sm4.ACKNOWLEDGED.values())
_UPDATE_ACK = int(sm4.Command.ML_UPDATE_ACK)
_POLL_ACK = int(sm4.Command.ML_GET_CURRENT_DATA_ACK)


class P24(Stimulator):
    """P24 driver. Extra keyword argument: ``init_timeout_s`` (0.1..10 s, default 1.0): how long
    each handshake command and ml_init may take to be acknowledged.

    Currents are sent as integer mA (the ABC rounds down), 0..130 mA; pulse widths 0 or
    10..4095 µs per phase (ValueError otherwise, nothing sent). Channels 1..8. The period is
    1000 / frequency_hz rounded up to 0.5 ms (0.5..16383.5 ms).
    """

    SERIAL_SETTINGS = {"baudrate": 3_000_000, "bytesize": 8, "parity": "N", "stopbits": 2,
                       "xonxoff": False, "rtscts": True, "dsrdtr": False,
                       "timeout": 0, "write_timeout": 0.1}
    # the poll is how channel errors are reported, and an ml_update may clear a reported error
    # (the emulator does; the device's rule is not documented): poll on time even while
    # updates flow (ramps on several channels can keep updates coming for a whole stride)
    KEEPALIVE_WHEN_BUSY = True

    def __init__(self, port: str, *, init_timeout_s: float = 1.0, **kwargs: Any):
        super().__init__(port, **kwargs)
        if any(ch > sm4.CHANNELS for ch in self.channels):
            raise ValueError(f"channels={list(self.channels)}; the P24 has channels 1..{sm4.CHANNELS}")
        if not (isinstance(init_timeout_s, (int, float)) and 0.1 <= init_timeout_s <= 10):
            raise ValueError(f"init_timeout_s={init_timeout_s!r}; allowed 0.1..10 s")
        self.init_timeout_s = float(init_timeout_s)
        self.period_ms = sm4.period_for_frequency(self.frequency_hz)   # ValueError now, not later
        self._decoder = sm4.FrameDecoder(on_reject=self._on_reject)
        self._nr = 0                         # last packet number used
        self._initialised = False            # device believed in mid level (init or running)
        self._replies: dict[int, bytes] = {}  # ack id -> data of the last one (handshake answers)
        self._update_nr: int | None = None   # nr of the ml_update in flight
        self._update_levels: dict[int, tuple[int, int]] | None = None
        self._queued: dict[int, tuple[int, int]] | None = None
        self._updates: dict[tuple[tuple[int, int], ...], tuple[bytes, str]] = {}   # see _update_of
        self._confirmed: dict[int, tuple[int, int]] = {}   # levels of the last acknowledged update
        self._confirmed_s = 0.0
        self._poll_expect: dict[int, frozenset[int] | None] = {}
        self.device_id: str | None = None
        self.firmware_version: sm4.ExtendedVersion | None = None
        self.channel_errors: dict[int, int] = {}      # last non-zero nibbles the device reported

    @property
    def link_stats(self) -> dict[str, int]:
        """Frames decoded and rejected on the device -> host direction."""
        return self._decoder.stats

    # ------------------------------------------------------------------ helpers

    def _next_nr(self) -> int:
        self._nr = sm4.next_packet_number(self._nr)
        return self._nr

    def _describe_result(self, result: int) -> str:
        return sm4.result_text(result)

    def _request(self, frame_of_nr, cmd: int, what: str, timeout_s: float | None = None) -> int:
        """Write one request with a fresh packet number and register its acknowledgement."""
        nr = self._next_nr()
        frame = frame_of_nr(nr)
        self._write(frame)
        self._expect((cmd + 1, nr), ("%s nr %d", what, nr), timeout_s)
        return nr

    def _call(self, frame_of_nr, cmd: int, what: str) -> bytes:
        """Blocking request: wait for its acknowledgement (raises as poll()); returns its data."""
        self._replies.pop(cmd + 1, None)
        nr = self._request(frame_of_nr, cmd, what, self.init_timeout_s)
        while self._is_pending((cmd + 1, nr)):
            self._service()
            time.sleep(0.001)
        return self._replies.pop(cmd + 1, b"")

    #: distinct outputs whose ml_update payload is kept (one channel at a fixed pulse width has
    #: at most 131)
    UPDATE_CACHE_MAX = 1024

    def _update_of(self, levels: Mapping[int, tuple[int, int]]) -> tuple[bytes, str]:
        """The ml_update payload and its text for ``levels`` (current mA, pulse width µs per
        channel), validated by the codec (ValueError outside the device's range); kept for the
        next output of the same values, up to UPDATE_CACHE_MAX of them."""
        key = tuple([levels[ch] for ch in self.channels])
        update = self._updates.get(key)
        if update is None:
            summary = ", ".join(f"ch{ch} {levels[ch][0]} mA {levels[ch][1]} µs" for ch in self.channels)
            update = (sm4.ml_update_data(self._configs(levels)), f"ml_update ({summary})")
            if len(self._updates) < self.UPDATE_CACHE_MAX:
                self._updates[key] = update
        return update

    def _configs(self, levels: Mapping[int, tuple[int, int]]) -> dict[int, sm4.ChannelConfig]:
        configs = {}
        for ch in self.channels:
            current_ma, pulse_width_us = levels[ch]
            if not 0 <= current_ma <= MAX_CURRENT_MA:
                raise ValueError(f"channel {ch}: current {current_ma} mA; the P24 allows 0..{MAX_CURRENT_MA} mA")
            if not (pulse_width_us == 0 or MIN_POINT_US <= pulse_width_us <= sm4.MAX_POINT_US):
                raise ValueError(f"channel {ch}: pulse_width_us={pulse_width_us}; allowed 0 or "
                                 f"{MIN_POINT_US}..{sm4.MAX_POINT_US} µs per phase")
            if current_ma == 0 or pulse_width_us == 0:
                current_ma, pulse_width_us = 0, max(pulse_width_us, MIN_POINT_US)
            configs[ch] = sm4.ChannelConfig(self.period_ms, sm4.balanced_biphasic(current_ma, pulse_width_us))
        return configs

    # ------------------------------------------------------------------ Stimulator hooks

    def _handshake(self) -> None:
        try:
            self._port.reset_input_buffer()
        except Exception as exc:  # noqa: BLE001 - any port failure here is an init failure
            raise StimulatorInitError(f"cannot flush stimulator port {self.port!r}: {exc}") from exc
        self._decoder.reset()
        self._initialised = False
        self._clear_update_state()
        try:
            _, self.device_id = sm4.parse_device_id_ack(
                self._call(sm4.get_device_id, sm4.Command.GET_DEVICE_ID, "GetDeviceId"))
            _, self.firmware_version = sm4.parse_extended_version_ack(
                self._call(sm4.get_extended_version, sm4.Command.GET_EXTENDED_VERSION, "GetExtendedVersion"))
            status = sm4.parse_stim_status_ack(
                self._call(sm4.get_stim_status, sm4.Command.GET_STIM_STATUS, "GetStimStatus"))
        except ValueError as exc:
            raise StimulatorInitError(f"the device on {self.port!r} gave a malformed answer: {exc}") from exc
        if status.status == sm4.StimStatus.LL_INITIALIZED:
            log.info("P24 on %s was in the low level: ll_stop", self.port)
            self._call(sm4.ll_stop, sm4.Command.LL_STOP, "ll_stop")
        elif status.status in (sm4.StimStatus.ML_INITIALIZED, sm4.StimStatus.ML_RUNNING):
            log.info("P24 on %s was in the mid level (status %d): ml_stop", self.port, status.status)
            self._call(sm4.ml_stop, sm4.Command.ML_STOP, "ml_stop")
        self._call(lambda nr: sm4.ml_init(nr, stop_all_on_error=True), sm4.Command.ML_INIT, "ml_init")
        self._initialised = True
        log.info("P24 %s (firmware %s) on %s: mid level initialised", self.device_id,
                 ".".join(map(str, self.firmware_version.firmware)), self.port)

    def _clear_update_state(self) -> None:
        self._update_nr = None
        self._update_levels = None
        self._queued = None
        self._confirmed = {}
        self._poll_expect.clear()

    def poll(self) -> None:
        """As ``Stimulator.poll``; also latches "device_stopped" when the loop was silent for
        ``MAX_SILENCE_S`` or more while stimulation ran (see ``_check_silence``)."""
        if self._port is not None:
            self._check_silence()
        super().poll()

    def _check_silence(self) -> bool:
        """True (fault latched) when nothing was sent for MAX_SILENCE_S while running: a hung
        loop let the device's 2 s watchdog stop it, or nearly. Resuming silently would restart
        stimulation with the next update, so a person must clear the fault first."""
        if not self._running or self._fault is not None or self._last_sent_s is None:
            return False
        silent_s = time.monotonic() - self._last_sent_s
        if silent_s < MAX_SILENCE_S:
            return False
        self._running = False
        self._device_fault("device_stopped",
                           f"nothing sent to the P24 for {silent_s:.2f} s while stimulating (the control loop "
                           f"stalled); the device stops by itself after {DEVICE_WATCHDOG_S:g} s, so its state is "
                           f"in doubt")
        return True

    def _send_output(self, levels: Mapping[int, tuple[int, int]]) -> None:
        levels = {ch: levels[ch] for ch in self.channels}
        self._update_of(levels)                     # ValueError before anything is written
        if self._check_silence():
            fault = self._fault
            self._errors = [e for e in self._errors if e is not fault]
            raise fault
        if self._update_nr is not None and self._is_pending((_UPDATE_ACK, self._update_nr)):
            self._queued = levels                   # sent when the one in flight is acknowledged
            return
        self._write_update(levels)

    def _write_update(self, levels: dict[int, tuple[int, int]]) -> None:
        data, what = self._update_of(levels)
        if not self._initialised:
            self._request(lambda nr: sm4.ml_init(nr, stop_all_on_error=True), sm4.Command.ML_INIT,
                          "ml_init", self.init_timeout_s)
            self._initialised = True
        self._update_nr = self._request(lambda nr: sm4.encode_frame(nr, sm4.Command.ML_UPDATE, data),
                                        sm4.Command.ML_UPDATE, what)
        self._update_levels = levels
        self._queued = None
        self._running = True

    def _send_keepalive(self) -> None:
        if not self._running or any(p.key[0] == _POLL_ACK for p in self._pending):
            return                      # nothing to keep alive, or the last poll is still due
        settled = (self._update_nr is None or not self._is_pending((_UPDATE_ACK, self._update_nr))) \
            and time.monotonic() - self._confirmed_s >= max(START_SETTLE_S, 2 * self.period_ms / 1000)
        expect = frozenset(ch for ch, (ma, pw) in self._confirmed.items() if ma > 0 and pw > 0) \
            if settled else None
        nr = self._request(sm4.ml_get_current_data, sm4.Command.ML_GET_CURRENT_DATA, "ml_get_current_data")
        self._poll_expect[nr] = expect

    def _send_stop(self) -> None:
        self._clear_update_state()
        self._initialised = False
        self._request(sm4.ml_stop, sm4.Command.ML_STOP, "ml_stop")

    def _on_reconnect(self) -> None:
        self._decoder.reset()
        self._initialised = False
        self._clear_update_state()

    # ------------------------------------------------------------------ receiving

    def _on_reject(self, rejected: sm4.RejectedFrame) -> None:
        self._errors.append(StimulatorError(
            f"corrupted frame from the P24 on {self.port} ({rejected.reason} error"
            + (f", command {rejected.cmd} nr {rejected.nr}" if rejected.cmd is not None else "") + ")"))

    def _handle_bytes(self, data: bytes) -> None:
        for packet in self._decoder.feed(data):
            self._handle_packet(packet)
        if (self._queued is not None and self._fault is None and not self._errors
                and (self._inhibited is None or not any(ma > 0 for ma, _ in self._queued.values()))
                and not (self._update_nr is not None and self._is_pending((_UPDATE_ACK, self._update_nr)))):
            self._write_update(self._queued)

    def _handle_packet(self, packet: sm4.Packet) -> None:
        cmd, nr, data = packet.cmd, packet.nr, packet.data
        if cmd in (sm4.Command.GENERAL_ERROR, sm4.Command.UNKNOWN_COMMAND):
            self._device_error(packet)
            return
        if cmd not in _ACK_IDS:
            log.debug("ignoring %r from the P24", packet)
            return
        result = data[0] if data else int(sm4.Result.TRANSFER_ERROR)
        if cmd == _UPDATE_ACK and nr == self._update_nr and result == 0 and self._update_levels is not None:
            if self._update_levels != self._confirmed:
                self._confirmed_s = time.monotonic()
            self._confirmed = self._update_levels
        if cmd == _POLL_ACK:
            expect = self._poll_expect.pop(nr, None)
            if self._is_pending((cmd, nr)) and result == 0:
                self._check_current_data(data, expect)
        self._replies[cmd] = data
        self._ack_received((cmd, nr), result)

    def _check_current_data(self, data: bytes, expect: frozenset[int] | None) -> None:
        try:
            report = sm4.parse_current_data_ack(data)
        except ValueError as exc:
            self._errors.append(StimulatorError(f"P24 channel report malformed: {exc}"))
            return
        self.channel_errors = dict(report.channel_errors)
        if report.channel_errors:
            texts = []
            for ch, nibble in sorted(report.channel_errors.items()):
                reason, text = _CHANNEL_FAULT.get(nibble, ("module_error", f"error code {nibble}"))
                texts.append((ch, reason, text))
            ch, reason, _ = texts[0]
            detail = "; ".join(f"channel {c}: {t}" for c, _, t in texts)
            self._running = False
            self._device_fault(reason, f"P24 reported {detail}; stimulation stopped (all channels); "
                                       f"call recover() after a person has checked the electrodes", channel=ch)
            return
        if expect:
            off = sorted(expect - set(report.active_channels))
            if off:
                self._running = False
                self._device_fault("device_stopped",
                                   f"P24 reports channel {', '.join(map(str, off))} not stimulating although "
                                   f"it should (the device stopped by itself)", channel=off[0])

    def _device_error(self, packet: sm4.Packet) -> None:
        result = packet.data[0] if packet.data else -1
        name = "general error" if packet.cmd == sm4.Command.GENERAL_ERROR else "unknown command"
        matched = [p for p in self._pending if p.key[1] == packet.nr]
        for p in matched:
            self._pending.remove(p)
        about = f" for {', '.join(p.what for p in matched)}" if matched else ""
        self._errors.append(StimulatorOperationError(
            f"P24 sent {name} (packet {packet.cmd}, nr {packet.nr}){about}: result {result} "
            f"({sm4.result_text(result)})", result))
