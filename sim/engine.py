"""The distributed engine behind ``fes evaluate`` and ``fes sweep``: dask.distributed.

:func:`dask_client` yields a connected :class:`distributed.Client`:

* ``scheduler`` (or ``$DASK_SCHEDULER_ADDRESS``), e.g. ``tcp://10.0.0.5:8786``: an existing
  cluster (its workers must have fescontrol installed; they import ``fescontrol.sim.evaluate``);
* otherwise a :class:`distributed.LocalCluster` of worker *processes* (one per core, or
  ``workers``; one thread each, since the replay is CPU-bound Python + Cython), started here
  and closed when the ``with`` block ends. Its monitoring that no command reads is turned
  down (:data:`LOCAL_CLUSTER_CONFIG`): on a machine of few cores the scheduler, the nannies
  and each worker's sampling profiler took ~13 % of a core while idle, from the workers.

:func:`run_tasks` submits ``(function, args)`` tasks, shows a progress bar (tqdm, on a
terminal) and returns the results **in submission order**, so what a command prints does not
depend on which worker finished first.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
from typing import Any, Callable, Iterable, Iterator, Sequence

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

#: dask settings for the LocalCluster a command starts (an external cluster keeps its own):
#: no worker sampling profiler (it walked the running task's stack every 10 ms; it only feeds
#: the dashboard, which is off), and the event-loop tick watchdog, the nannies' memory poll and
#: the system monitor at a slower pace (defaults 20 ms, 100 ms, 500 ms). Measured idle, 2
#: workers: 0.13 -> 0.013 core-s per s for the scheduler/client process and the two workers.
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.scheduler.work-stealing-interval": "1s",
}


class EngineError(RuntimeError):
    """The cluster could not be reached or started; the message says which and why."""


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                connect_timeout_s: float = 20.0) -> Iterator[Any]:
    """A dask client on ``scheduler`` / ``$DASK_SCHEDULER_ADDRESS``, else on a LocalCluster
    of ``workers`` processes (default: one per core) that lives for the ``with`` block."""
    from distributed import Client, LocalCluster
    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if workers is not None and workers < 1:
        raise EngineError(f"--workers must be >= 1, got {workers}")
    if address:
        try:
            client = Client(address, timeout=f"{connect_timeout_s}s")
        except (OSError, TimeoutError) as err:
            raise EngineError(f"cannot reach the Dask scheduler at {address}: {err}") from None
        try:
            if workers:
                client.wait_for_workers(workers, timeout=connect_timeout_s)
            yield client
        finally:
            client.close()
        return
    import dask
    n = workers or os.cpu_count() or 1
    # the workers get the config from their nannies at start; the scheduler reads it as it starts
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def describe(client) -> dict:
    """Scheduler address and worker count, for reports."""
    info = client.scheduler_info()
    return {"scheduler": client.scheduler.address, "workers": len(info.get("workers", {}))}


def run_tasks(client, fn: Callable, args_list: Sequence[tuple], *, desc: str = "",
              progress: bool | None = None, on_result: Callable[[int, Any], None] | None = None,
              max_in_flight: int | None = None, keep: bool = True) -> list:
    """Run ``fn(*args)`` for every args tuple on the cluster; results in submission order.

    ``progress`` None shows a bar only on a terminal. ``on_result(index, result)`` is called
    as each task finishes (completion order). With ``max_in_flight`` at most that many tasks
    are queued at once (bounds memory for long sweeps). ``keep`` False: ``on_result`` is the
    only consumer, nothing is kept (the list returned holds None): a 1,000-point sweep's
    results are ~290,000 reports, which the client's cyclic collector walked again and again
    while the workers needed the cores.

    Tasks go to the scheduler in blocks (one ``client.map`` per block, which keeps submission
    order as the execution order) and their results come back through ``as_completed(...,
    with_results=True)`` (gathered by the client's event loop): a ``submit`` and a blocking
    ``result()`` per task cost ~3.3 ms of client CPU per task, ~1.8 ms this way (no-op tasks, 2
    workers), CPU a 2-core machine takes from the workers. A block of at most a quarter of
    ``max_in_flight`` is added each time that many tasks finished."""
    from distributed import as_completed
    from tqdm import tqdm
    n = len(args_list)
    results: list = [None] * n
    limit = max(1, max_in_flight or n or 1)
    refill = max(1, limit // 4)
    index_of: dict = {}
    submitted = 0

    def submit_block(count: int) -> list:
        nonlocal submitted
        block = args_list[submitted:submitted + count]
        if not block:
            return []
        futs = client.map(fn, *zip(*block), pure=False) if block[0] else \
            [client.submit(fn, pure=False) for _ in block]
        for k, fut in enumerate(futs):
            index_of[fut.key] = submitted + k
        submitted += len(block)
        return futs

    bar = tqdm(total=n, desc=desc or None, unit="task", leave=False,
               disable=(None if progress is None else not progress))
    # the caller's heap (dask, numpy, the project, the recordings list) out of the cyclic
    # collector's way while results come in: a full collection of it took ~60 ms of the
    # client's CPU, once every few evaluate runs of 80 feet; given back to it afterwards
    gc.freeze()
    try:
        ac = as_completed(submit_block(limit), with_results=True)
        done_since = 0
        for fut, result in ac:
            i = index_of.pop(fut.key)      # a task's exception is raised by as_completed
            del fut
            if keep:
                results[i] = result
            if on_result is not None:
                on_result(i, result)
            del result
            bar.update(1)
            done_since += 1
            if done_since >= refill and submitted < n:
                ac.update(submit_block(done_since))
                done_since = 0
            elif not ac.count() and submitted < n:
                ac.update(submit_block(max(1, done_since)))
                done_since = 0
    finally:
        gc.unfreeze()
        bar.close()
    return results


def chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    """``items`` in consecutive blocks of at most ``size``."""
    size = max(1, int(size))
    for start in range(0, len(items), size):
        yield items[start:start + size]
