"""Protocol steps that plugins add: checks of an item about to be accepted.

A check step runs at one defined point of an instance: when the protocol
would accept the item (the committee's verdict, an adjudicator's, or a
verification pass), and before the acceptance is final (and before the
accepted item is annotated). It asks an agent serving its role, and the
role's output becomes a ``Checked`` event: ``reject`` ends the instance as
rejected with the step's name as its stage and the verdict's reason and
evidence in the record; otherwise the acceptance stands. A check that cannot
be run (no model serves its role, or its task keeps failing) lets the
acceptance stand, and the record says why. Items the protocol rejects are
never checked: a check can only reject.

A plugin package exposes a ``CheckStep`` under the ``gra.steps`` entry-point
group and the agent side of its role under ``gra.roles``; a run turns the step
on with ``[protocol.steps.NAME]`` (its settings, if any, in that table).
Everything here is pure: requests are built from the instance state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from gra.protocols.peer_review import (
    Checked,
    CheckVerdict,
    InstanceEvent,
    InstanceState,
    RunCheck,
    TaskStep,
)
from gra.protocols.rolespec import RoleSpec

RequestT = TypeVar("RequestT")
OutputT = TypeVar("OutputT")


class NoSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A check step that takes no settings."""


def check_role(
    name: str,
    request_type: type[RequestT],
    output_type: type[OutputT],
    verdict: Callable[[OutputT], CheckVerdict],
) -> RoleSpec[RequestT, OutputT]:
    """The spec of a role that serves check steps: its output becomes ``Checked``
    through ``verdict``; a task given up leaves the acceptance standing."""

    def to_event(_state: InstanceState, step: TaskStep, output: OutputT) -> InstanceEvent:
        assert isinstance(step, RunCheck)
        return Checked(step.check, step.model, verdict(output))

    def give_up(step: TaskStep, reason: str) -> InstanceEvent:
        assert isinstance(step, RunCheck)
        kept = CheckVerdict(False, f"not checked, the acceptance stands: {reason}")
        return Checked(step.check, step.model, kept)

    return RoleSpec(name, request_type, output_type, to_event, give_up, "any", names_seat=True)


def _always(_state: InstanceState, _settings: Any) -> bool:
    return True


@dataclass(frozen=True)
class CheckStep(Generic[RequestT]):
    """A plugin's protocol step (see the module docstring)."""

    # The step's name; also the stage of the items it rejects.
    name: str
    role: RoleSpec[RequestT, Any]
    # The request for the item of ``state``, given the step's settings.
    request: Callable[[InstanceState, Any], RequestT]
    # The settings' type, decoded from ``[protocol.steps.NAME]``.
    settings_type: type[msgspec.Struct] = NoSettings
    # Whether the step applies to this item at all (pure, like ``request``).
    when: Callable[[InstanceState, Any], bool] = _always
    # Whether the model that generated the item may not check it.
    exclude_generator: bool = True
    settings: Any = None

    def configured(self, raw: dict[str, Any]) -> CheckStep[RequestT]:
        """This step with its settings decoded; raises msgspec.ValidationError naming
        the bad key."""
        settings = msgspec.convert(raw, type=self.settings_type)
        return dataclasses.replace(self, settings=settings)

    def applies(self, state: InstanceState) -> bool:
        return self.when(state, self.settings)

    def request_for(self, state: InstanceState) -> RequestT:
        return self.request(state, self.settings)
