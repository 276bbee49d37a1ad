"""A gra plugin: a ``screen`` role and the protocol step that asks for it.

An item about to be accepted is screened: one that names a banned term, or
whose response runs past a word limit, is rejected with stage ``screen`` and
the offending text as evidence. ``step.py`` is what the supervisor loads (it
imports only ``gra.protocols``); ``role.py`` is what agents serve.
"""
