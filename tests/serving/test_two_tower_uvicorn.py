"""The launcher `two-tower serve` runs: uvicorn's listening socket, marked as TCP for its workers.

Real sockets on loopback and a real asyncio server, as each uvicorn worker runs one on the socket
it is handed; what is checked is the option on the connections it accepts (no timing).
"""

from __future__ import annotations

import asyncio
import pickle
import socket
from multiprocessing.reduction import ForkingPickler

import uvicorn

from two_tower_recsys.serving.two_tower_uvicorn import bind_tcp_socket, tcp_socket


def uvicorn_listener() -> socket.socket:
    """The socket uvicorn binds for --workers N (``Config.bind_socket``), on a free port."""
    return uvicorn.Config("app:app", host="127.0.0.1", port=0).bind_socket()


def accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY of a connection accepted by an asyncio server on ``listener``."""
    accepted: asyncio.Future

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main() -> int:
        nonlocal accepted
        accepted = asyncio.get_running_loop().create_future()
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            try:
                return await asyncio.wait_for(accepted, timeout=10)
            finally:
                writer.close()

    return asyncio.run(main())


def test_uvicorns_own_listener_loses_nodelay_and_the_marked_one_keeps_it():
    # The upstream behaviour this launcher exists for (uvicorn issue #3149): if this starts to
    # fail, uvicorn has fixed it and the launcher is no longer needed.
    assert accepted_nodelay(uvicorn_listener()) == 0
    assert accepted_nodelay(tcp_socket(uvicorn_listener())) != 0


def test_the_marked_listener_is_the_same_bound_socket_and_survives_the_trip_to_a_worker():
    raw = uvicorn_listener()
    fd, address, inheritable = raw.fileno(), raw.getsockname(), raw.get_inheritable()
    marked = tcp_socket(raw)
    assert (marked.fileno(), marked.getsockname(), marked.get_inheritable()) == (fd, address, inheritable)
    assert marked.proto == socket.IPPROTO_TCP
    # uvicorn hands the socket to its spawned workers by pickling it: the protocol travels along.
    worker_copy = pickle.loads(ForkingPickler.dumps(marked))
    assert worker_copy.proto == socket.IPPROTO_TCP
    assert accepted_nodelay(worker_copy) != 0
    marked.close()


def test_the_launcher_binds_through_uvicorn_and_marks_the_socket():
    with bind_tcp_socket(uvicorn.Config("app:app", host="127.0.0.1", port=0)) as listener:
        assert listener.proto == socket.IPPROTO_TCP and listener.getsockname()[0] == "127.0.0.1"


def test_other_sockets_pass_through_untouched():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        assert tcp_socket(unix) is unix
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as already_tcp:
        assert tcp_socket(already_tcp) is already_tcp
