"""An HAProxy agent-check responder: tells the load balancer to stop sending new requests before a drain.

HAProxy's ``agent-check`` connects to ``agent-port`` every ``agent-inter`` and reads one line: ``up ready``
keeps the server in rotation (health checks permitting), ``drain`` gives it weight 0, so no new request
goes to it while the ones in flight finish. Triton 2.51 cannot report itself unready before it stops,
so the supervisor answers ``drain`` first, waits until HAProxy has read it, and only then refuses requests.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class LoadBalancerAgent:
    """Answer HAProxy's agent checks on 127.0.0.1:``port`` from a daemon thread."""

    def __init__(self, port: int):
        self.draining = False
        self._sock = socket.create_server(("127.0.0.1", port))
        self._thread = threading.Thread(target=self._serve, name="lb-agent", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            with conn, contextlib.suppress(OSError):
                conn.sendall(b"drain\n" if self.draining else b"up ready\n")

    def drain(self) -> None:
        self.draining = True

    def close(self) -> None:
        self._sock.close()
