"""The two names ``core.py`` takes from Cython's shadow module, for installs without Cython
(FES_PURE_PYTHON=1 or no compiler): it then runs as plain Python."""
from __future__ import annotations

compiled = False


class _NoGil:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


nogil = _NoGil()
