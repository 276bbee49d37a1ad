"""The wire: ZeroMQ sockets carrying msgpack-encoded protocol frames."""

from gra.bus.dealer import Dealer
from gra.bus.endpoints import private_ipc_endpoint
from gra.bus.router import Router

__all__ = ["Dealer", "Router", "private_ipc_endpoint"]
