"""The supervisor's dispatch indexes: free agents per (model, role) and queues per (model, role)."""

from __future__ import annotations

from dataclasses import dataclass

from gra.protocols.messages import PROTOCOL_VERSION, Hello
from gra.supervisor.fleet import Fleet
from gra.supervisor.queues import TaskQueues


def _hello(agent_id: str, model: str, capacity: int = 2, pid: int = 1) -> Hello:
    return Hello(
        agent_id=agent_id,
        model=model,
        roles=("generator", "reviewer"),
        backend="test",
        capacity=capacity,
        pid=pid,
        host="h",
        version=PROTOCOL_VERSION,
    )


def _fleet(*agents: tuple[str, str, int]) -> Fleet:
    fleet = Fleet()
    for agent_id, model, capacity in agents:
        fleet.register(agent_id.encode(), _hello(agent_id, model, capacity), 0.0)
    return fleet


def test_pick_goes_round_robin_over_agents_with_credit() -> None:
    fleet = _fleet(("a1", "m", 2), ("a2", "m", 2), ("b1", "n", 1))
    order = []
    for n in range(4):
        agent = fleet.pick("m", "reviewer")
        assert agent is not None
        fleet.assign(agent, f"t{n}")
        order.append(agent.agent_id)
    assert order == ["a1", "a2", "a1", "a2"]
    assert fleet.pick("m", "reviewer") is None  # all credit spent
    assert fleet.pick("m", "generator") is None  # credit is shared between roles
    assert fleet.free_credit("n", "generator") == 1


def test_release_and_death_update_the_index() -> None:
    fleet = _fleet(("a1", "m", 1), ("a2", "m", 1))
    a1, a2 = fleet.pick("m", "reviewer"), None
    assert a1 is not None
    fleet.assign(a1, "t1")
    a2 = fleet.pick("m", "reviewer")
    assert a2 is not None and a2.agent_id == "a2"
    fleet.assign(a2, "t2")
    assert fleet.free_credit("m", "reviewer") == 0
    fleet.release(a1, "t1")
    fleet.release(a1, "t1")  # twice is harmless
    assert fleet.pick("m", "reviewer") is a1 and a1.credit == 1
    assert fleet.free_credit("m", "reviewer") == fleet.free_credit("m", "generator") == 1
    assert fleet.mark_dead(b"a1") == set()
    assert fleet.pick("m", "reviewer") is None
    assert fleet.free_credit("m", "reviewer") == 0
    assert [a.agent_id for a in fleet.hosts("m", "reviewer")] == ["a2"]
    assert fleet.models("reviewer") == {"m"}
    assert fleet.mark_dead(b"a2") == {"t2"}
    assert fleet.models("reviewer") == set() and fleet.hosts("m", "reviewer") == []


def test_avoided_agent_is_used_only_when_no_other_is_free() -> None:
    fleet = _fleet(("a1", "m", 1), ("a2", "m", 1))
    agent = fleet.pick("m", "reviewer", {"a1"})
    assert agent is not None and agent.agent_id == "a2"
    fleet.assign(agent, "t1")
    agent = fleet.pick("m", "reviewer", {"a1"})
    assert agent is not None and agent.agent_id == "a1"


def test_a_restarted_agent_replaces_the_old_one_and_reports_its_tasks_lost() -> None:
    fleet = _fleet(("a1", "m", 2))
    agent = fleet.pick("m", "reviewer")
    assert agent is not None
    fleet.assign(agent, "t1")
    same, lost = fleet.register(b"a1", _hello("a1", "m", 2, pid=1), 1.0)
    assert same is agent and lost == set()  # a repeated hello loses nothing
    new, lost = fleet.register(b"a1", _hello("a1", "other", 3, pid=2), 2.0)
    assert lost == {"t1"} and new.credit == 3
    assert fleet.free_credit("m", "reviewer") == 0 and fleet.free_credit("other", "reviewer") == 3
    assert fleet.hosts("m", "reviewer") == [] and fleet.pick("other", "reviewer") is new


@dataclass
class _Task:
    name: str
    key: tuple[str, str]


def test_task_queues_keep_order_and_report_only_dirty_nonempty_queues() -> None:
    queues: TaskQueues[_Task] = TaskQueues()
    m_review, n_gen = ("m", "reviewer"), ("n", "generator")
    queues.push(_Task("first", m_review))
    queues.push(_Task("second", m_review))
    queues.push(_Task("retry", m_review), front=True)
    queues.push(_Task("gen", n_gen))
    assert len(queues) == 4 and queues.waiting(m_review) == 3
    assert queues.take_dirty() == [("m", "reviewer"), ("n", "generator")]
    assert queues.take_dirty() == []
    assert [queues.pop(m_review).name for _ in range(2)] == ["retry", "first"]  # type: ignore[union-attr]
    queues.restore(_Task("back", m_review))
    assert queues.take_dirty() == []  # restoring is not news
    queues.mark([m_review, ("x", "y")])
    assert queues.take_dirty() == [m_review]  # ("x", "y") holds nothing
    assert queues.pop(m_review).name == "back"  # type: ignore[union-attr]
    assert queues.pop(m_review).name == "second"  # type: ignore[union-attr]
    assert queues.pop(m_review) is None and len(queues) == 1
    queues.mark_all()
    assert queues.take_dirty() == [n_gen]
