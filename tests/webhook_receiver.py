"""A webhook receiver on 127.0.0.1 for the tests: records what arrives, answers as told (ok, an error, never)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time


class Receiver:
    """Records every POST (headers, body). ``mode``: "ok" (204), an int status, or "hang" (read, never answer).

    ``stop()`` closes the port (the receiver is down: connections are refused), ``start()`` opens it again on the same port."""

    def __init__(self, port: int = 0):
        self.mode: str | int = "ok"
        self.received: list[dict] = []  # every request, failed ones included, in arrival order
        self.in_flight: dict[str, int] = {}
        self.overlaps: list[str] = []  # webhook-ids seen twice at once
        self.delay = 0.0
        self.location = ""  # a Location header on every answer (to offer a redirect)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.port = port
        self.server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                msg_id = self.headers.get("webhook-id", "")
                with receiver._lock:
                    entry = {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "path": self.path, "mode": receiver.mode, "at": time.time()}
                    receiver.received.append(entry)
                    if receiver.in_flight.get(msg_id):
                        receiver.overlaps.append(msg_id)
                    receiver.in_flight[msg_id] = receiver.in_flight.get(msg_id, 0) + 1
                try:
                    mode = entry["mode"]
                    if mode == "hang":
                        receiver._release.wait(30)
                        return
                    if receiver.delay:
                        time.sleep(receiver.delay)
                    status = 204 if mode == "ok" else int(mode)
                    self.send_response(status)
                    if receiver.location:
                        self.send_header("Location", receiver.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                finally:
                    with receiver._lock:
                        receiver.in_flight[msg_id] -= 1

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self._release.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            self._release = threading.Event()

    def delivered(self) -> list[dict]:
        """The requests that were answered with success."""
        with self._lock:
            return [r for r in self.received if r["mode"] == "ok"]

    def events(self) -> list[tuple[str, str]]:
        return [(json.loads(r["body"])["type"], r["headers"]["webhook-id"]) for r in self.delivered()]

    def wait(self, predicate, timeout: float = 30, what: str = "webhooks"):
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; received {[(r['mode'], r['body'][:80]) for r in self.received]}")
            time.sleep(0.02)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(folder, name: str) -> tuple[str, str]:
    """A certificate for ``name`` signed by itself, and its key: (cert path, key path)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = f"{folder}/{name}.crt", f"{folder}/{name}.key"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class TlsReceiver(Receiver):
    """The receiver over HTTPS with a certificate for ``name``; notes the TLS server name each client asked for."""

    def __init__(self, cert: str, key: str):
        super().__init__()
        self.cert, self.key = cert, key
        self.server_names: list[str | None] = []

    def start(self) -> "TlsReceiver":
        import ssl

        super().start()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.sni_callback = lambda sock, name, _: self.server_names.append(name)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        return self
