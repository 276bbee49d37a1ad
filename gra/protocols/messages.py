"""Wire messages between the supervisor and its agents.

Every frame on the bus is one of these Structs, msgpack-encoded, tagged by
``kind``. Role-specific task bodies travel as raw msgpack (``msgspec.Raw``) so
that the bus and the message union stay closed while roles stay open: the role
that owns a task decodes its body with its own types.

Schema evolution: new fields go last and carry defaults; a field is never
retyped; ``PROTOCOL_VERSION`` is announced in ``Hello`` and checked.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

PROTOCOL_VERSION = 1

# The environment variable through which a launched agent receives the token
# its hello must carry (``Hello.token``).
AGENT_TOKEN_ENV = "GRA_AGENT_TOKEN"
# ... and its settings (gra.config.AgentSettings as JSON; ``gra agent --settings-env``).
AGENT_SETTINGS_ENV = "GRA_AGENT_SETTINGS"
# Set by a cluster launcher: the node an agent runs on, reported in its hello.
AGENT_NODE_ENV = "GRA_NODE"
# An agent's exit code for a model it cannot use (missing, not a model,
# truncated): the supervisor reports it at once instead of restarting the agent.
AGENT_EXIT_UNUSABLE = 3

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Capacity = Annotated[int, msgspec.Meta(ge=1, le=4096)]
SamplingSeed = Annotated[int, msgspec.Meta(ge=0, lt=1 << 32)]


class Message(msgspec.Struct, tag_field="kind", frozen=True):
    """Base of every frame on the bus."""


class Hello(Message, tag="hello"):
    """An agent registers: who it is, which model it hosts, what it can do."""

    agent_id: NonEmpty
    model: NonEmpty
    roles: tuple[NonEmpty, ...]
    capacity: Capacity
    backend: NonEmpty
    pid: int
    host: str
    version: int = PROTOCOL_VERSION
    # A local agent's per-run secret from the supervisor that launched it;
    # remote agents prove who they are by their CURVE key instead.
    token: Annotated[str, msgspec.Meta(max_length=256)] = ""
    # Where a cluster launcher placed the agent (a Ray node id), from AGENT_NODE_ENV.
    node: Annotated[str, msgspec.Meta(max_length=256)] = ""


class Welcome(Message, tag="welcome"):
    """The supervisor accepts a registration and states the heartbeat contract."""

    heartbeat_interval_s: float
    heartbeat_misses: int
    version: int = PROTOCOL_VERSION


class Reject(Message, tag="reject"):
    """The supervisor refuses a registration (bad version, unknown role...)."""

    reason: str


class Heartbeat(Message, tag="heartbeat"):
    """Liveness, sent from a dedicated task in both directions."""

    sent_at: float
    in_flight: int = 0


class Task(Message, tag="task"):
    """Work for one role. ``body`` is the role's request, msgpack-encoded.

    ``seed`` (see ``gra.protocols.reproducible``) makes the agent's sampling
    reproducible; None leaves it to the backend.
    """

    task_id: NonEmpty
    instance_id: NonEmpty
    role: NonEmpty
    attempt: int
    deadline_s: float
    body: msgspec.Raw
    seed: SamplingSeed | None = None


class Usage(msgspec.Struct, frozen=True):
    """What one task cost its backend."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    calls: int = 0


class Result(Message, tag="result"):
    """A task's output. ``body`` is the role's output, msgpack-encoded."""

    task_id: NonEmpty
    body: msgspec.Raw
    usage: Usage


class TaskError(Message, tag="task_error"):
    """A task that failed is data, not a dead process."""

    task_id: NonEmpty
    reason: str
    usage: Usage = Usage()


class Cancel(Message, tag="cancel"):
    """The supervisor no longer wants a task (deadline passed, instance done)."""

    task_id: NonEmpty


class Shutdown(Message, tag="shutdown"):
    """Stop. With ``drain`` the agent finishes in-flight tasks first."""

    drain: bool = True
    reason: str = ""


class Goodbye(Message, tag="goodbye"):
    """An agent's last word before it exits, sent with a bounded linger."""

    reason: str


Frame = (
    Hello | Welcome | Reject | Heartbeat | Task | Result | TaskError | Cancel | Shutdown | Goodbye
)

FRAME_ENCODER = msgspec.msgpack.Encoder()
FRAME_DECODER = msgspec.msgpack.Decoder(Frame)
