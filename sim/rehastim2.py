"""A RehaStim2 (ScienceMode2, channel list mode) emulator on a real pseudo-terminal.

Over 400 lines: one device model and its state machine (the pty, thread and records they share
with the other emulator are in pty_device.py).

Any ScienceMode2 client opens ``emulator.port`` (the pty slave path) like the device's
USB-serial port; bytes pass unchanged (the slave is in raw mode). Behaviour emulated:

* Init every 500 ms until an InitAck carries the PKT of one of those Inits.
* GetStimulationMode, InitChannelListMode, StartChannelListMode, StopChannelListMode and
  SinglePulse are acknowledged (command id + 1, the host's PKT, signed result): 0 ok,
  -2 parameter error, -3 wrong mode; a frame with a bad CRC/LEN whose command can still be
  read is answered with -1. Watchdog and InitAck are not acknowledged. Before the InitAck,
  everything but InitAck is ignored.
* Accepted as the device accepts it (clients written against real devices rely on it, e.g.
  pysciencemode; tests/test_rehastim2_pysciencemode.py): StopChannelListMode in start mode
  is a no-op answered 0 (clients send it right after connecting); any inter-pulse interval
  t2 code (1.5..129 ms: the 8 ms minimum is t1's; t2 only spaces the pulses of a doublet or
  triplet, whose group must fit in t1); a pulse width of 1..19 µs is delivered as 20 µs (the
  protocol: "if pw < 20 then pw = 20"). Any byte may arrive escaped (0x55 and 0x0A too).
* Watchdog: no valid packet for 1.2 s while initialised or running -> stops stimulating,
  returns to start mode and sends Init every 500 ms again.
* ``raise_error(code)``: unsolicited StimulationError (-1 emergency switch, -2 electrode,
  -3 module); stimulation stops, start mode.
* Fault knobs: ``ack_enabled = False`` (commands act but are never acknowledged),
  ``nack_result = r`` (the next acknowledged command is refused with result r and not
  applied), ``corrupt_acks = True`` (acks go out with a wrong CRC), ``disconnect()``
  (the pty goes away; the emulated watchdog keeps running).

Delivered stimulation is recorded as pulse trains with ``time.monotonic()`` seconds, taking
effect when the command is received (the real device adds 10-24 ms). All recorded state is
guarded by one lock; the emulator runs one background thread.

Standalone: ``python -m fescontrol.sim.rehastim2 --pty`` prints the port path, runs until SIGINT or
SIGTERM, then prints a summary of the delivered pulse trains.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple

from fescontrol.drivers import sciencemode2 as sm

from .pty_device import PtyDevice, run_standalone

log = logging.getLogger(__name__)

INIT_INTERVAL_S = 0.5
WATCHDOG_TIMEOUT_S = 1.2
CHANNEL_SLOT_S = 0.0015     # each active channel takes a 1.5 ms slot in a period
MIN_DELIVERED_PULSE_WIDTH_US = 20   # the device lengthens a 1..19 µs pulse to 20 µs


def _device_pulse(pulse_width_us: int, current_ma: int) -> tuple[int, int]:
    """(pulse width, current) the device delivers for what was commanded; ValueError for what
    it refuses (pulse width above 500 µs, current above 126 mA)."""
    if 0 < pulse_width_us < MIN_DELIVERED_PULSE_WIDTH_US:
        pulse_width_us = MIN_DELIVERED_PULSE_WIDTH_US
    sm.check_pulse(pulse_width_us, current_ma)
    return pulse_width_us, current_ma


class PulseTrain(NamedTuple):
    """A constant-parameter pulse train on one channel; ``t_end_s`` None while ongoing."""
    t_start_s: float
    t_end_s: float | None
    channel: int
    current_ma: int
    pulse_width_us: int


class Pulse(NamedTuple):
    t_s: float
    channel: int
    current_ma: int
    pulse_width_us: int


@dataclass
class _Train:
    t_start_s: float
    t_end_s: float | None
    channel: int
    current_ma: int
    pulse_width_us: int
    mode: int                 # pulses per group - 1
    period_s: float           # t1
    inter_pulse_s: float      # t2
    slot_offset_s: float
    every_nth: int            # low-frequency channels pulse every (lf_factor + 1)-th period

    def public(self) -> PulseTrain:
        return PulseTrain(self.t_start_s, self.t_end_s, self.channel, self.current_ma, self.pulse_width_us)


class RehaStim2Emulator(PtyDevice):
    """The device on a pty. ``start()`` / ``stop()``; also a context manager."""

    THREAD_NAME = "rehastim2-emulator"

    def __init__(self, *, version: int = 1, tick_s: float = 0.005):
        super().__init__(tick_s=tick_s)
        self.version = version
        self._decoder = sm.FrameDecoder(on_reject=self._on_reject)
        # device state
        self._awaiting_init_ack = True
        self._init_pkts_sent: set[int] = set()
        self._device_pkt = 0
        self._next_init_s: float | None = None
        self._last_rx_s = time.monotonic()
        self._mode = sm.StimulationMode.START
        self._config: sm.ChannelListConfig | None = None
        # records
        self._single_pulses: list[Pulse] = []
        self._sent_inits: list[tuple[float, int]] = []
        self._init_acks: list[int] = []
        self._watchdog_resets: list[float] = []

    def _on_start(self, now: float) -> None:
        self._next_init_s = now

    # ------------------------------------------------------------------ public state

    @property
    def sent_inits(self) -> list[tuple[float, int]]:
        """(monotonic s, pkt) of every Init sent."""
        return self._snapshot("_sent_inits")

    @property
    def init_acks(self) -> list[int]:
        """PKTs of the accepted InitAcks."""
        return self._snapshot("_init_acks")

    @property
    def watchdog_resets(self) -> list[float]:
        """Monotonic s of each watchdog reset."""
        return self._snapshot("_watchdog_resets")

    @property
    def mode(self) -> int:
        """0 start, 1 initialised, 2 running (as GetStimulationMode reports it)."""
        with self._lock:
            return int(self._mode)

    @property
    def connected(self) -> bool:
        """True once an InitAck was accepted (until the next watchdog reset)."""
        with self._lock:
            return not self._awaiting_init_ack

    @property
    def single_pulses(self) -> list[Pulse]:
        with self._lock:
            return list(self._single_pulses)

    @property
    def max_current_ma(self) -> int:
        """Highest current delivered on any channel so far (0 if none)."""
        with self._lock:
            return max([t.current_ma for t in self._trains] + [p.current_ma for p in self._single_pulses],
                       default=0)

    def delivered_current_ma(self, channel: int, t: float | None = None) -> int:
        """Current (mA) of the train on ``channel`` at monotonic time ``t`` (default now); 0 if none."""
        with self._lock:
            t = time.monotonic() if t is None else t
            for tr in reversed(self._trains):
                if tr.channel == channel and tr.t_start_s <= t and (tr.t_end_s is None or t < tr.t_end_s):
                    return tr.current_ma
            return 0

    def pulses(self, t_from: float, t_to: float) -> list[Pulse]:
        """Every pulse delivered in [t_from, t_to) (monotonic s), trains expanded at t1, sorted."""
        with self._lock:
            now = time.monotonic()
            trains = [(tr, tr.t_end_s if tr.t_end_s is not None else now) for tr in self._trains]
            out = [p for p in self._single_pulses if t_from <= p.t_s < t_to]
        for tr, end_s in trains:
            lo, hi = max(t_from, tr.t_start_s), min(t_to, end_s)
            if hi <= lo:
                continue
            base = tr.t_start_s + tr.slot_offset_s
            group = tr.mode + 1
            k0 = max(0, math.floor((lo - base - (group - 1) * tr.inter_pulse_s) / tr.period_s))
            k1 = math.floor((hi - base) / tr.period_s)
            for k in range(k0, k1 + 1):
                if k % tr.every_nth:
                    continue
                for j in range(group):
                    t = base + k * tr.period_s + j * tr.inter_pulse_s
                    if lo <= t < hi:
                        out.append(Pulse(t, tr.channel, tr.current_ma, tr.pulse_width_us))
        out.sort()
        return out

    def raise_error(self, code: int) -> None:
        """Send an unsolicited StimulationError (-1 emergency switch, -2 electrode, -3 module) and stop."""
        if code not in (-1, -2, -3):
            raise ValueError(f"code={code!r}; allowed -1 (emergency switch), -2 (electrode), -3 (module)")
        with self._lock:
            self._end_all(time.monotonic())
            self._mode = sm.StimulationMode.START
            self._config = None
            self._send(sm.stimulation_error(self._take_device_pkt(), code))

    # ------------------------------------------------------------------ thread

    def _timers(self, now: float) -> None:
        if (not self._awaiting_init_ack and self._mode != sm.StimulationMode.START
                and now - self._last_rx_s >= WATCHDOG_TIMEOUT_S):
            log.info("emulator watchdog: no packet for %.3f s, stopping and resetting", now - self._last_rx_s)
            self._end_all(now)
            self._mode = sm.StimulationMode.START
            self._config = None
            self._awaiting_init_ack = True
            self._init_pkts_sent.clear()
            self._next_init_s = now
            self._watchdog_resets.append(now)
        if self._awaiting_init_ack and self._master >= 0 and self._next_init_s is not None \
                and now >= self._next_init_s:
            pkt = self._take_device_pkt()
            self._init_pkts_sent.add(pkt)
            self._sent_inits.append((now, pkt))
            self._send(sm.device_init(pkt, self.version))
            self._next_init_s = now + INIT_INTERVAL_S

    def _take_device_pkt(self) -> int:
        pkt = self._device_pkt
        self._device_pkt = (pkt + 1) % 256
        return pkt

    def _reply(self, pkt: int, cmd: int, result: int, extra: bytes = b"") -> None:
        if not self.ack_enabled:
            return
        frame = bytearray(sm.acknowledgement(pkt, cmd, result, extra))
        if self.corrupt_acks:
            frame[2] ^= 0x01           # wrong CRC
        self._send(bytes(frame))

    def _on_reject(self, rejected: sm.RejectedFrame) -> None:
        self._rejected.append(rejected)
        if (not self._awaiting_init_ack and rejected.pkt is not None
                and rejected.cmd in {int(c) for c in sm.ACKNOWLEDGED}):
            self._reply(rejected.pkt, rejected.cmd, sm.Result.TRANSFER_ERROR)

    # ------------------------------------------------------------------ commands

    def _handle(self, packet: sm.Packet, now: float) -> None:
        self._received.append((now, packet))
        self._last_rx_s = now
        cmd = packet.cmd
        if self._awaiting_init_ack:
            if cmd == sm.Command.INIT_ACK and packet.pkt in self._init_pkts_sent \
                    and packet.data[:1] in (b"", b"\x00"):
                self._awaiting_init_ack = False
                self._init_pkts_sent.clear()
                self._mode = sm.StimulationMode.START
                self._init_acks.append(packet.pkt)
            return
        if cmd not in {int(c) for c in sm.ACKNOWLEDGED}:
            return                                  # Watchdog, late InitAck, unknown: no reply
        if self.nack_result is not None:
            result, self.nack_result = self.nack_result, None
            self._reply(packet.pkt, cmd, result)
            return
        handler = {
            sm.Command.GET_STIMULATION_MODE: self._get_mode,
            sm.Command.INIT_CHANNEL_LIST_MODE: self._init_channel_list,
            sm.Command.START_CHANNEL_LIST_MODE: self._start_channel_list,
            sm.Command.STOP_CHANNEL_LIST_MODE: self._stop_channel_list,
            sm.Command.SINGLE_PULSE: self._single_pulse,
        }[cmd]
        result, extra = handler(packet.data, now)
        self._reply(packet.pkt, cmd, result, extra)

    def _get_mode(self, data: bytes, now: float) -> tuple[int, bytes]:
        return sm.Result.OK, bytes((int(self._mode),))

    def _init_channel_list(self, data: bytes, now: float) -> tuple[int, bytes]:
        if self._mode == sm.StimulationMode.RUNNING:
            return sm.Result.WRONG_MODE, b""
        try:
            cfg = sm.parse_init_channel_list_mode(data)
        except ValueError:
            return sm.Result.PARAMETER_ERROR, b""
        t1 = cfg.main_interval_ms
        if (cfg.lf_factor > sm.MAX_LF_FACTOR or not cfg.channels or not set(cfg.lf_channels) <= set(cfg.channels)
                or cfg.execution != 0
                or (t1 != 0 and not sm.MIN_INTERVAL_MS <= t1 <= sm.MAX_MAIN_INTERVAL_MS)
                or (t1 != 0 and t1 < CHANNEL_SLOT_S * 1000 * len(cfg.channels))):
            return sm.Result.PARAMETER_ERROR, b""
        self._config = cfg
        self._mode = sm.StimulationMode.INITIALISED
        return sm.Result.OK, b""

    def _start_channel_list(self, data: bytes, now: float) -> tuple[int, bytes]:
        cfg = self._config
        if self._mode == sm.StimulationMode.START or cfg is None:
            return sm.Result.WRONG_MODE, b""
        try:
            settings = sm.parse_start_channel_list_mode(data)
        except ValueError:
            return sm.Result.PARAMETER_ERROR, b""
        if len(settings) != len(cfg.channels):
            return sm.Result.PARAMETER_ERROR, b""
        delivered = []
        for mode, pulse_width_us, current_ma in settings:
            try:
                pulse_width_us, current_ma = _device_pulse(pulse_width_us, current_ma)
            except ValueError:
                return sm.Result.PARAMETER_ERROR, b""
            delivered.append((mode, pulse_width_us, current_ma))
            group_ms = (mode + 1) * cfg.inter_pulse_ms
            if mode not in (0, 1, 2) or (cfg.main_interval_ms and group_ms > cfg.main_interval_ms):
                return sm.Result.PARAMETER_ERROR, b""
        self._mode = sm.StimulationMode.RUNNING
        for index, (channel, (mode, pulse_width_us, current_ma)) in enumerate(zip(cfg.channels, delivered)):
            self._apply(now, cfg, index, channel, mode, pulse_width_us, current_ma)
        return sm.Result.OK, b""

    def _apply(self, now: float, cfg: sm.ChannelListConfig, index: int, channel: int, mode: int,
               pulse_width_us: int, current_ma: int) -> None:
        delivers = current_ma > 0 and pulse_width_us > 0
        if cfg.main_interval_ms == 0:                        # one-shot: one group now
            if delivers:
                for j in range(mode + 1):
                    self._single_pulses.append(Pulse(now + index * CHANNEL_SLOT_S + j * cfg.inter_pulse_ms / 1000,
                                                     channel, current_ma, pulse_width_us))
            return
        old = self._active.get(channel)
        if old is not None and (old.current_ma, old.pulse_width_us, old.mode) == (current_ma, pulse_width_us, mode):
            return
        if old is not None:
            old.t_end_s = now
            del self._active[channel]
        if delivers:
            every = cfg.lf_factor + 1 if channel in cfg.lf_channels else 1
            train = _Train(now, None, channel, current_ma, pulse_width_us, mode, cfg.main_interval_ms / 1000,
                           cfg.inter_pulse_ms / 1000, index * CHANNEL_SLOT_S, every)
            self._trains.append(train)
            self._active[channel] = train

    def _stop_channel_list(self, data: bytes, now: float) -> tuple[int, bytes]:
        # in start mode too: nothing to stop, answered 0 (pysciencemode sends it right after
        # connecting and treats any other result as fatal)
        self._end_all(now)
        self._mode = sm.StimulationMode.START
        self._config = None
        return sm.Result.OK, b""

    def _single_pulse(self, data: bytes, now: float) -> tuple[int, bytes]:
        if self._mode != sm.StimulationMode.START:
            return sm.Result.WRONG_MODE, b""
        try:
            channel, pulse_width_us, current_ma = sm.parse_single_pulse(data)
            pulse_width_us, current_ma = _device_pulse(pulse_width_us, current_ma)
        except ValueError:
            return sm.Result.PARAMETER_ERROR, b""
        if channel > sm.MAX_CHANNELS:
            return sm.Result.PARAMETER_ERROR, b""
        if current_ma > 0 and pulse_width_us > 0:
            self._single_pulses.append(Pulse(now, channel, current_ma, pulse_width_us))
        return sm.Result.OK, b""

    def _end_all(self, now: float) -> None:
        for train in self._active.values():
            train.t_end_s = now
        self._active.clear()

    # ------------------------------------------------------------------ summary

    def summary(self) -> str:
        """Human-readable list of delivered pulse trains (times relative to start())."""
        with self._lock:
            trains = list(self._trains)
            singles = list(self._single_pulses)
            resets = list(self._watchdog_resets)
            now = time.monotonic()
        lines = [f"RehaStim2 emulator: {len(trains)} pulse train(s), {len(singles)} single pulse(s), "
                 f"max {self.max_current_ma} mA, {len(resets)} watchdog reset(s)"]
        for tr in trains:
            end = tr.t_end_s if tr.t_end_s is not None else now
            n = len([p for p in self.pulses(tr.t_start_s, end) if p.channel == tr.channel])
            lines.append(f"  ch{tr.channel}: {tr.current_ma:3d} mA {tr.pulse_width_us:3d} us "
                         f"{1 / tr.period_s:6.2f} Hz  t={tr.t_start_s - self.t0_s:8.3f}..{end - self.t0_s:8.3f} s "
                         f"({end - tr.t_start_s:.3f} s, {n} pulses)" + ("" if tr.t_end_s is not None else " ongoing"))
        for p in singles:
            lines.append(f"  ch{p.channel}: single pulse {p.current_ma} mA {p.pulse_width_us} us "
                         f"at t={p.t_s - self.t0_s:.3f} s")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_standalone(RehaStim2Emulator, "python -m fescontrol.sim.rehastim2",
                          "RehaStim2 ScienceMode2 emulator on a pseudo-terminal.", argv)

if __name__ == "__main__":
    sys.exit(main())
