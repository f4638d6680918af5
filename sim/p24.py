"""A Hasomed P24 (ScienceMode4) emulator on a real pseudo-terminal.

Over 400 lines: one device model and its state machine (the pty, thread and records they share
with the other emulator are in pty_device.py).

Any ScienceMode4 client opens ``emulator.port`` (the pty slave path) like the device's
``/dev/ttyACM*``; bytes pass unchanged (the slave is in raw mode; line settings are
accepted and ignored, as a USB CDC-ACM device does). Behaviour emulated (docs/sciencemode4.md):

* General: GetDeviceId (53: result + 10 characters), GetExtendedVersion (69), GetStimStatus
  (63: status 0 idle, 1 low level, 2 mid level initialised, 3 mid level running; HV 1 off,
  6 = 150 V), Reset (59, then idle), battery (55). Every acknowledgement is command + 1 with
  the request's packet number and a result byte.
* Mid level: ml_init (31; s=1 stops every channel on any channel's error), ml_update (33;
  starts or replaces stimulation: channels not in the mask stop, mask 00 stops all),
  ml_stop (35; stimulation and HV off, idle), ml_get_current_data (37: active mask and one
  error nibble per channel). Result 7 when the mid level is not initialised or the low level
  is active, 2 for a malformed or out-of-range update (current above 130 mA, period outside
  0.5..16383.5 ms, duty load >= 1000). ml_stop while idle is acknowledged with 0: stopping
  is always accepted.
* Low level: ll_init (1), ll_channel_config (3, one pulse per command), ll_stop (5); result 7
  when the levels are mixed.
* Watchdog: while running, stimulation stops by itself when neither ml_update nor
  ml_get_current_data arrived for 2 s; the device stays mid-level initialised (status 2),
  sends nothing, and a new ml_update restarts it.
* A frame with a bad CRC or length is answered with General_error (66) [1], a command the
  device does not know with Unknown_cmd (67) [11]; both carry packet number 0.

Fault knobs: ``inject_channel_error(channel, kind)`` (electrode error, pulse timeout, low
current: reported as soon as the channel stimulates, until ``clear_channel_error``),
``halt_stimulation()`` (stops without notice, as the watchdog does),
``ack_enabled = False`` (commands act but are never acknowledged), ``nack_result = r``
(the next acknowledged command is refused with r and not applied), ``corrupt_acks = True``
(acknowledgements go out with a wrong CRC), ``disconnect()`` (the pty goes away).

Every pulse train is recorded (``segments``) with ``time.monotonic()`` seconds, effective
when the command is received; ``pulses(t_from, t_to)`` expands them into single pulses
with their points. One background thread; all state behind one lock.

Standalone: ``python -m fescontrol.sim.p24 --pty`` (or ``fes emulator p24 --pty``) prints the port
path, runs until SIGINT or SIGTERM, then prints a summary of the delivered pulse trains.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple

from fescontrol.drivers import sciencemode4 as sm4
from .pty_device import PtyDevice, run_standalone
from fescontrol.drivers.sciencemode4 import ChannelConfig, ChannelError, Command, Point, Result, StimStatus

log = logging.getLogger(__name__)

WATCHDOG_TIMEOUT_S = 2.0
MIN_POINT_US = 10               #: shorter points are delivered as 10 µs
THREAD_NAME = "p24-emulator"


class PulseTrain(NamedTuple):
    """A constant-parameter pulse train on one channel; ``t_end_s`` None while ongoing.
    ``points`` as received (durations below 10 µs are delivered as 10 µs)."""
    t_start_s: float
    t_end_s: float | None
    channel: int
    period_ms: float
    points: tuple[Point, ...]
    ramp: int

    @property
    def current_ma(self) -> float:
        """Largest current magnitude of the pulse (mA)."""
        return max(abs(p.current_ma) for p in self.points)

    @property
    def pulse_width_us(self) -> int:
        """Duration of the first point (the first phase of a biphasic pulse), µs."""
        return max(self.points[0].duration_us, MIN_POINT_US)

    @property
    def balanced(self) -> bool:
        pos, neg = ChannelConfig(self.period_ms, self.points).phase_charge_nc
        return math.isclose(pos, neg, rel_tol=1e-9, abs_tol=1e-9)


class Pulse(NamedTuple):
    t_s: float
    channel: int
    current_ma: float           # first-phase current magnitude (after any ramp)
    pulse_width_us: int
    points: tuple[Point, ...]


@dataclass
class _Train:
    t_start_s: float
    t_end_s: float | None
    channel: int
    config: ChannelConfig
    ramp_from_off: bool

    def public(self) -> PulseTrain:
        c = self.config
        return PulseTrain(self.t_start_s, self.t_end_s, self.channel, c.period_ms, c.points,
                          c.ramp if self.ramp_from_off else 0)


def _delivers(config: ChannelConfig) -> bool:
    return any(p.current_ma != 0 for p in config.points)


class P24Emulator(PtyDevice):
    """The device on a pty. ``start()`` / ``stop()``; also a context manager."""

    THREAD_NAME = THREAD_NAME
    STOPS_ON_DISCONNECT = True      # powered by its USB port: a pulled cable ends stimulation
    RECORDS_SENT = True

    def __init__(self, *, device_id: str = "P24EMU0001", firmware: tuple[int, int, int] = (1, 0, 0),
                 science_mode: tuple[int, int, int] = (4, 0, 0), firmware_hash: int = 0x00C0FFEE,
                 tick_s: float = 0.005):
        if len(device_id.encode("ascii")) != sm4.DEVICE_ID_CHARS:
            raise ValueError(f"device_id={device_id!r}; allowed exactly {sm4.DEVICE_ID_CHARS} ASCII characters")
        self.device_id = device_id
        self.version = sm4.ExtendedVersion(tuple(firmware), tuple(science_mode), firmware_hash, 1, True)
        super().__init__(tick_s=tick_s)
        self._decoder = sm4.FrameDecoder(on_reject=self._on_reject)
        # device state
        self._status = StimStatus.IDLE
        self._stop_all_on_error = True
        self._last_keepalive_s = time.monotonic()
        self._reported_errors: dict[int, int] = {}       # nibbles the next report carries
        self._injected: dict[int, int] = {}              # channels whose error shows when they stimulate
        # records
        self._ll_pulses: list[Pulse] = []
        self._watchdog_stops: list[float] = []
        self._channel_faults: list[tuple[float, int, int]] = []

    # ------------------------------------------------------------------ fault injection

    def inject_channel_error(self, channel: int, kind: int = ChannelError.ELECTRODE) -> None:
        """From now on ``channel`` fails with ``kind`` (1 electrode, 2 pulse timeout, 3 low
        current) whenever it stimulates: it stops (all channels when ml_init had s=1) and the
        next ml_get_current_data reports the nibble."""
        if not isinstance(channel, int) or not 1 <= channel <= sm4.CHANNELS:
            raise ValueError(f"channel={channel!r}; allowed 1..{sm4.CHANNELS}")
        kind = ChannelError(kind)
        if kind == ChannelError.OK:
            raise ValueError("kind=0 is no error; use clear_channel_error")
        with self._lock:
            self._injected[channel] = int(kind)
            self._check_channel_errors(time.monotonic())

    def halt_stimulation(self) -> None:
        """Stop every channel without telling the host (status 2), as the device does after
        its watchdog; a client finds out only from ml_get_current_data's active mask."""
        with self._lock:
            self._end_all(time.monotonic())
            if self._status == StimStatus.ML_RUNNING:
                self._status = StimStatus.ML_INITIALIZED

    def clear_channel_error(self, channel: int) -> None:
        """The electrode is fixed: the channel can stimulate again (after a new ml_update)."""
        with self._lock:
            self._injected.pop(channel, None)

    # ------------------------------------------------------------------ public state

    @property
    def watchdog_stops(self) -> list[float]:
        """Monotonic s of each stop by the 2 s watchdog."""
        return self._snapshot("_watchdog_stops")

    @property
    def channel_faults(self) -> list[tuple[float, int, int]]:
        """(monotonic s, channel, nibble) of each channel error the device detected."""
        return self._snapshot("_channel_faults")

    @property
    def status(self) -> int:
        """As GetStimStatus reports it: 0 idle, 1 low level, 2 mid level initialised, 3 running."""
        with self._lock:
            return int(self._status)

    @property
    def high_voltage_on(self) -> bool:
        with self._lock:
            return self._status != StimStatus.IDLE

    @property
    def ll_pulses(self) -> list[Pulse]:
        with self._lock:
            return list(self._ll_pulses)

    @property
    def max_current_ma(self) -> float:
        """Highest current magnitude delivered on any channel so far (0 if none)."""
        with self._lock:
            return max([t.public().current_ma for t in self._trains] + [p.current_ma for p in self._ll_pulses],
                       default=0.0)

    def delivered_current_ma(self, channel: int, t: float | None = None) -> float:
        """Current (mA, first phase) of the train on ``channel`` at monotonic ``t`` (default now); 0 if none."""
        with self._lock:
            t = time.monotonic() if t is None else t
            for tr in reversed(self._trains):
                if tr.channel == channel and tr.t_start_s <= t and (tr.t_end_s is None or t < tr.t_end_s):
                    return abs(tr.config.points[0].current_ma)
            return 0.0

    def pulses(self, t_from: float, t_to: float) -> list[Pulse]:
        """Every pulse delivered in [t_from, t_to) (monotonic s), trains expanded at their period,
        a ramp scaling the first ``ramp`` pulses of a channel started from off; sorted."""
        with self._lock:
            now = time.monotonic()
            trains = [(tr.public(), tr.t_end_s if tr.t_end_s is not None else now) for tr in self._trains]
            out = [p for p in self._ll_pulses if t_from <= p.t_s < t_to]
        for tr, end_s in trains:
            lo, hi = max(t_from, tr.t_start_s), min(t_to, end_s)
            if hi <= lo:
                continue
            period_s = tr.period_ms / 1000
            k0 = max(0, math.ceil((lo - tr.t_start_s) / period_s - 1e-9))
            k = k0
            while True:
                t = tr.t_start_s + k * period_s
                if t >= hi:
                    break
                scale = (k + 1) / (tr.ramp + 1) if k < tr.ramp else 1.0
                points = tuple(Point(p.duration_us, p.current_ma * scale) for p in tr.points)
                out.append(Pulse(t, tr.channel, abs(points[0].current_ma), tr.pulse_width_us, points))
                k += 1
        out.sort()
        return out

    # ------------------------------------------------------------------ thread

    def _timers(self, now: float) -> None:
        if self._status == StimStatus.ML_RUNNING and now - self._last_keepalive_s >= WATCHDOG_TIMEOUT_S:
            log.info("P24 emulator watchdog: no update or get_current_data for %.3f s, stopping",
                     now - self._last_keepalive_s)
            self._end_all(now)
            self._status = StimStatus.ML_INITIALIZED
            self._watchdog_stops.append(now)

    def _reply(self, nr: int, cmd: int, result: int, extra: bytes = b"") -> None:
        if not self.ack_enabled:
            return
        frame = bytearray(sm4.acknowledgement(nr, cmd, int(result), extra))
        if self.corrupt_acks:
            frame[8] ^= 0x01           # wrong CRC (low byte, still escaped)
        self._send(bytes(frame))

    def _on_reject(self, rejected: sm4.RejectedFrame) -> None:
        self._rejected.append(rejected)
        self._send(sm4.general_error(0, Result.TRANSFER_ERROR))

    # ------------------------------------------------------------------ commands

    def _handle(self, packet: sm4.Packet, now: float) -> None:
        self._received.append((now, packet))
        cmd = packet.cmd
        if cmd not in sm4.ACKNOWLEDGED:
            self._send(sm4.unknown_command(0))
            return
        if self.nack_result is not None:
            result, self.nack_result = self.nack_result, None
            self._reply(packet.nr, cmd, result, self._padding(cmd))
            return
        handler = {
            Command.GET_DEVICE_ID: self._get_device_id,
            Command.GET_EXTENDED_VERSION: self._get_extended_version,
            Command.GET_STIM_STATUS: self._get_stim_status,
            Command.GET_BATTERY_STATUS: self._get_battery_status,
            Command.RESET: self._reset,
            Command.ML_INIT: self._ml_init,
            Command.ML_UPDATE: self._ml_update,
            Command.ML_STOP: self._ml_stop,
            Command.ML_GET_CURRENT_DATA: self._ml_get_current_data,
            Command.LL_INIT: self._ll_init,
            Command.LL_CHANNEL_CONFIG: self._ll_channel_config,
            Command.LL_STOP: self._ll_stop,
        }[Command(cmd)]
        result, extra = handler(packet.data, now)
        self._reply(packet.nr, cmd, result, extra)

    @staticmethod
    def _padding(cmd: int) -> bytes:
        """Data after the result byte of a refused command, where clients read fixed fields."""
        return {Command.ML_GET_CURRENT_DATA: bytes((sm4.CURRENT_DATA_CHANNELS, 0, 0, 0, 0, 0)),
                Command.GET_STIM_STATUS: bytes((0, 1))}.get(cmd, b"")

    def _get_device_id(self, data: bytes, now: float):
        return Result.OK, self.device_id.encode("ascii")

    def _get_extended_version(self, data: bytes, now: float):
        v = self.version
        return Result.OK, (bytes(v.firmware) + bytes(v.science_mode) + v.firmware_hash.to_bytes(4, "big")
                           + bytes((v.hash_type, 1 if v.hash_valid else 0)))

    def _get_stim_status(self, data: bytes, now: float):
        hv = sm4.HighVoltage.OFF if self._status == StimStatus.IDLE else sm4.HighVoltage.V150
        return Result.OK, bytes((int(self._status), int(hv)))

    def _get_battery_status(self, data: bytes, now: float):
        return Result.OK, bytes((100,)) + (5000).to_bytes(2, "big")    # powered over USB

    def _reset(self, data: bytes, now: float):
        self._end_all(now)
        self._status = StimStatus.IDLE
        self._reported_errors.clear()
        return Result.OK, b""

    def _ml_init(self, data: bytes, now: float):
        if self._status == StimStatus.LL_INITIALIZED:
            return Result.NOT_INITIALIZED, b""
        if len(data) != 1 or data[0] not in (0, 1):
            return Result.PARAMETER_ERROR, b""
        self._end_all(now)
        self._stop_all_on_error = data[0] == 1
        self._reported_errors.clear()
        self._status = StimStatus.ML_INITIALIZED
        return Result.OK, b""

    def _ml_update(self, data: bytes, now: float):
        if self._status not in (StimStatus.ML_INITIALIZED, StimStatus.ML_RUNNING):
            return Result.NOT_INITIALIZED, b""
        try:
            configs = sm4.parse_ml_update(data)
        except ValueError:
            return Result.PARAMETER_ERROR, b""
        for cfg in configs.values():
            if (not sm4.MIN_PERIOD_MS <= cfg.period_ms <= sm4.MAX_PERIOD_MS
                    or any(abs(p.current_ma) > sm4.OUTPUT_MAX_MA for p in cfg.points)):
                return Result.PARAMETER_ERROR, b""
        effective = {ch: ChannelConfig(c.period_ms, tuple(Point(max(p.duration_us, MIN_POINT_US), p.current_ma)
                                                          for p in c.points), c.ramp) for ch, c in configs.items()}
        if effective and sm4.duty_load(effective) >= sm4.DUTY_LIMIT:
            return Result.PARAMETER_ERROR, b""
        self._last_keepalive_s = now
        for ch in list(self._active):
            if ch not in configs or not _delivers(configs[ch]):
                self._end(ch, now)
        for ch, cfg in configs.items():
            self._reported_errors.pop(ch, None)
            if not _delivers(cfg):
                continue
            old = self._active.get(ch)
            if old is not None and old.config == cfg:
                continue
            if old is not None:
                self._end(ch, now)
            train = _Train(now, None, ch, cfg, ramp_from_off=old is None)
            self._trains.append(train)
            self._active[ch] = train
        self._status = StimStatus.ML_RUNNING
        self._check_channel_errors(now)
        return Result.OK, b""

    def _ml_stop(self, data: bytes, now: float):
        if self._status == StimStatus.LL_INITIALIZED:
            return Result.NOT_INITIALIZED, b""
        self._end_all(now)
        self._status = StimStatus.IDLE
        return Result.OK, b""

    def _ml_get_current_data(self, data: bytes, now: float):
        if data != bytes((sm4.CURRENT_DATA_CHANNELS,)):
            return Result.PARAMETER_ERROR, self._padding(Command.ML_GET_CURRENT_DATA)
        if self._status not in (StimStatus.ML_INITIALIZED, StimStatus.ML_RUNNING):
            return Result.NOT_INITIALIZED, self._padding(Command.ML_GET_CURRENT_DATA)
        self._last_keepalive_s = now
        self._check_channel_errors(now)
        nibbles = bytearray(4)
        for ch, nibble in self._reported_errors.items():
            nibbles[(ch - 1) // 2] |= nibble << (4 * ((ch - 1) % 2))
        mask = sum(1 << (ch - 1) for ch in self._active)
        return Result.OK, bytes((sm4.CURRENT_DATA_CHANNELS, mask)) + bytes(nibbles)

    def _ll_init(self, data: bytes, now: float):
        if self._status in (StimStatus.ML_INITIALIZED, StimStatus.ML_RUNNING):
            return Result.NOT_INITIALIZED, b""
        if len(data) != 1:
            return Result.PARAMETER_ERROR, b""
        self._status = StimStatus.LL_INITIALIZED
        return Result.OK, b""

    def _ll_channel_config(self, data: bytes, now: float):
        try:
            enable, channel, connector, points = sm4.parse_ll_channel_config(data)
        except ValueError:
            return Result.PARAMETER_ERROR, b""
        echo = bytes((connector << 4 | channel, 0))
        if self._status != StimStatus.LL_INITIALIZED:
            return Result.NOT_INITIALIZED, echo
        if any(abs(p.current_ma) > sm4.OUTPUT_MAX_MA for p in points):
            return Result.PARAMETER_ERROR, echo
        # the mid-level channel i is taken to be (connector i // 4, channel i % 4): unconfirmed
        ml_channel = connector * 4 + channel + 1
        if enable and any(p.current_ma for p in points):
            if ml_channel in self._injected:
                self._channel_faults.append((now, ml_channel, self._injected[ml_channel]))
                return Result.ELECTRODE_ERROR, echo
            self._ll_pulses.append(Pulse(now, ml_channel, abs(points[0].current_ma),
                                         max(points[0].duration_us, MIN_POINT_US), points))
        return Result.OK, echo

    def _ll_stop(self, data: bytes, now: float):
        if self._status in (StimStatus.ML_INITIALIZED, StimStatus.ML_RUNNING):
            return Result.NOT_INITIALIZED, b""
        self._status = StimStatus.IDLE
        return Result.OK, b""

    # ------------------------------------------------------------------ stopping

    def _check_channel_errors(self, now: float) -> None:
        failing = [ch for ch in self._active if ch in self._injected]
        for ch in failing:
            self._reported_errors[ch] = self._injected[ch]
            self._channel_faults.append((now, ch, self._injected[ch]))
            log.info("P24 emulator: channel %d error %d, stopping %s", ch, self._injected[ch],
                     "all channels" if self._stop_all_on_error else "the channel")
        if failing:
            if self._stop_all_on_error:
                self._end_all(now)
            else:
                for ch in failing:
                    self._end(ch, now)
            if not self._active:
                self._status = StimStatus.ML_INITIALIZED

    def _end(self, channel: int, now: float) -> None:
        train = self._active.pop(channel, None)
        if train is not None:
            train.t_end_s = now

    def _end_all(self, now: float) -> None:
        for ch in list(self._active):
            self._end(ch, now)

    # ------------------------------------------------------------------ summary

    def summary(self) -> str:
        """Human-readable list of delivered pulse trains (times relative to start())."""
        with self._lock:
            trains = [t.public() for t in self._trains]
            stops = list(self._watchdog_stops)
            faults = list(self._channel_faults)
            now = time.monotonic()
        lines = [f"P24 emulator: {len(trains)} pulse train(s), max {self.max_current_ma:g} mA, "
                 f"{len(stops)} watchdog stop(s), {len(faults)} channel error(s)"]
        for tr in trains:
            end = tr.t_end_s if tr.t_end_s is not None else now
            n = len([p for p in self.pulses(tr.t_start_s, end) if p.channel == tr.channel])
            lines.append(f"  ch{tr.channel}: {tr.current_ma:5.1f} mA {tr.pulse_width_us:4d} us "
                         f"{1000 / tr.period_ms:7.2f} Hz {'balanced' if tr.balanced else 'UNBALANCED'} "
                         f"t={tr.t_start_s - self.t0_s:8.3f}..{end - self.t0_s:8.3f} s "
                         f"({end - tr.t_start_s:.3f} s, {n} pulses)" + ("" if tr.t_end_s is not None else " ongoing"))
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_standalone(P24Emulator, "python -m fescontrol.sim.p24",
                          "Hasomed P24 ScienceMode4 emulator on a pseudo-terminal.", argv)

if __name__ == "__main__":
    sys.exit(main())
