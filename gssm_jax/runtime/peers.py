"""A watch on the other processes of a multi-process run: one that dies ends this one at once.

JAX's coordination service notices a dead process only after its heartbeat timeout, and then
aborts the survivors with a C++ stack trace (SIGABRT, exit 134). Here every pair of processes
holds a TCP connection (addresses exchanged through JAX's key-value store); a process that dies
(kill -9, a crash, an out-of-memory kill) has its sockets closed by its kernel, and a thread of
each survivor sees that within milliseconds, prints one line and leaves with EXIT_PEER_LOST
(`os._exit` after flushing, before XLA can abort). A host that goes down without closing its
sockets is noticed by TCP keepalive within about KEEPALIVE_S seconds, and by JAX's heartbeat
(HEARTBEAT_TIMEOUT_S, set in `gssm_jax.runtime.distributed`) at the latest.

A process that ends through `gssm_jax.main` tells the others its exit code first (`farewell`):
0, EXIT_DIVERGED and EXIT_PREEMPTED are ends all processes reach together, so the others keep
going to their own; any other code (a failed write, a bad file on one host) stops them too.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

from gssm_jax.runtime.exitcodes import EXIT_DIVERGED, EXIT_OK, EXIT_PEER_LOST, EXIT_PREEMPTED

KEY = "gssm_jax/peers/{}"  # each process's "host:port" in JAX's key-value store
EXCHANGE_TIMEOUT_MS = 300_000  # as long as jax.distributed.initialize waits for the others
KEEPALIVE_S = 10  # a silent peer's connection is declared dead after about this long
SHARED_ENDS = (EXIT_OK, EXIT_DIVERGED, EXIT_PREEMPTED)
_BYE = b"B"

_watch: Watch | None = None


def _last_checkpoint() -> str:
    return "no checkpoint step known"


def _keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 4), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _local_address(coordinator: str) -> str:
    """This host's address on the route to the coordinator (127.0.0.1 for a local run)."""
    host, _, port = coordinator.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, int(port)))  # UDP: no packet is sent
            return s.getsockname()[0]
    except OSError:
        return socket.gethostbyname(socket.gethostname())


class Watch:
    """Connections to every other process, and the thread that watches them."""

    def __init__(self, process_id: int, peers: dict[int, socket.socket]) -> None:
        self.process_id = process_id
        self.peers = peers
        self.last_checkpoint: Callable[[], str] = _last_checkpoint
        self._lock = threading.Lock()
        self._leaving = False  # set by farewell: this process ends, its sockets close
        self._thread = threading.Thread(target=self._run, name="gssm_jax-peers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                socks = {s: pid for pid, s in self.peers.items()}
            if not socks:
                return
            try:
                readable, _, _ = select.select(list(socks), [], [], 1.0)
            except (OSError, ValueError):  # a socket closed by farewell meanwhile
                continue
            for sock in readable:
                with self._lock:
                    watched = not self._leaving and socks[sock] in self.peers
                if watched:
                    self._read(socks[sock], sock)

    def _read(self, pid: int, sock: socket.socket) -> None:
        try:
            data = sock.recv(2)
        except OSError as e:
            self._lost(pid, f"its connection failed: {e.strerror or e}")
            return
        if len(data) == 2 and data[:1] == _BYE:
            code = data[1]
            with self._lock:
                self.peers.pop(pid, None)
            sock.close()
            if code not in SHARED_ENDS:
                self._lost(pid, f"it stopped with exit code {code}")
            return
        self._lost(pid, "its connection closed: the process died or was killed")

    def _lost(self, pid: int, why: str) -> None:
        with self._lock:
            if self._leaving:
                return
        try:
            where = self.last_checkpoint()
        except Exception:  # noqa: BLE001 - the line must come out whatever the folder holds
            where = "the last checkpoint is unknown"
        sys.stdout.flush()
        print(
            f"gssm_jax: lost peer process {pid} ({why}); {where}; exiting with code "
            f"{EXIT_PEER_LOST} (run all processes again to resume)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(EXIT_PEER_LOST)

    def farewell(self, code: int) -> None:
        """Tells every peer this process ends with `code`, and stops watching."""
        with self._lock:
            self._leaving = True
            peers, self.peers = self.peers, {}
        for sock in peers.values():
            try:
                sock.sendall(_BYE + bytes([code & 0xFF]))
                sock.close()
            except OSError:
                pass


def start(client: Any, coordinator: str, process_id: int, num_processes: int) -> Watch:
    """Connects to every other process (each to those with lower ids, through the key-value
    store of JAX's distributed `client`) and starts the watch; returns it."""
    global _watch
    listener = socket.create_server(("", 0))
    listener.listen(num_processes)
    address = f"{_local_address(coordinator)}:{listener.getsockname()[1]}"
    client.key_value_set(KEY.format(process_id), address)
    peers: dict[int, socket.socket] = {}
    for pid in range(process_id):
        host, _, port = client.blocking_key_value_get(
            KEY.format(pid), EXCHANGE_TIMEOUT_MS
        ).rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=EXCHANGE_TIMEOUT_MS / 1000)
        sock.sendall(struct.pack("!I", process_id))
        peers[pid] = sock
    listener.settimeout(EXCHANGE_TIMEOUT_MS / 1000)
    while len(peers) < num_processes - 1:
        sock, _ = listener.accept()
        sock.settimeout(EXCHANGE_TIMEOUT_MS / 1000)
        (pid,) = struct.unpack("!I", _recv_exact(sock, 4))
        peers[pid] = sock
    listener.close()
    for sock in peers.values():
        sock.settimeout(None)
        _keepalive(sock)
    _watch = Watch(process_id, peers)
    return _watch


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("a peer closed its connection while joining")
        data += chunk
    return data


def set_last_checkpoint(describe: Callable[[], str]) -> None:
    """What the lost-peer line says about checkpoints ('the last checkpoint is step N')."""
    if _watch is not None:
        _watch.last_checkpoint = describe


def farewell(code: int) -> None:
    """Before this process ends with `code`: tells the others (no-op without a watch)."""
    global _watch
    if _watch is not None:
        _watch.farewell(code)
        _watch = None
