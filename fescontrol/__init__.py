"""fescontrol — open software for a drop-foot functional electrical stimulation device.

NOT A CLEARED MEDICAL DEVICE. Use on a person only under clinical supervision.

Layers (docs/design.md opens with the map; import-linter enforces it, `make lint`):
``core`` (codes, limits, profile) · ``kernel`` (speed 1: per sample; one source, compiled
or run as Python) | ``machine`` (speed 2: gait events) | ``safety`` (the one gate to the
stimulator) · ``loop`` (ties them; ports; ``fes run``) · ``sim`` (virtual hardware, gait
data) · ``session`` (patient modes, log) ·
``tools`` (orthotist: calibration, profiles, report, live view) · ``ui`` · ``cli`` (``fes``,
the only place that composes the simulator with the runtime). ``drivers`` and ``configs``
sit under ``core``.
"""
from fescontrol.kernel import COMPILED, DEFAULT_IMPLEMENTATION

__version__ = "0.1.0"
__all__ = ["__version__", "COMPILED", "DEFAULT_IMPLEMENTATION", "DISCLAIMER"]

DISCLAIMER = ("fescontrol is NOT a cleared medical device. Use it on a person only under "
              "clinical supervision.")
