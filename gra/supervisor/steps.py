"""The protocol steps a run turns on, found among the installed plugins.

A step is named in ``[protocol.steps.NAME]`` and looked up under the
``gra.steps`` entry-point group; nothing installed runs unless a config names
it. A step that is not installed, has bad settings, or whose role no agent
serves is a config error, raised before any agent starts.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import msgspec

from gra.config import Config
from gra.errors import ConfigError
from gra.protocols.builtin_roles import BUILTIN_ROLES
from gra.protocols.checks import CheckStep

ENTRY_POINT_GROUP = "gra.steps"


def load_steps(config: Config, where: str) -> tuple[CheckStep[Any], ...]:
    """The configured steps, in config order, each with its settings decoded."""
    if not config.protocol.steps:
        return ()
    installed = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    served = {role for agent in config.agents for role in agent.roles}
    steps = []
    for name, raw in config.protocol.steps.items():
        key = f"{where}: protocol.steps.{name}"
        entry = installed.get(name)
        if entry is None:
            known = ", ".join(sorted(installed)) or "none"
            raise ConfigError(f"{key}: no installed plugin provides this step (installed: {known})")
        step = entry.load()
        if not isinstance(step, CheckStep) or step.name != name:
            raise ConfigError(
                f"{key}: the entry point {entry.value} is not a CheckStep named {name!r}"
            )
        try:
            steps.append(step.configured(raw))
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{key}: {exc}") from exc
        if step.role.name in BUILTIN_ROLES:
            raise ConfigError(f"{key}: its role {step.role.name!r} is a built-in role's name")
        if step.role.name not in served:
            raise ConfigError(f"{key}: no agent serves its role {step.role.name!r}")
    return tuple(steps)
