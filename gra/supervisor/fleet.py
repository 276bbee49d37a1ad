"""Who is in the fleet, what each agent can do, and how much more it can take.

Credit-based flow control: an agent is never sent more tasks than the
capacity it advertised in its hello.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gra.protocols.messages import Hello


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

    @property
    def credit(self) -> int:
        return self.capacity - len(self.in_flight) if self.alive else 0


class Fleet:
    def __init__(self) -> None:
        self.agents: dict[bytes, AgentInfo] = {}

    def register(self, identity: bytes, hello: Hello, now: float) -> tuple[AgentInfo, set[str]]:
        """Add or revive an agent; returns it and the tasks it can no longer be holding."""
        known = self.agents.get(identity)
        if known is not None and known.alive and known.pid == hello.pid:
            # A repeated hello from the same process (queued during a network
            # cut, say): nothing was lost.
            known.last_seen = now
            return known, set()
        lost = set(known.in_flight) if known is not None else set()
        info = AgentInfo(
            agent_id=hello.agent_id,
            identity=identity,
            model=hello.model,
            roles=frozenset(hello.roles),
            capacity=hello.capacity,
            pid=hello.pid,
            host=hello.host,
            last_seen=now,
        )
        if known is not None:
            info.completed, info.failed = known.completed, known.failed
        self.agents[identity] = info
        return info, lost

    def get(self, identity: bytes) -> AgentInfo | None:
        return self.agents.get(identity)

    def live(self) -> list[AgentInfo]:
        return [a for a in self.agents.values() if a.alive]

    def models(self, role: str) -> set[str]:
        """Models with at least one live agent serving ``role``."""
        return {a.model for a in self.agents.values() if a.alive and role in a.roles}

    def hosts(self, model: str, role: str) -> list[AgentInfo]:
        return [a for a in self.agents.values() if a.alive and a.model == model and role in a.roles]

    def pick(
        self, model: str, role: str, rng: random.Random, avoid: set[str] | None = None
    ) -> AgentInfo | None:
        """The agent with the most free credit for (model, role); ``avoid`` only if no other."""
        hosts = [a for a in self.hosts(model, role) if a.credit > 0]
        if avoid:
            preferred = [a for a in hosts if a.agent_id not in avoid]
            hosts = preferred or hosts
        if not hosts:
            return None
        best = max(a.credit for a in hosts)
        return rng.choice([a for a in hosts if a.credit == best])

    def mark_dead(self, identity: bytes) -> set[str]:
        """Declare an agent dead; returns its in-flight task ids."""
        info = self.agents.get(identity)
        if info is None or not info.alive:
            return set()
        info.alive = False
        lost, info.in_flight = info.in_flight, set()
        return lost

    def expired(self, now: float, timeout_s: float) -> list[AgentInfo]:
        return [a for a in self.agents.values() if a.alive and now - a.last_seen > timeout_s]
