"""The Dask engine behind `fes evaluate` / `fes sweep` (fescontrol.sim.engine) on a real
LocalCluster: results in submission order whatever the completion order, refilled in blocks
under max_in_flight, task errors raised; the LocalCluster's quiet monitoring; evaluate's task
packing (whole recordings, decreasing sizes)."""
from __future__ import annotations

import time

import pytest

from fescontrol.sim.engine import LOCAL_CLUSTER_CONFIG, dask_client, run_tasks
from fescontrol.sim.evaluate import FEET_PER_TASK, FEET_PER_TASK_MIN, _tasks

pytestmark = pytest.mark.timeout(180)


def _late_first(i: int, n: int) -> tuple:
    """Earlier tasks sleep longer, so they finish after later ones on 2 workers."""
    time.sleep(0.002 * (n - i))
    return (i, i * i)


def _fail_on(i: int, bad: int) -> int:
    if i == bad:
        raise ArithmeticError(f"task {i} failed on purpose")
    return i


def _config_on_worker() -> tuple:
    import dask
    return tuple(dask.config.get(k) for k in LOCAL_CLUSTER_CONFIG)


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2) as c:
        yield c


@pytest.mark.parametrize("max_in_flight", [None, 1, 3, 8])
def test_results_in_submission_order_with_refills(client, max_in_flight):
    n = 23
    seen = []
    out = run_tasks(client, _late_first, [(i, n) for i in range(n)], progress=False,
                    on_result=lambda i, r: seen.append((i, r)), max_in_flight=max_in_flight)
    assert out == [(i, i * i) for i in range(n)]
    assert sorted(seen) == [(i, (i, i * i)) for i in range(n)]


def test_keep_false_keeps_nothing_and_errors_are_raised(client):
    seen = {}
    out = run_tasks(client, _late_first, [(i, 5) for i in range(5)], progress=False,
                    on_result=seen.__setitem__, keep=False, max_in_flight=2)
    assert out == [None] * 5 and seen == {i: (i, i * i) for i in range(5)}
    with pytest.raises(ArithmeticError, match="task 3 failed on purpose"):
        run_tasks(client, _fail_on, [(i, 3) for i in range(6)], progress=False, max_in_flight=2)
    assert run_tasks(client, _fail_on, [], progress=False) == []


def test_local_cluster_workers_run_with_the_quiet_monitoring(client):
    want = tuple(LOCAL_CLUSTER_CONFIG.values())
    assert set(client.run(_config_on_worker).values()) == {want}


def test_evaluate_tasks_keep_recordings_whole_and_shrink_toward_the_end():
    groups = [[("a", "left", None), ("a", "right", None)]] * 30 + [[("b", "left", None)]] * 37
    for workers in (1, 2, 4):
        tasks = _tasks(groups, None, "auto", workers)
        feet = [foot for batch, _, _ in tasks for foot in batch]
        assert feet == [foot for g in groups for foot in g]      # every foot once, in order
        sizes = [len(batch) for batch, _, _ in tasks]
        assert max(sizes) <= FEET_PER_TASK
        if workers == 1:         # no tail to balance: full tasks (a two-foot file may stop one short)
            assert all(s >= FEET_PER_TASK - 1 for s in sizes[:-1])
        else:
            # never larger than an earlier task by more than one two-foot recording, and short at the end
            assert all(b <= a + 1 for a, b in zip(sizes, sizes[1:]))
            assert sizes[-1] <= FEET_PER_TASK_MIN and len(sizes) >= 3 * workers
        for batch, _, _ in tasks:           # a file's two feet are never split between tasks
            for k, foot in enumerate(batch):
                if foot[0] == "a" and foot[1] == "left":
                    assert batch[k + 1][:2] == ("a", "right")
