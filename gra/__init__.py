"""gra: fleets of small language models synthesising instruction data by peer review."""

__version__ = "0.1.0"
