"""uvicorn's command line, with a listening socket that keeps ``TCP_NODELAY`` under ``--workers N``.

``two-tower serve`` runs ``python two_tower_uvicorn.py <uvicorn options>``: exactly ``python -m
uvicorn <uvicorn options>``, but for one thing. With ``--workers`` above 1, uvicorn binds the
listening socket itself and hands it to its worker processes; that socket is created without a
protocol number (``proto`` 0), the connections accepted on it inherit that, and asyncio only turns
Nagle's algorithm off (``TCP_NODELAY``) on sockets that say they are TCP. Each answer on a
keep-alive connection then waits for the client's delayed ACK: ~40 ms per request on Linux instead
of ~2 (https://github.com/Kludex/uvicorn/issues/3149; ``mlflow models serve --workers N`` has the
same delay). Here the socket uvicorn binds is re-wrapped with ``proto = IPPROTO_TCP`` before the
workers receive it. With one worker uvicorn lets asyncio bind the socket, which is already right.

Like ``two_tower_asgi``, this module imports nothing from ``two_tower_recsys``.
"""

from __future__ import annotations

import socket
import sys

import uvicorn.config
import uvicorn.main

_bind_socket = uvicorn.config.Config.bind_socket


def tcp_socket(sock: socket.socket) -> socket.socket:
    """The same listening socket (same file descriptor), marked as TCP when it is an IP one."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto == socket.IPPROTO_TCP:
        return sock
    inheritable = sock.get_inheritable()
    marked = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    marked.set_inheritable(inheritable)
    return marked


def bind_tcp_socket(config: uvicorn.config.Config) -> socket.socket:
    return tcp_socket(_bind_socket(config))


def main() -> None:
    uvicorn.config.Config.bind_socket = bind_tcp_socket  # this launcher process only
    sys.exit(uvicorn.main.main())


if __name__ == "__main__":
    main()
