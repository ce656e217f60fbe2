"""Regression tests for faults the reliability suite found, one per fault, each against the module
where the fault was fixed."""

from __future__ import annotations

import asyncio
import socket

from megflow_mp.frontdoor import bind


def test_front_door_connections_have_nagle_off():
    """bind() made a socket with proto 0, so asyncio left Nagle on for accepted connections and
    every request after the first on a keep-alive connection waited for a delayed ACK."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen = []

    async def main():
        def accepted(reader, writer):
            s = writer.get_extra_info("socket")
            seen.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.read()  # the server closes after looking at its side
            writer.close()

    asyncio.run(main())
    assert seen and seen[0] != 0
