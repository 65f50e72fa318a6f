"""The topology table and the plan `opsctl up` derives from it."""

from __future__ import annotations

import pytest

from opsctl.errors import UsageError
from opsctl.topology import (
    RESTART_POLICY,
    TOPOLOGY,
    ProcessType,
    RestartPolicy,
    check_table,
    instance_names,
    plan,
)


def test_every_type_is_a_bundled_daemon_with_a_kill_timeout_above_its_drain() -> None:
    names = [p.name for p in TOPOLOGY]
    assert names[:4] == ["web", "worker", "scheduler", "timers"]
    assert len(set(names)) == len(names)
    for ptype in TOPOLOGY:
        assert ptype.argv == ("opsctl", "daemon", ptype.name)
        assert ptype.command == f"opsctl daemon {ptype.name}"
        assert ptype.kill_timeout_s > ptype.drain_deadline_s > 0
        assert ptype.instances >= 1
    http = [p for p in TOPOLOGY if p.serves_http]
    assert [p.name for p in http] == ["web"]
    assert http[0].health_path == "/api/production/ready"


def test_a_row_whose_kill_timeout_does_not_exceed_its_drain_is_refused() -> None:
    with pytest.raises(ValueError, match="must exceed the drain"):
        ProcessType("slow", "x", instances=1, drain_deadline_s=30, kill_timeout_s=30)
    with pytest.raises(ValueError, match="only a process that serves HTTP"):
        ProcessType("x", "x", 1, 1, 2, serves_http=False, health_path="/h")
    with pytest.raises(ValueError, match="must match"):
        ProcessType("Bad Name", "x", 1, 1, 2)
    row = ProcessType("web", "x", 1, 1, 2, serves_http=True)
    with pytest.raises(ValueError, match="twice"):
        check_table([row, row])
    with pytest.raises(ValueError, match="only one process type may bind PORT"):
        check_table([row, ProcessType("api", "x", 1, 1, 2, serves_http=True)])


def test_plan_defaults_only_and_scale() -> None:
    defaults = {p.name: p.instances for p in TOPOLOGY}
    assert plan(TOPOLOGY) == defaults
    assert plan(TOPOLOGY, only=["web,worker"]) == {"web": 1, "worker": defaults["worker"]}
    assert plan(TOPOLOGY, only=["web", "timers"], scale=["timers=3"]) == {"web": 1, "timers": 3}
    assert plan(TOPOLOGY, scale=["worker=0", "web=2"])["web"] == 2
    assert "worker" not in plan(TOPOLOGY, scale=["worker=0"])
    assert instance_names({"web": 1, "worker": 2}) == ["web.1", "worker.1", "worker.2"]


@pytest.mark.parametrize(
    ("only", "scale", "message"),
    [
        (["web,wrker"], [], "unknown process type 'wrker' in --only (known: web, worker"),
        ([], ["wrker=2"], "unknown process type 'wrker' in --scale"),
        ([], ["worker=-1"], "--scale worker cannot be negative, got -1"),
        ([], ["worker=two"], "--scale worker must be a whole number of instances, got 'two'"),
        ([], ["worker"], "--scale takes TYPE=COUNT, got 'worker'"),
        (["web"], ["worker=2"], "--scale names 'worker', which --only leaves out"),
        (["web"], ["web=0"], "nothing to run"),
    ],
)
def test_plan_refuses_bad_input_with_one_sentence(
    only: list[str], scale: list[str], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        plan(TOPOLOGY, only=only, scale=scale)
    assert message in str(caught.value)
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


def test_restart_delays_grow_by_half_and_are_capped() -> None:
    policy = RestartPolicy(initial_delay_s=1.0, factor=1.5, max_delay_s=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 1.5, 2.25, 3.0, 3.0]
    assert RESTART_POLICY.factor == 1.5
    with pytest.raises(ValueError):
        RestartPolicy(factor=0.5)


def test_the_daemons_drain_within_the_deadlines_the_kill_timeouts_are_built_on() -> None:
    import inspect

    from daemons.web.main import serve
    from daemons.worker import WorkerOptions

    WEB_DRAIN = inspect.signature(serve).parameters["drain_deadline"].default

    rows = {p.name: p for p in TOPOLOGY}
    assert WEB_DRAIN <= rows["web"].drain_deadline_s < rows["web"].kill_timeout_s
    assert WorkerOptions().drain_deadline_s <= rows["worker"].drain_deadline_s
