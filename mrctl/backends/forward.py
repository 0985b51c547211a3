"""`python -m mrctl.backends.forward HOST PORT [LISTEN_PORT]`: a TCP forwarder, run by the swarm backend.

The master (outside the swarm) reaches the cluster's Redis through it: this small container sits
on the cluster's overlay network and on a bridge that publishes LISTEN_PORT on the host's
loopback (or a remote engine's address), and passes every connection on to HOST:PORT. HOST is
resolved for each connection, so a Redis task that Swarm reschedules is found under its name.
It reads nothing it forwards: the Redis password still guards every connection.
"""

from __future__ import annotations

import asyncio
import logging
import sys

log = logging.getLogger("mrctl.backends.forward")
BUFFER = 1 << 16


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
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            log.warning("cannot reach %s:%d: %s", host, port, exc)
            writer.close()
            return
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
