"""A TCP proxy in front of Redis that can lose replies: the request reaches Redis and runs, then
the client's connection is cut before the reply arrives — what a network drop at the wrong
moment does. Used to test that CLAIM and COMMIT are idempotent under the client's retries."""

from __future__ import annotations

import socket
import threading


class ReplyDroppingProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed: list[bytes] = []  # markers: drop the reply of the next request containing one
        self.dropped = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_reply_of(self, marker: bytes) -> None:
        with self._lock:
            self.armed.append(marker)

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            state = {"drop": False}
            threading.Thread(target=self._requests, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, state), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        while data := _recv(client):
            with self._lock:
                marker = next((m for m in self.armed if m in data), None)
                if marker is not None:
                    self.armed.remove(marker)
                    state["drop"] = True
            try:
                server.sendall(data)
            except OSError:
                break
        _close(client, server)

    def _replies(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        while data := _recv(server):
            if state["drop"]:  # the request ran in Redis; its answer never arrives
                self.dropped += 1
                break
            try:
                client.sendall(data)
            except OSError:
                break
        _close(client, server)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 16)
    except OSError:
        return b""


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
