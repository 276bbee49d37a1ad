"""Who may join the fleet: every hello is checked against the seats the config declares.

A dataset is only as trustworthy as the least trusted process that can write
into it, so a registration is admitted only into a seat of the config:

- a **local seat** is an agent process the supervisor launched itself: its
  hello must name that agent id and carry the per-run token the supervisor
  handed the process in its environment (and, with CURVE, come over the
  ``local`` key). No other process can claim a local model.
- a **remote seat** is an ``[[agents]]`` entry with ``remote = true``: a hello
  may claim its model only with the roles the entry lists, at most
  ``replicas`` agents at once and, with CURVE, only over the authorised key
  the entry names (``key``). An authorised key grants exactly the seats that
  name it, nothing more.

Pure logic: the conductor supplies the hello, the peer's key name (from the
CURVE handshake, None on a bus without CURVE) and the agents already in.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from gra.config import Config
from gra.protocols.messages import Hello

LOCAL_KEY = "local"


@dataclass(frozen=True)
class Seat:
    """Agents of one ``[[agents]]`` entry: what they may claim and how many may be in."""

    model: str
    roles: frozenset[str]
    replicas: int
    capacity: int | None
    # Local seats: the agent ids the supervisor launches; remote seats: empty.
    agent_ids: frozenset[str]
    # With CURVE: the authorised key name its agents must hold.
    key: str | None

    @property
    def remote(self) -> bool:
        return not self.agent_ids

    def describe(self) -> str:
        return f"remote model {self.model!r}" if self.remote else f"local model {self.model!r}"


@dataclass(frozen=True)
class Member:
    """What admission needs to know of an agent already in the fleet."""

    identity: bytes
    agent_id: str
    seat: Seat


class Admission:
    def __init__(self, seats: list[Seat], token: str, curve: bool) -> None:
        self.seats = seats
        self.token = token
        self.curve = curve
        self._local = {agent_id: seat for seat in seats for agent_id in seat.agent_ids}

    @classmethod
    def from_config(
        cls,
        config: Config,
        local_agent_ids: dict[str, str],
        token: str,
        local_key: str = LOCAL_KEY,
    ) -> Admission:
        """Seats of ``config``; ``local_agent_ids`` maps each launched agent id to its model.

        ``local_key``: the key the launched agents hold on CURVE (a cluster
        launcher hands out a key of its own, made for the run)."""
        seats = []
        for entry in config.agents:
            ids = frozenset(a for a, model in local_agent_ids.items() if model == entry.model_id)
            if not entry.remote and not ids:
                continue  # a local entry nobody launches (a test's fleet, say) has no seat
            seats.append(
                Seat(
                    model=entry.model_id,
                    roles=frozenset(entry.roles),
                    replicas=entry.replicas,
                    capacity=entry.capacity,
                    agent_ids=frozenset() if entry.remote else ids,
                    key=(entry.key if entry.remote else local_key)
                    if config.bus.curve_keys
                    else None,
                )
            )
        return cls(seats, token, curve=bool(config.bus.curve_keys))

    def admit(
        self, hello: Hello, key: str | None, identity: bytes, members: Iterable[Member]
    ) -> Seat | str:
        """The seat ``hello`` takes, or why it is refused (a sentence for the log)."""
        local = self._local.get(hello.agent_id)
        if local is not None:
            return self._admit_local(local, hello, key)
        claimed = [s for s in self.seats if s.remote and s.model == hello.model]
        if not claimed:
            if any(s.model == hello.model for s in self.seats):
                return f"model {hello.model!r} is served by local agents only"
            return f"model {hello.model!r} is not in this fleet"
        if self.curve:
            claimed = [s for s in claimed if s.key == key]
            if not claimed:
                return f"key {key!r} may not register as model {hello.model!r}"
        members = [m for m in members if m.identity != identity]
        reasons = []
        for seat in claimed:
            extra = set(hello.roles) - seat.roles
            if extra:
                reasons.append(f"roles {sorted(extra)} are not allowed for {seat.describe()}")
            elif seat.capacity is not None and hello.capacity > seat.capacity:
                reasons.append(f"capacity {hello.capacity} > {seat.capacity}")
            elif sum(m.seat is seat for m in members) >= seat.replicas:
                reasons.append(f"{seat.describe()} already has its {seat.replicas} agent(s)")
            else:
                return seat
        return "; ".join(reasons)

    def _admit_local(self, seat: Seat, hello: Hello, key: str | None) -> Seat | str:
        if not hmac.compare_digest(hello.token.encode(), self.token.encode()):
            return f"agent id {hello.agent_id!r} is a local agent and the hello lacks its token"
        if self.curve and key != seat.key:
            return f"agent id {hello.agent_id!r} is a local agent; key {key!r} is not the local key"
        if hello.model != seat.model:
            return f"local agent {hello.agent_id!r} hosts {seat.model!r}, not {hello.model!r}"
        extra = set(hello.roles) - seat.roles
        if extra:
            return f"roles {sorted(extra)} are not allowed for {seat.describe()}"
        return seat

    def missing(self, members: Iterable[Member]) -> list[str]:
        """The seats not yet filled, in words (for a fleet that did not come up)."""
        members = list(members)
        out = []
        for seat in self.seats:
            present = sum(m.seat is seat for m in members)
            wanted = len(seat.agent_ids) or seat.replicas
            if present < wanted:
                via = f" (key {seat.key!r})" if seat.remote and seat.key else ""
                out.append(f"{seat.describe()}{via}: {present} of {wanted} agent(s)")
        return out
