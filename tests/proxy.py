"""A TCP proxy between a client and PostgreSQL that can refuse, delay or cut, on command.

Faults that happen between client and server (a compute that is waking up and refuses
connections, a dropped link, network latency) are injected here, in front of a real
server, instead of mocking the driver. It also counts connections and the chunks each
client sends (one per client flush, i.e. a round trip's worth).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class FaultProxy:
    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        delay: float = 0.0,
        record: bool = False,
    ):
        self.target = (target_host, target_port)
        self.delay = delay  # seconds added to every chunk, each way: a round trip costs 2x
        self.connections = 0
        self.client_chunks = 0
        self.record = record
        self.recorded: list[bytes] = []  # what clients sent, when `record` is on
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self.accept()

    # --- faults -----------------------------------------------------------------------------
    def refuse(self) -> None:
        """Stop listening: new connections are refused, as by a compute that is down."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def accept(self) -> None:
        """Listen again on the same port."""
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Drop every open connection, as a network failure would."""
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stopped.set()
        self.refuse()
        self.cut()

    # --- plumbing ---------------------------------------------------------------------------
    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: refuse() or close()
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self.connections += 1
                self._live |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if from_client:
                    with self._lock:
                        self.client_chunks += 1
                        if self.record:
                            self.recorded.append(chunk)
                if self.delay:
                    time.sleep(self.delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
