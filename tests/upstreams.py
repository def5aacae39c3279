"""Stand-ins around a real nginx: a DNS server whose answer a test changes, and a pod that fails every request.

``NameServer`` answers A queries for one name on a loopback UDP port (nginx's ``resolver``) with the
addresses the test sets, and counts the queries. ``FailingPod`` listens on an address and port, takes
each connection and closes it at once without answering (a pod that died under a request), and counts
them.
"""

from __future__ import annotations

import socket
import struct
import threading

A, IN = 1, 1


class NameServer:
    """A DNS server on 127.0.0.1:``port`` answering A queries for ``name`` with ``addresses`` (TTL 0)."""

    def __init__(self, name: str, addresses: list[str]):
        self.name, self.addresses, self.queries = name, list(addresses), 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                query, peer = self.sock.recvfrom(512)
            except OSError:  # closed
                return
            self.sock.sendto(self.answer(query), peer)

    def answer(self, query: bytes) -> bytes:
        """The reply to one query: header, the question as asked, and an A record per address for our name."""
        ident = query[:2]
        end = query.index(b"\0", 12) + 5  # the question: labels, their terminating 0, type and class
        labels, offset = [], 12
        while query[offset]:
            labels.append(query[offset + 1 : offset + 1 + query[offset]].decode().lower())
            offset += 1 + query[offset]
        kind, klass = struct.unpack(">HH", query[end - 4 : end])
        self.queries += 1
        ours = ".".join(labels) == self.name and (kind, klass) == (A, IN)
        addresses = self.addresses if ours else []
        rcode = 0 if ".".join(labels) == self.name else 3  # NXDOMAIN for any other name
        header = ident + struct.pack(">HHHHH", 0x8180 | rcode, 1, len(addresses), 0, 0)
        records = b"".join(
            struct.pack(">HHHIH", 0xC00C, A, IN, 0, 4) + socket.inet_aton(address) for address in addresses
        )
        return header + query[12:end] + records

    def close(self) -> None:
        self.sock.close()


class FailingPod:
    """Listens on ``address``:``port`` for each port; closes every connection unanswered, and counts them per port."""

    def __init__(self, address: str, ports: list[int]):
        self.connections = dict.fromkeys(ports, 0)
        self.listeners = []
        for port in ports:
            listener = socket.create_server((address, port))
            self.listeners.append(listener)
            threading.Thread(target=self._serve, args=(listener, port), daemon=True).start()

    def _serve(self, listener: socket.socket, port: int) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed
                return
            self.connections[port] += 1
            connection.close()

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()
