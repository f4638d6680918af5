"""Chooses the per-sample kernel: compiled Cython (``_kernel.pyx``) or its pure-Python twin.

Both expose the same class interface and produce identical outputs. On a device
the compiled one is required: ``fes run`` refuses the pure-Python kernel unless
asked with ``--allow-pure-python``. Environment:
  FES_PURE_PYTHON=1        use the pure-Python kernel even when compiled;
  FES_REQUIRE_COMPILED=1   fail at import when the extension is missing (CI sets it).
"""
from __future__ import annotations

import os

from fescontrol._kernel_py import PyKernel

try:
    from fescontrol._kernel import CyKernel
except ImportError as _err:  # no compiler, or built without Cython
    CyKernel = None
    _IMPORT_ERROR: ImportError | None = _err
else:
    _IMPORT_ERROR = None

COMPILED = CyKernel is not None
if os.environ.get("FES_REQUIRE_COMPILED") == "1" and not COMPILED:
    raise ImportError(f"FES_REQUIRE_COMPILED=1 but the Cython kernel is missing: {_IMPORT_ERROR}")

DEFAULT_IMPLEMENTATION = "cython" if COMPILED and os.environ.get("FES_PURE_PYTHON") != "1" else "python"
IMPLEMENTATIONS = ("cython", "python")


def kernel_class(implementation: str = "auto"):
    """The kernel class for ``"auto"``, ``"cython"`` or ``"python"``."""
    if implementation == "auto":
        implementation = DEFAULT_IMPLEMENTATION
    if implementation == "python":
        return PyKernel
    if implementation == "cython":
        if CyKernel is None:
            raise RuntimeError(f"the compiled Cython kernel is not available ({_IMPORT_ERROR}); "
                               "run `make install` with a C compiler, or use the pure-Python kernel")
        return CyKernel
    raise ValueError(f"unknown kernel implementation {implementation!r}; use auto, cython or python")


def make_kernel(profile, implementation: str = "auto", trace_capacity: int = 0):
    """A new kernel for ``profile``."""
    return kernel_class(implementation)(profile, trace_capacity)
