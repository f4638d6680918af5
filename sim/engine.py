"""The distributed engine behind ``fes evaluate`` and ``fes sweep``: dask.distributed.

:func:`dask_client` yields a connected :class:`distributed.Client`:

* ``scheduler`` (or ``$DASK_SCHEDULER_ADDRESS``), e.g. ``tcp://10.0.0.5:8786``: an existing
  cluster (its workers must have fescontrol installed; they import ``fescontrol.sim.evaluate``);
* otherwise a :class:`distributed.LocalCluster` of worker *processes* (one per core, or
  ``workers``; one thread each, since the replay is CPU-bound Python + Cython), started here
  and closed when the ``with`` block ends.

:func:`run_tasks` submits ``(function, args)`` tasks, shows a progress bar (tqdm, on a
terminal) and returns the results **in submission order**, so what a command prints does not
depend on which worker finished first.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Iterable, Iterator, Sequence

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


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
    n = workers or os.cpu_count() or 1
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
    while the workers needed the cores."""
    from distributed import as_completed
    from tqdm import tqdm
    results: list = [None] * len(args_list)
    pending = iter(enumerate(args_list))
    limit = max_in_flight or len(args_list) or 1
    index_of = {}

    def submit_next(ac=None) -> bool:
        try:
            i, args = next(pending)
        except StopIteration:
            return False
        fut = client.submit(fn, *args, pure=False)
        index_of[fut.key] = i
        if ac is not None:
            ac.add(fut)
        return fut

    first = []
    for _ in range(min(limit, len(args_list))):
        fut = submit_next()
        if fut is not False:
            first.append(fut)
    bar = tqdm(total=len(args_list), desc=desc or None, unit="task", leave=False,
               disable=(None if progress is None else not progress))
    try:
        ac = as_completed(first)
        for fut in ac:
            i = index_of.pop(fut.key)
            result = fut.result()
            fut.release()
            if keep:
                results[i] = result
            if on_result is not None:
                on_result(i, result)
            del result
            bar.update(1)
            submit_next(ac)
    finally:
        bar.close()
    return results


def chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    """``items`` in consecutive blocks of at most ``size``."""
    size = max(1, int(size))
    for start in range(0, len(items), size):
        yield items[start:start + size]
