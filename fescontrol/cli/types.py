"""Click parameter types of ``fes`` that refuse a bad number before anything starts.

``click.FloatRange`` lets ``nan`` through (every comparison with nan is false) and, without
bounds, ``inf`` too; :class:`FiniteFloat` refuses both, then applies the range. The shared
ranges below are used by every command that takes the option, so ``fes sim``, ``fes walk``,
``fes live`` and ``fes run`` refuse the same values with the same words.
"""
from __future__ import annotations

import math

import click

from fescontrol.drivers.sensor_protocol import FRAME_LEN, SENSOR_BAUD_DEFAULT

#: Replay speed limit (× real time): faster than this the pseudo-terminal, not the device,
#: is what gets tested, and a typo such as 1e9 would end the walk before it started.
MAX_SPEED = 100.0
#: Longest ``--duration``/``--seconds`` accepted: 24 h.
MAX_DURATION_S = 24 * 3600.0


class FiniteFloat(click.FloatRange):
    """A finite float (no nan, no ±inf) within an optional range; the error names the range."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx) if not isinstance(value, float) else value
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; allowed: {self._describe_range()}", param, ctx)
        return super().convert(number, param, ctx)

    def __repr__(self) -> str:
        return f"FiniteFloat({self._describe_range()})"


def speed_type(allow_zero: bool) -> FiniteFloat:
    """``--speed``: × real time, at most :data:`MAX_SPEED`; 0 (as fast as the reader takes
    frames) only where the command supports it."""
    return FiniteFloat(0.0, MAX_SPEED, min_open=not allow_zero)


#: ``--duration``/``--seconds``: more than 0 s, at most a day.
DURATION = FiniteFloat(0.0, MAX_DURATION_S, min_open=True)
#: A time from the start of a recording (s): 0 or more.
START_TIME = FiniteFloat(0.0, MAX_DURATION_S)
#: ``--rate``: a resampling rate in Hz.
RATE_HZ = FiniteFloat(1.0, 10_000.0)
#: A TCP port; 0 picks a free one.
TCP_PORT = click.IntRange(0, 65535)
#: Sensor link bauds: the standard rates of Linux serial ports (termios B38400..B4000000)
#: that carry our 33-byte frames at the lowest sample rate, 100 Hz (330 bit per frame).
SENSOR_BAUDS = (38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000,
                1500000, 2000000, 2500000, 3000000, 3500000, 4000000)
assert min(SENSOR_BAUDS) >= 10 * FRAME_LEN * 100


class SensorBaud(click.ParamType):
    """``--sensor-baud``: one of :data:`SENSOR_BAUDS`, given as a whole number."""

    name = "baud"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            baud = value
        else:
            try:
                baud = int(str(value).strip(), 10)
            except ValueError:
                self.fail(f"{value!r} is not a whole number of Bd; allowed: "
                          f"{', '.join(map(str, SENSOR_BAUDS))}", param, ctx)
        if baud not in SENSOR_BAUDS:
            self.fail(f"{baud} Bd is not a standard serial rate that carries 100 Hz frames; allowed: "
                      f"{', '.join(map(str, SENSOR_BAUDS))} (the reference sensor unit: "
                      f"{SENSOR_BAUD_DEFAULT}, docs/firmware.md)", param, ctx)
        return baud

    def __repr__(self) -> str:
        return "SensorBaud()"


#: A sensor link baud rate.
BAUD = SensorBaud()
#: ``--sensor-baud`` of every command that opens a sensor port.
SENSOR_BAUD_OPTION = click.option(
    "--sensor-baud", type=BAUD, default=SENSOR_BAUD_DEFAULT, show_default=True,
    help="sensor link baud; must be the sensor unit's (reference firmware: its BAUD, default "
         f"{SENSOR_BAUD_DEFAULT}; docs/firmware.md)")
