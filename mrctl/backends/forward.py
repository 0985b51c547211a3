"""`python -m mrctl.backends.forward HOST PORT [LISTEN_PORT]`: a TCP forwarder, run by the swarm backend.

The master (outside the swarm) reaches the cluster's Redis through it: this small container sits
on the cluster's overlay network and on a bridge that publishes LISTEN_PORT on the host's
loopback (or a remote engine's address), and passes every connection on to HOST:PORT. HOST is
resolved for each connection, so a Redis task that Swarm reschedules is found under its name.
It reads nothing it forwards: the Redis password still guards every connection.

A Redis whose swarm node is killed sends no RST: its address keeps swallowing packets, and a
plain forwarder would wait on it forever, and the master with it (issue 27). So the upstream
connect has a deadline, and the upstream socket probes a silent peer (keepalive, and
TCP_USER_TIMEOUT for data left unacknowledged; mrctl.broker.base.SILENT_PEER_OPTIONS): within
~10 s the forwarder gives up on it and closes the master's side, which the master sees as a lost
connection instead of a silence.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

from mrctl.broker.base import SILENT_PEER_OPTIONS

log = logging.getLogger("mrctl.backends.forward")
BUFFER = 1 << 16
CONNECT_TIMEOUT_S = 3.0  # Redis is on the same overlay: it answers a SYN in milliseconds


def watch_silent_peer(writer: asyncio.StreamWriter) -> None:
    """Keepalive probes and TCP_USER_TIMEOUT on a connection: a peer gone without a word is an
    error within ~10 s."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in SILENT_PEER_OPTIONS.items():
        sock.setsockopt(socket.IPPROTO_TCP, option, value)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def forward(host: str, port: int, listen_port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            log.warning("cannot reach %s:%d: %s", host, port, exc or f"no answer within {CONNECT_TIMEOUT_S:g}s")
            writer.close()
            return
        watch_silent_peer(up_writer)
        watch_silent_peer(writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "0.0.0.0", listen_port)
    log.info("forwarding :%d to %s:%d", listen_port, host, port)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or not all(a.isdigit() for a in argv[1:]):
        print("usage: python -m mrctl.backends.forward HOST PORT [LISTEN_PORT]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s forward %(message)s", datefmt="%H:%M:%S")
    listen = int(argv[2]) if len(argv) == 3 else int(argv[1])
    try:
        asyncio.run(forward(argv[0], int(argv[1]), listen))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
