"""CURVE on the tcp bus: keys, the authorised list, and socket setup.

Layout of a keys directory (made by `gra keys`), readable by its owner only::

    keys/supervisor.key          the supervisor's public key (agents need it)
    keys/supervisor.key_secret   the supervisor's secret key
    keys/agents/NAME.key_secret  one secret key per agent (copy to its machine)
    keys/authorized/NAME.key     the public keys allowed to join

An agent whose public key is not in ``authorized/`` cannot complete the
CURVE handshake, so it can neither join nor inject a single frame.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import zmq
import zmq.auth
import zmq.auth.asyncio

from gra.errors import KeyFileError

SUPERVISOR = "supervisor"


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def create_keys(directory: Path, agents: list[str]) -> list[Path]:
    """Make the supervisor's key pair (once) and one pair per named agent."""
    _private_dir(directory)
    for sub in ("agents", "authorized"):
        _private_dir(directory / sub)
    made = []
    if not (directory / f"{SUPERVISOR}.key_secret").exists():
        public, secret = zmq.auth.create_certificates(str(directory), SUPERVISOR)
        made += [Path(public), Path(secret)]
    for name in agents:
        if (directory / "agents" / f"{name}.key_secret").exists():
            continue
        public, secret = zmq.auth.create_certificates(str(directory / "agents"), name)
        authorized = directory / "authorized" / f"{name}.key"
        os.replace(public, authorized)
        made += [authorized, Path(secret)]
    for path in directory.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o600)
    return made


def _check_private(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found (create keys with `gra keys`)") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: secret key is readable by others; chmod 600 it")


def load_secret(path: Path) -> tuple[bytes, bytes]:
    _check_private(path)
    public, secret = zmq.auth.load_certificate(str(path))
    if secret is None:
        raise KeyFileError(f"{path}: holds no secret key")
    return public, secret


def load_public(path: Path) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: cannot read public key: {exc}") from None
    return public


def authorised_key_names(keys_dir: Path) -> dict[str, str]:
    """NAME of each ``authorized/NAME.key``, by its z85 public key (the CURVE User-Id)."""
    names = {}
    for path in sorted((keys_dir / "authorized").glob("*.key")):
        names[load_public(path).decode("ascii")] = path.stem
    return names


def secure_server(
    context: zmq.asyncio.Context, socket: zmq.Socket, keys_dir: Path
) -> zmq.auth.asyncio.AsyncioAuthenticator:
    """Make ``socket`` a CURVE server that admits only the authorised keys.

    Call before bind; stop the returned authenticator when done.
    """
    public, secret = load_secret(keys_dir / f"{SUPERVISOR}.key_secret")
    authorized = keys_dir / "authorized"
    if not authorized.is_dir():
        raise KeyFileError(f"{authorized}: no authorised keys directory")
    authenticator = zmq.auth.asyncio.AsyncioAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(authorized))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return authenticator


def secure_client(socket: zmq.Socket, secret_key: Path, server_key: Path) -> None:
    """Make ``socket`` a CURVE client of the supervisor whose public key is given."""
    public, secret = load_secret(secret_key)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = load_public(server_key)
