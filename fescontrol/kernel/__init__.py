"""The per-sample kernel: one source (``core.py``), compiled or run as Python.

``core.py`` is written in Cython's pure-Python mode. Built with a C compiler it becomes the
extension ``fescontrol.kernel.core`` (``core.pxd`` types it; no GIL on the hot path); the
very same file also runs as plain Python. Both builds expose the same class interface and
produce identical outputs (tests/test_kernel_twins.py). On a device the compiled one is
required: ``fes run`` refuses the pure-Python kernel unless asked with
``--allow-pure-python``. Environment:
  FES_PURE_PYTHON=1        use the pure-Python build even when compiled;
  FES_REQUIRE_COMPILED=1   fail at import when the extension is missing (CI sets it).
"""
from __future__ import annotations

import importlib.util
import os
import sys

from fescontrol.kernel import core as _core
from fescontrol.kernel.params import (DRIFT_MAX_PERCENT, DRIFT_WINDOW_US, EVENT_QUEUE_LEN, INPUT_BUFFER_BYTES,
                     LATENESS_BIN_US, LATENESS_BINS, TRACE_FIELDS, KernelParams)

__all__ = ["COMPILED", "CyKernel", "PyKernel", "DEFAULT_IMPLEMENTATION", "IMPLEMENTATIONS",
           "kernel_class", "make_kernel", "KernelParams", "TRACE_FIELDS", "INPUT_BUFFER_BYTES",
           "EVENT_QUEUE_LEN", "LATENESS_BIN_US", "LATENESS_BINS", "DRIFT_WINDOW_US", "DRIFT_MAX_PERCENT"]


def _interpreted_core():
    """``core.py`` run as Python under the name ``fescontrol.kernel.core_py``, next to the
    compiled ``fescontrol.kernel.core`` built from the same file."""
    name = f"{__name__}.core_py"
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "core.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


COMPILED = bool(_core.COMPILED)
if COMPILED:
    CyKernel = _core.Kernel
    _IMPORT_ERROR: str | None = None
    PyKernel = _interpreted_core().Kernel
else:  # no compiler, FES_PURE_PYTHON=1 at install, or built without Cython
    CyKernel = None
    _IMPORT_ERROR = "fescontrol.kernel.core was imported from core.py, not from a compiled extension"
    PyKernel = _core.Kernel

if os.environ.get("FES_REQUIRE_COMPILED") == "1" and not COMPILED:
    raise ImportError(f"FES_REQUIRE_COMPILED=1 but the Cython kernel is missing: {_IMPORT_ERROR}")

DEFAULT_IMPLEMENTATION = "cython" if COMPILED and os.environ.get("FES_PURE_PYTHON") != "1" else "python"
IMPLEMENTATIONS = ("cython", "python")


def kernel_class(implementation: str = "auto"):
    """The kernel class for ``"auto"``, ``"cython"`` or ``"python"``. RuntimeError for
    "cython" when the extension is not built; ValueError for any other name."""
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
    """A new kernel for ``profile`` (see ``kernel_class`` for what it raises)."""
    return kernel_class(implementation)(profile, trace_capacity)
