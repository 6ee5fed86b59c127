"""A TCP proxy between a client and PostgreSQL that can refuse, delay or cut, on command.

Faults that happen between client and server (a compute that is waking up and refuses
connections, a dropped link, network latency) are injected here, in front of a real
server, instead of mocking the driver. It also counts connections and the chunks each
client sends (one per client flush, i.e. a round trip's worth).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
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
        # Silent faults: bytes are read and dropped, so both ends see a live TCP peer that
        # never answers (what a black-holed network looks like to an application).
        self.silent = False
        self._silence_on: bytes | None = None  # go silent when a client chunk holds this
        self._silence_one = False  # ... that chunk's connection only
        self._reset_on: bytes | None = None  # reset after forwarding a chunk holding this
        self._reset_armed_by: bytes | None = None  # ... once a chunk holding this went by
        self._reset_forwards = True  # whether that chunk reaches the server first
        self._held_closes: list[tuple[socket.socket, socket.socket]] = []  # while silent
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

    def go_silent(self, on: bytes | None = None, that_connection_only: bool = False) -> None:
        """Stop passing packets, both ways, on every connection and new ones alike (a
        stall at connect when armed before it); with `on`, from the first client chunk
        that contains it (that chunk is dropped too): a stall after that query. With
        `that_connection_only`, only that chunk's connection goes silent and new ones
        get through (a middlebox that dropped one flow)."""
        with self._lock:
            if on is None:
                self.silent = True
            else:
                self._silence_on = on
                self._silence_one = that_connection_only

    def speak(self) -> None:
        """The link heals: packets pass again, the closes it held back included."""
        with self._lock:
            self.silent, self._silence_on = False, None
            held, self._held_closes = self._held_closes, []
        for pair in held:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def reset_after(self, marker: bytes, once_seen: bytes | None = None,
                    forward: bool = True) -> None:  # fmt: skip
        """Forward the first client chunk containing `marker` (after one containing
        `once_seen`, if given), then reset the connection (RST, not FIN) before the
        server's answer comes back: e.g. right after a given revision's COMMIT. With
        `forward=False` that chunk is dropped instead: the server never sees it."""
        with self._lock:
            self._reset_on, self._reset_armed_by = marker, once_seen
            self._reset_forwards = forward

    @staticmethod
    def _deliver(outbox: queue.Queue, sink: socket.socket) -> None:
        while True:
            item = outbox.get()
            try:
                if item is None:
                    return
                due, chunk = item
                time.sleep(max(0.0, due - time.monotonic()))
                with contextlib.suppress(OSError):
                    sink.sendall(chunk)
            finally:
                outbox.task_done()

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
            for sock in (client, server):  # no Nagle: a reply in pieces is not held for an ACK
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._live |= {client, server}
            flow = {"silent": False}  # this connection alone (go_silent(that_connection_only))
            for args in ((client, server, True, flow), (server, client, False, flow)):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, from_client: bool, flow: dict
    ) -> None:
        # With a delay, a chunk is sent `delay` after it arrived, by a thread of its own: a
        # reply that arrives in two pieces costs one delay, as on a real network, not two.
        outbox: queue.Queue | None = None
        if self.delay:
            outbox = queue.Queue()
            threading.Thread(target=self._deliver, args=(outbox, sink), daemon=True).start()
        try:
            while chunk := source.recv(65536):
                arrived = time.monotonic()
                reset = False
                with self._lock:
                    if from_client:
                        self.client_chunks += 1
                        if self.record:
                            self.recorded.append(chunk)
                        if self._silence_on is not None and self._silence_on in chunk:
                            if self._silence_one:
                                flow["silent"] = True
                            else:
                                self.silent = True
                            self._silence_on = None
                        if self._reset_armed_by is not None and self._reset_armed_by in chunk:
                            self._reset_armed_by = None
                        elif (self._reset_on is not None and self._reset_armed_by is None
                              and self._reset_on in chunk):  # fmt: skip
                            reset, self._reset_on = True, None
                            self.silent = True  # the server's answer must not get through
                    silent = (self.silent or flow["silent"]) and not reset
                if silent:
                    continue  # read and dropped: the peer stays connected, and hears nothing
                if outbox is not None and not reset:
                    outbox.put((arrived + self.delay, chunk))
                    continue
                if outbox is not None:  # what came before it goes first
                    outbox.join()
                    time.sleep(max(0.0, arrived + self.delay - time.monotonic()))
                if not reset or self._reset_forwards:
                    sink.sendall(chunk)
                if reset:
                    time.sleep(0.3)  # the server has it (and commits); its answer is lost
                    for sock in (source, sink):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))  # fmt: skip
                        sock.close()
                    with self._lock:
                        self.silent = False  # new connections (a reconnect) get through
                    return
        except OSError:
            pass
        finally:
            if outbox is not None:
                outbox.put(None)  # the sender ends once it has sent what was due
                outbox.join()
            with self._lock:
                held = self.silent or flow["silent"]  # a black hole passes no FIN either
                if held:
                    self._held_closes.append((source, sink))
            for sock in () if held else (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
