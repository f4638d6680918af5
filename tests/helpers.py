"""Run byte streams through a real controller and look at what it delivered."""
from __future__ import annotations

import numpy as np

from fescontrol.loop.controller import Controller, TraceCollector


def run_stream(profile, data: bytes, implementation: str = "auto", *, start: bool = True,
               controller: Controller | None = None):
    """Feed ``data`` through a controller (new unless given); returns (controller, trace arrays)."""
    c = controller or Controller(profile, implementation=implementation, trace_capacity=1024)
    collector = TraceCollector()
    c.trace_sink = collector
    if start and controller is None:
        c.start()
    c.feed(data)
    c.finish()
    trace = collector.arrays() if collector.parts else {k: np.zeros(0) for k in c.kernel.trace}
    return c, trace


def bursts(trace) -> list[tuple[int, int]]:
    """(first nonzero index, last nonzero index) of each burst in a trace."""
    on = trace["current_ma"] > 0
    edges = np.diff(on.astype(np.int8), prepend=0, append=0)
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))
