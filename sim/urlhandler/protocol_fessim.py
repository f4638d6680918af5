"""``fessim://RECORDING?side=left&speed=1``: a recorded walk as a serial sensor port.

RECORDING is anything ``fes sim --recording`` takes (``physionet:GaCo01``, ``synthetic:walk``,
a file path; percent-encode ``?``, ``&`` and ``%`` in a path). Options:

* ``side``: ``left`` (default) or ``right``, the foot whose sensors are sent;
* ``speed``: × real time, 0 ≤ speed ≤ 100 (default 1); 0 sends frames as fast as the reader
  takes them.

Opening the URL loads the recording, encodes it as sensor frames (docs/protocol.md) and
starts a :class:`fescontrol.sim.pty_sensor.PtySensor` writing them to a real pseudo-terminal; the port
is that pty's slave, opened by pyserial's own POSIX ``Serial``. So ``fileno()`` is a real
file descriptor and the device loop reads it exactly as it reads a USB-serial adapter.

Two attributes tell a reader what a hardware port cannot: ``sensor_clock_rate`` (sensor
seconds per wall second: ``speed``, so the loop's clock-drift check allows for it) and
``recording_over()`` (every frame was sent and read: the end of the walk, not a lost sensor).

A bad URL (unknown recording, bad side, speed out of range or not a number, an unknown or
repeated option) raises ``serial.SerialException`` with one line naming it and what is allowed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from urllib.parse import unquote

import serial

SCHEME = "fessim://"
SIDES = ("left", "right")
#: as ``fes sim --speed``: faster than this the pty, not the device, is what gets tested
MAX_SPEED = 100.0
OPTIONS = ("side", "speed")


@dataclass(frozen=True)
class FessimURL:
    """A parsed ``fessim://`` URL: ``recording`` as ``fes sim --recording`` takes it, ``side``
    "left" or "right", ``speed`` × real time (0 = as fast as read)."""
    recording: str
    side: str = "left"
    speed: float = 1.0


def parse_url(url: str) -> FessimURL:
    """Parse ``fessim://RECORDING?side=…&speed=…``; raises serial.SerialException with one line
    naming what is wrong and what is allowed (the caller names the port)."""
    if not url.lower().startswith(SCHEME):
        raise serial.SerialException(f"{url!r} is not a fessim:// URL; give fessim://RECORDING?side=left&speed=1")
    rest = url[len(SCHEME):]
    recording, _, query = rest.partition("?")
    recording = unquote(recording)
    if not recording:
        raise serial.SerialException("no recording; give fessim://RECORDING (a name `fes sim "
                                     "--list-recordings` prints, synthetic:NAME or a file path)")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key, value = unquote(key), unquote(value)
        if key not in OPTIONS:
            raise serial.SerialException(f"unknown option {key!r}; allowed: {', '.join(OPTIONS)}")
        if not eq:
            raise serial.SerialException(f"option {key!r} has no value; write {key}=VALUE")
        if key in options:
            raise serial.SerialException(f"option {key!r} given twice")
        options[key] = value
    side = options.get("side", "left")
    if side not in SIDES:
        raise serial.SerialException(f"side={side!r}; allowed: {', '.join(SIDES)}")
    text = options.get("speed", "1")
    try:
        speed = float(text)
    except ValueError:
        speed = math.nan
    if not (math.isfinite(speed) and 0 <= speed <= MAX_SPEED):
        raise serial.SerialException(f"speed={text!r}; allowed a number 0 ≤ speed ≤ {MAX_SPEED:g} "
                                     f"(× real time; 0 = as fast as the reader takes frames)")
    return FessimURL(recording, side, speed)


def open_source(spec: FessimURL):
    """The recording of ``spec`` as a PtySensor (not yet started). Raises serial.SerialException
    when the recording cannot be loaded (the loader's message, one line)."""
    from ..pty_sensor import frames_sensor
    from ..recording import RecordingError
    from ..replay import recording_stream
    from ..run import load_any
    try:
        rec = load_any(spec.recording, spec.side)
    except (RecordingError, OSError, ValueError, KeyError) as err:
        text = " ".join(str(err).strip("'\"").split())
        raise serial.SerialException(text if text.startswith("recording ") else
                                     f"recording {spec.recording!r}: {text}") from None
    frames, _ = recording_stream(rec)
    return frames_sensor(frames, rec.rate_hz, speed=spec.speed)


class Serial(serial.Serial):
    """pyserial's POSIX port on the slave of a pty fed by the recording of a ``fessim://`` URL.

    ``open()`` loads and starts the replay (raises serial.SerialException for a bad URL or
    recording); ``close()`` stops the writer and closes the pty (idempotent). Reading, writing
    (ignored by the replay), ``in_waiting`` and ``fileno()`` are the POSIX port's own.
    """

    sensor_clock_rate: float = 1.0

    def open(self) -> None:
        if self._port is None:
            raise serial.SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise serial.SerialException("Port is already open.")
        spec = parse_url(self._port)
        source = open_source(spec)
        url, self.portstr = self.portstr, source.port
        try:
            super().open()
        except BaseException:
            source.stop()
            raise
        finally:
            self.portstr = url
        self.spec = spec
        self.sensor_clock_rate = spec.speed
        self._quiet_since: float | None = None
        self._source = source.start()

    #: the pty moves written bytes to the reader asynchronously: ``in_waiting`` can read 0 while
    #: the last ones are still in flight, so "over" needs it to stay 0 this long (well under the
    #: 100 ms default stale_ms, after which silence would be a sensor fault)
    QUIET_S = 0.03

    def recording_over(self) -> bool:
        """True once every frame of the recording was written and the reader has taken it
        (nothing left to read for ``QUIET_S``). Never raises."""
        source = getattr(self, "_source", None)
        if source is None or not source.done.is_set() or source.sent != len(source.chunks):
            return False
        try:
            waiting = self.in_waiting
        except (OSError, serial.SerialException):
            return False
        now = time.monotonic()
        if waiting or self._quiet_since is None:
            self._quiet_since = None if waiting else now
            return False
        return now - self._quiet_since >= self.QUIET_S

    def close(self) -> None:
        try:
            super().close()
        finally:
            source = getattr(self, "_source", None)
            if source is not None:
                source.stop()
                self._source = None
