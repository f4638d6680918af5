"""pyserial URL handlers of the simulator: ``fessim://RECORDING?side=left&speed=1``.

pyserial's ``serial_for_url`` imports ``<package>.protocol_<scheme>`` for every package in
``serial.protocol_handler_packages``; :func:`register` appends this package once, so the
simulated sensor opens wherever a device path goes (``fes run --sensor fessim://…``).
The ``fes`` command line registers it (its composition root); the device loop itself never
imports the simulator. Kept light: the recording loaders are imported only when a URL opens.
"""
from __future__ import annotations

import serial

#: the name pyserial imports handler modules from (``fescontrol.sim.urlhandler`` once installed so)
PACKAGE = __name__


def register() -> None:
    """Make ``fessim://`` known to ``serial.serial_for_url`` (idempotent, never raises)."""
    if PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(PACKAGE)


def unregister() -> None:
    """Undo :func:`register` (tests check the URL is refused without it)."""
    while PACKAGE in serial.protocol_handler_packages:
        serial.protocol_handler_packages.remove(PACKAGE)
