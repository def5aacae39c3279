"""The restart window that the supervisor and the local cluster share (``RestartBudget``), on a clock the test sets.

No server runs here: the supervisor giving up on a real tritonserver is in test_supervisor.py, the cluster
giving up on a real replica in test_cluster_restart_limit.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config import FrontPorts
from cluster.local import MAX_RESTARTS, RESTART_WINDOW_S, Cluster
from serving.supervisor import RestartBudget, Supervisor
from serving.triton import ServerOptions


class Clock:
    """Seconds that move only when the test sets ``now``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def restarts_at(budget: RestartBudget, clock: Clock, times: list[float]) -> list[bool]:
    """``budget.record()`` at each of ``times`` (seconds, ascending): what it answered each time."""
    answers = []
    for t in times:
        clock.now = t
        answers.append(budget.record())
    return answers


def test_five_restarts_in_ten_minutes_go_on_and_the_sixth_gives_up():
    clock = Clock()
    budget = RestartBudget(5, 600.0, clock)
    assert restarts_at(budget, clock, [0, 100, 200, 300, 400]) == [True] * 5
    assert restarts_at(budget, clock, [599]) == [False]


def test_restarts_older_than_the_window_do_not_count():
    clock = Clock()
    budget = RestartBudget(5, 600.0, clock)
    assert restarts_at(budget, clock, [0, 1, 2, 3, 4]) == [True] * 5
    assert restarts_at(budget, clock, [604.5]) == [True]  # the five are all older than 600 s by then
    assert restarts_at(budget, clock, [700, 701, 702, 703]) == [True] * 4  # five in the window again
    assert restarts_at(budget, clock, [704]) == [False]


def test_one_restart_per_second_goes_on_while_they_are_more_than_a_second_apart():
    clock = Clock()
    budget = RestartBudget(1, 1.0, clock)
    assert restarts_at(budget, clock, [0.0, 1.5, 3.0, 4.5]) == [True] * 4
    assert restarts_at(budget, clock, [5.0]) == [False]


def test_a_restart_exactly_one_window_old_no_longer_counts():
    clock = Clock()
    budget = RestartBudget(1, 600.0, clock)
    assert restarts_at(budget, clock, [0.0, 600.0]) == [True, True]  # 600 s apart: the first has left
    assert restarts_at(RestartBudget(1, 600.0, clock), clock, [0.0, 599.999]) == [True, False]


def test_a_refused_restart_counts_too():
    """Giving up is final for the caller; were it asked again at once, it would still refuse."""
    clock = Clock()
    budget = RestartBudget(2, 10.0, clock)
    assert restarts_at(budget, clock, [0, 1, 2, 3]) == [True, True, False, False]


def test_no_restart_at_all_with_a_limit_of_zero():
    clock = Clock()
    assert restarts_at(RestartBudget(0, 600.0, clock), clock, [0]) == [False]


def test_the_supervisor_counts_its_restarts_on_its_budget(tmp_path):
    clock = Clock()
    options = ServerOptions(repository=tmp_path, http_port=1, grpc_port=2, metrics_port=3)
    supervisor = Supervisor(options, max_restarts=2, restart_window_s=30.0, clock=clock)
    budget = supervisor.restarts
    assert (budget.max_restarts, budget.window_s, budget.clock) == (2, 30.0, clock)


@pytest.mark.parametrize("limit", [MAX_RESTARTS, 1])
def test_each_replica_of_the_cluster_has_a_budget_of_its_own(tmp_path: Path, limit: int):
    """A replica that exits more than ``limit`` times in 10 minutes stops the cluster; another's exits don't count."""
    clock = Clock()
    cluster = Cluster(2, FrontPorts(1, 2, 3, 4, 5, 6), tmp_path, tmp_path, max_restarts=limit, clock=clock)
    first, second = (replica.restarts for replica in cluster.replicas)
    assert RESTART_WINDOW_S == 600.0 and MAX_RESTARTS == 5
    assert restarts_at(first, clock, [float(t) for t in range(limit)]) == [True] * limit
    assert restarts_at(second, clock, [float(limit)]) == [True]
    assert restarts_at(first, clock, [599.0]) == [False]
    assert restarts_at(second, clock, [599.5]) == ([True] if limit > 1 else [False])
