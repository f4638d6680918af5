"""fescontrol — open software for a drop-foot functional electrical stimulation device.

NOT A CLEARED MEDICAL DEVICE. Use on a person only under clinical supervision.

Layout: ``profile`` (validated settings) · ``limits`` (hard caps) · ``kernel``
(per-sample path: ``_kernel.pyx`` and its pure-Python twin) · ``gait_machine``
(event-level ``transitions`` machine) · ``supervisor`` (the one gate to the
stimulator) · ``controller`` (ties them together) · ``cli`` (``fes``).
"""
from fescontrol.kernel import COMPILED, DEFAULT_IMPLEMENTATION

__version__ = "0.1.0"
__all__ = ["__version__", "COMPILED", "DEFAULT_IMPLEMENTATION", "DISCLAIMER"]

DISCLAIMER = ("fescontrol is NOT a cleared medical device. Use it on a person only under "
              "clinical supervision.")
