"""The emulators as ordinary stimulator backends (python-can's "virtual" bus pattern).

``EmulatedRehaStim2`` is the real RehaStim2 driver talking over a real pseudo-terminal to a
:class:`fescontrol.sim.rehastim2.RehaStim2Emulator` it owns; ``EmulatedP24`` is the same for the P24.
They are registered in the ``fescontrol.stimulators`` entry-point group (setup.py) as
``emulator`` and ``p24-emulator``, so ``fes run --stim emulator`` selects one through the
drivers registry like any hardware backend, and the device loop never imports ``sim``.

Each backend brings its own device: the port argument must be empty (``--stim emulator``
alone); the emulator starts in ``open()`` and stops in ``close()``. Everything between is
the unchanged driver on a pty, so the safety supervisor, acknowledgements, keep-alive and
watchdog are exercised exactly as on hardware. ``emulator`` gives access to the device
model (stimulator faults, the record of delivered pulse trains).
"""
from __future__ import annotations

from typing import Any

from fescontrol.drivers.p24 import P24
from fescontrol.drivers.rehastim2 import RehaStim2
from fescontrol.drivers.stimulator import StimulatorInitError
from .p24 import P24Emulator
from .rehastim2 import RehaStim2Emulator


class _EmulatedMixin:
    """Owns the emulator of one backend; ``EMULATOR`` is its class, ``LABEL`` its name in notes."""

    NEEDS_PORT = False
    EMULATOR: type
    LABEL: str

    def _make_emulator(self, port: str | None):
        if port:
            raise ValueError(f"port={port!r}: the {self.LABEL} emulator makes its own pseudo-terminal; "
                             f"select it without a port")
        return self.EMULATOR()

    def open(self) -> None:
        """Start the emulator on a fresh pty, then open the driver on it (handshake included).

        Raises StimulatorInitError as the driver does; the emulator is stopped again then."""
        try:
            self.emulator.start()
        except (OSError, RuntimeError) as err:
            raise StimulatorInitError(f"the {self.LABEL} emulator could not start: {err}") from err
        try:
            super().open()
        except BaseException:
            self.emulator.stop()
            raise

    def close(self) -> None:
        """Close the driver's port, then stop the emulator (ending its pulse trains). Idempotent."""
        try:
            super().close()
        finally:
            self.emulator.stop()

    def opened_note(self) -> str | None:
        return f"{self.LABEL} emulator on {self.emulator.port}"

    def closed_note(self) -> str | None:
        return self.emulator.summary().splitlines()[0]


class EmulatedRehaStim2(_EmulatedMixin, RehaStim2):
    """``--stim emulator``: the RehaStim2 driver on a :class:`RehaStim2Emulator` it owns.

    Takes the RehaStim2 driver's keyword arguments; ``port`` must be empty (None or "").
    Raises ValueError for a port or an invalid driver argument (as RehaStim2 does)."""

    EMULATOR = RehaStim2Emulator
    LABEL = "RehaStim2"

    def __init__(self, port: str | None = None, **kwargs: Any):
        self.emulator: RehaStim2Emulator = self._make_emulator(port)
        try:
            super().__init__(self.emulator.port, **kwargs)
        except BaseException:
            self.emulator.stop()
            raise


class EmulatedP24(_EmulatedMixin, P24):
    """``--stim p24-emulator``: the P24 driver on a :class:`P24Emulator` it owns.

    Takes the P24 driver's keyword arguments; ``port`` must be empty (None or "").
    Raises ValueError for a port or an invalid driver argument (as P24 does)."""

    EMULATOR = P24Emulator
    LABEL = "P24"

    def __init__(self, port: str | None = None, **kwargs: Any):
        self.emulator: P24Emulator = self._make_emulator(port)
        try:
            super().__init__(self.emulator.port, **kwargs)
        except BaseException:
            self.emulator.stop()
            raise
