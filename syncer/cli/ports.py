"""Which port a process listens on, and a clear word when another process holds it."""

from __future__ import annotations

import socket

from syncer.errors import ConfigError


def is_free(host: str, port: int) -> bool:
    """Whether a listening socket could bind here now, with the same SO_REUSEADDR uvicorn sets (so a
    port in TIME_WAIT counts as free, as it would for the server)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def require_free(host: str, port: int, *, how: str) -> int:
    """`port`, or a ConfigError naming it and how to choose another (`how`)."""
    if not is_free(host, port):
        raise ConfigError(f"port {port} on {host} is taken by another process; {how}")
    return port


def any_free(host: str) -> int:
    """A port the system has free now (the sandbox's fallback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
