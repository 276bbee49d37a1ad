"""The screen as the protocol sees it: its request, its output, its step."""

from __future__ import annotations

from typing import Annotated

import msgspec

from gra.protocols.checks import CheckStep, check_role
from gra.protocols.peer_review import CheckVerdict, InstanceState


class ScreenSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[protocol.steps.screen]``: terms no kept item may contain (case ignored), and
    the longest response kept, in words."""

    banned: tuple[str, ...] = ("as an ai language model",)
    max_words: Annotated[int, msgspec.Meta(ge=1)] = 2_000


class ScreenRequest(msgspec.Struct, frozen=True):
    instruction: str
    response: str
    banned: tuple[str, ...]
    max_words: int


class ScreenOutput(msgspec.Struct, frozen=True):
    flagged: bool
    reason: str
    evidence: str = ""


def _request(state: InstanceState, settings: ScreenSettings) -> ScreenRequest:
    assert state.item is not None
    item = state.item
    return ScreenRequest(item.instruction, item.response, settings.banned, settings.max_words)


def _verdict(output: ScreenOutput) -> CheckVerdict:
    return CheckVerdict(output.flagged, output.reason, output.evidence)


SCREEN = check_role("screen", ScreenRequest, ScreenOutput, _verdict)
STEP = CheckStep("screen", SCREEN, _request, ScreenSettings)
