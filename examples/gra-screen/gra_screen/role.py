"""The screen as agents serve it: plain code, so any agent listing the role runs
it without asking its model."""

from __future__ import annotations

from gra.agents.roles import Role
from gra_screen.step import SCREEN, ScreenOutput, ScreenRequest

_CONTEXT = 40


async def screen(request: ScreenRequest) -> ScreenOutput:
    text = f"{request.instruction}\n{request.response}"
    lowered = text.lower()
    for term in request.banned:
        at = lowered.find(term.lower())
        if at >= 0:
            evidence = text[max(0, at - _CONTEXT) : at + len(term) + _CONTEXT]
            return ScreenOutput(True, f"names the banned term {term!r}", evidence)
    words = len(request.response.split())
    if words > request.max_words:
        reason = f"response has {words} words, more than {request.max_words}"
        return ScreenOutput(True, reason, " ".join(request.response.split()[-_CONTEXT:]))
    return ScreenOutput(False, "no banned term, within the word limit")


ROLE = Role.executing(SCREEN, screen)
