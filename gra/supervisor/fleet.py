"""Who is in the fleet, what each agent can do, and how much more it can take.

Credit-based flow control: an agent is never sent more tasks than the
capacity it advertised in its hello.

The supervisor asks "which agent of model M can take a role R task now?"
for every task it sends, so the answer is kept ready: for each (model, role)
an ordered map of the live agents that have free credit. Handing out a task
moves the agent to the back (round robin over free agents); an agent whose
credit reaches zero leaves the map until a task of its comes back. Every
change of an agent's in-flight set therefore goes through ``assign``,
``release`` or ``mark_dead``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from gra.protocols.messages import Hello

Key = tuple[str, str]  # (model, role)


@dataclass
class AgentInfo:
    agent_id: str
    identity: bytes
    model: str
    roles: frozenset[str]
    capacity: int
    pid: int
    host: str
    last_seen: float
    alive: bool = True
    in_flight: set[str] = field(default_factory=set)
    completed: int = 0
    failed: int = 0
    # The credit this agent adds to the fleet's per-(model, role) totals.
    counted_credit: int = 0
    # Where a cluster launcher placed it (its hello's ``node``); "" otherwise.
    node: str = ""

    @property
    def credit(self) -> int:
        return self.capacity - len(self.in_flight) if self.alive else 0

    @cached_property
    def keys(self) -> list[Key]:
        return [(self.model, role) for role in sorted(self.roles)]


class Fleet:
    def __init__(self) -> None:
        self.agents: dict[bytes, AgentInfo] = {}
        # Live agents per (model, role), and those of them with free credit.
        self._hosts: defaultdict[Key, dict[bytes, AgentInfo]] = defaultdict(dict)
        self._free: defaultdict[Key, dict[bytes, AgentInfo]] = defaultdict(dict)
        self._credit: defaultdict[Key, int] = defaultdict(int)
        # Tasks the live agents can hold at once, all together.
        self.capacity = 0

    def register(self, identity: bytes, hello: Hello, now: float) -> tuple[AgentInfo, set[str]]:
        """Add or revive an agent; returns it and the tasks it can no longer be holding."""
        known = self.agents.get(identity)
        if known is not None and known.alive and known.pid == hello.pid:
            # A repeated hello from the same process (queued during a network
            # cut, say): nothing was lost.
            known.last_seen = now
            return known, set()
        lost: set[str] = set()
        if known is not None:
            lost = self.mark_dead(identity) | known.in_flight
            self._forget(known)
        info = AgentInfo(
            agent_id=hello.agent_id,
            identity=identity,
            model=hello.model,
            roles=frozenset(hello.roles),
            capacity=hello.capacity,
            pid=hello.pid,
            host=hello.host,
            last_seen=now,
            node=hello.node,
        )
        if known is not None:
            info.completed, info.failed = known.completed, known.failed
        self.agents[identity] = info
        self.capacity += info.capacity
        for key in info.keys:
            self._hosts[key][identity] = info
        self._refresh(info)
        return info, lost

    def get(self, identity: bytes) -> AgentInfo | None:
        return self.agents.get(identity)

    def live(self) -> list[AgentInfo]:
        return [a for a in self.agents.values() if a.alive]

    def models(self, role: str) -> set[str]:
        """Models with at least one live agent serving ``role``."""
        return {model for (model, r), hosts in self._hosts.items() if r == role and hosts}

    def hosts(self, model: str, role: str) -> list[AgentInfo]:
        return list(self._hosts.get((model, role), {}).values())

    def free_credit(self, model: str, role: str) -> int:
        """Tasks of (model, role) that live agents could take right now."""
        return self._credit.get((model, role), 0)

    def pick(self, model: str, role: str, avoid: set[str] | None = None) -> AgentInfo | None:
        """The free agent for (model, role) that waited longest; ``avoid`` only if no other."""
        free = self._free.get((model, role))
        if not free:
            return None
        first = next(iter(free.values()))
        if avoid and first.agent_id in avoid:
            return next((a for a in free.values() if a.agent_id not in avoid), first)
        return first

    def assign(self, agent: AgentInfo, task_id: str) -> None:
        agent.in_flight.add(task_id)
        for key in agent.keys:
            self._free[key].pop(agent.identity, None)  # back of the queue, or out of it
        self._refresh(agent)

    def release(self, agent: AgentInfo, task_id: str) -> None:
        if task_id in agent.in_flight:
            agent.in_flight.discard(task_id)
            self._refresh(agent)

    def mark_dead(self, identity: bytes) -> set[str]:
        """Declare an agent dead; returns its in-flight task ids."""
        info = self.agents.get(identity)
        if info is None or not info.alive:
            return set()
        info.alive = False
        self.capacity -= info.capacity
        lost, info.in_flight = info.in_flight, set()
        self._forget(info)
        return lost

    def expired(self, now: float, timeout_s: float) -> list[AgentInfo]:
        return [a for a in self.agents.values() if a.alive and now - a.last_seen > timeout_s]

    def _refresh(self, agent: AgentInfo) -> None:
        credit = agent.credit
        has_credit = credit > 0
        change, agent.counted_credit = credit - agent.counted_credit, credit
        for key in agent.keys:
            self._credit[key] += change
            free = self._free[key]
            if has_credit and agent.identity not in free:
                free[agent.identity] = agent
            elif not has_credit:
                free.pop(agent.identity, None)

    def _forget(self, agent: AgentInfo) -> None:
        for key in agent.keys:
            self._credit[key] -= agent.counted_credit
            self._hosts[key].pop(agent.identity, None)
            self._free[key].pop(agent.identity, None)
        agent.counted_credit = 0
