"""The fault proxy itself: its delay must model a network, or the benchmark's figures lie.

A reply that leaves the server in two pieces (PostgreSQL flushes a NOTICE at once, then
the rest) crosses a real network in one latency, not two; and a proxy without TCP_NODELAY
holds the second piece until the client's delayed ACK (~40 ms).
"""

from __future__ import annotations

import socket
import threading
import time

from proxy import FaultProxy

DELAY = 0.5  # long enough that a second, stacked delay cannot hide in scheduling noise


def test_a_reply_in_two_pieces_costs_one_delay():
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(16)
            conn.sendall(b"notice;")
            time.sleep(0.01)
            conn.sendall(b"reply")
            conn.recv(16)  # until the client is done

    threading.Thread(target=serve, daemon=True).start()
    proxy = FaultProxy(listener.getsockname()[1], delay=DELAY)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            client.sendall(b"query")
            sent = time.monotonic()
            received = b""
            while not received.endswith(b"reply"):
                received += client.recv(64)
            took = time.monotonic() - sent
    finally:
        proxy.close()
        listener.close()
    assert received == b"notice;reply"
    # one delay each way: 2 x 0.5 s; stacked delays per piece would make it 1.5 s
    assert 2 * DELAY <= took < 3 * DELAY, took
