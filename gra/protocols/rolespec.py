"""What the protocol knows of a role: one ``RoleSpec`` per role.

The agent side adds a prompt and sampling to a spec (``gra.agents.roles``),
the supervisor turns a result into the spec's event, the benchmarks do the
same without processes: all three read the same table, so a role is defined
once. A plugin's role comes with the protocol step that asks for it
(``gra.protocols.checks``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import msgspec

from gra.protocols.peer_review import Failed, InstanceEvent, InstanceState, TaskStep

RequestT = TypeVar("RequestT")
OutputT = TypeVar("OutputT")

# Who may take over a seat of the role when no live agent hosts its model:
# "uninvolved": a model not yet in the instance (generator, committee, adjudicator);
# "not_generator": any model but the item's generator (those who write tests);
# "any": any other model serving the role (annotator, verifier, plugin checks).
Handover = Literal["uninvolved", "not_generator", "any"]


def _fails_instance(step: TaskStep, reason: str) -> InstanceEvent:
    return Failed(reason)


@dataclass(frozen=True)
class RoleSpec(Generic[RequestT, OutputT]):
    """A role as the protocol sees it: what it is asked, what it answers, and the
    event its answer becomes in the instance that asked."""

    name: str
    request_type: type[RequestT]
    output_type: type[OutputT]
    # The event that ``output`` of ``step`` becomes in ``state``.
    to_event: Callable[[InstanceState, TaskStep, OutputT], InstanceEvent]
    # The event when the step will not be done (retries spent, no model left):
    # by default the instance fails; a role whose answer is one piece of
    # evidence among others gives up just that piece.
    give_up: Callable[[TaskStep, str], InstanceEvent] = _fails_instance
    handover: Handover = "uninvolved"
    # Whether a hand-over names the role (``Replaced.role``): the seat is not one of
    # the instance's committee seats (generator, reviewers, adjudicator, annotator).
    names_seat: bool = False
    # One decoder per output type, made once (results are decoded on the hot path).
    decoder: msgspec.msgpack.Decoder[OutputT] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder", msgspec.msgpack.Decoder(self.output_type))


def role_table(*specs: RoleSpec[Any, Any]) -> dict[str, RoleSpec[Any, Any]]:
    """Specs by name; two different specs with one name are an error, not an override."""
    table: dict[str, RoleSpec[Any, Any]] = {}
    for spec in specs:
        known = table.get(spec.name)
        if known is not None and known is not spec:
            raise ValueError(f"two roles are named {spec.name!r}")
        table[spec.name] = spec
    return table
