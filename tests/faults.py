"""Fault injection for the job-system tests and the soak benchmark: real processes, real signals,
and a TCP proxy in front of PostgreSQL that can cut every connection or refuse new ones."""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``reset()`` cuts every connection with a TCP RST,
    ``refuse()`` turns new connections away until ``accept()``: a database that blinks or goes away."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._refusing = False
        self._closed = False
        threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True).start()

    def url_for(self, url: str) -> str:
        """``url`` (postgresql://user@host:port/db?...) pointed at this proxy instead."""
        host_port = f"{self.target[0]}:{self.target[1]}"
        assert host_port in url, url
        return url.replace(host_port, f"127.0.0.1:{self.port}", 1)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                _rst(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _rst(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):  # cut by reset(): the sockets are already closed
            return
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def reset(self) -> int:
        """Cut every open connection (both ways) with an RST; return how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            _rst(a)
            _rst(b)
        return len(pairs)

    def refuse(self) -> None:
        self._refusing = True
        self.reset()

    def accept(self) -> None:
        self._refusing = False

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.reset()


def _rst(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    except OSError:
        pass


class Worker:
    """``reelforge worker`` (or ``serve``) as a child process, to kill, freeze and thaw."""

    def __init__(self, env: dict[str, str], *args: str, command: str = "worker", preload: str | None = None, log: Path | None = None):
        self.env = env
        self.args = [command, *args]
        self.preload = preload  # a module imported first (tests register their engines in it)
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        code = "import sys; from reelforge.cli.main import main; sys.argv[0] = 'reelforge'; main()"
        if self.preload:
            code = f"import {self.preload}; " + code
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        path = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "tests"), self.env.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *self.args],
            env={**self.env, "PYTHONPATH": path},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()  # reap it: a zombie still answers kill(pid, 0)

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.alive():
            self.thaw()
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


def wait_for(predicate, timeout: float, what: str, every: float = 0.05):
    """Poll ``predicate`` until it returns something true; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
