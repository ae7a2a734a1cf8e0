"""A reverse proxy on loopback in front of the real kube-apiserver that can misbehave on cue:
answer 429 (with Retry-After) or 500, drop connections, or accept a request and never answer.

Clients speak plain HTTP to it (so it can forge answers); it forwards to the apiserver over TLS,
with the client's bearer token when it sends one (so RBAC applies to that client), else
authenticated by the client certificate of ``admin``. Used by the cluster tests of the Kubernetes
boundary and of the operator's convergence: the faults are real network behaviour in front of a
real apiserver, not mocks of the client.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Rule:
    method: str  # "*" for any
    path: str  # a substring of the path (with the query)
    action: str  # "hang", "drop", or an HTTP status such as "429"
    times: int  # how many matching requests it applies to (then it is spent)
    retry_after: str | None = None


class FaultProxy:
    def __init__(self, upstream: str, ca: ssl.SSLContext, admin: ssl.SSLContext) -> None:
        self.upstream = urlsplit(upstream)
        self.ca = ca
        self.admin = admin
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str, str]] = []  # (method, path, what happened)
        self._lock = threading.Lock()
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()  # let hung handlers go
        self.server.shutdown()
        self.server.server_close()

    def fail(
        self,
        method: str,
        path: str,
        action: str,
        times: int = 1,
        retry_after: str | None = None,
    ) -> None:
        with self._lock:
            self.rules.append(Rule(method, path, action, times, retry_after))

    def heal(self) -> None:
        """Forget every rule and release the requests held by ``hang``."""
        with self._lock:
            self.rules.clear()
        self._release.set()
        self._release = threading.Event()

    def count(self, method: str, path: str, what: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for m, p, w in self.seen
                if m == method and path in p and (what is None or w == what)
            )

    def _rule(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.times > 0 and rule.method in ("*", method) and rule.path in path:
                    rule.times -= 1
                    return rule
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        rule = self._rule(method, path)
        what = rule.action if rule else "forwarded"
        with self._lock:
            self.seen.append((method, path, what))
        if rule and rule.action == "hang":
            self._release.wait()  # accepted, never answered (until healed)
            handler.close_connection = True
            return
        if rule and rule.action == "drop":
            handler.close_connection = True
            handler.connection.close()
            return
        if rule:
            status = int(rule.action)
            payload = json.dumps(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "TooManyRequests" if status == 429 else "InternalError",
                    "message": f"injected by the fault proxy ({status})",
                    "code": status,
                }
            ).encode()
            handler.send_response(status)
            if rule.retry_after:
                handler.send_header("Retry-After", rule.retry_after)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        self._forward(handler, method, path, body)

    def _forward(
        self, handler: BaseHTTPRequestHandler, method: str, path: str, body: bytes | None
    ) -> None:
        token = handler.headers.get("Authorization")
        conn = http.client.HTTPSConnection(
            self.upstream.hostname or "127.0.0.1",
            self.upstream.port,
            context=self.ca if token else self.admin,
            timeout=330,
        )
        headers = {
            k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")
        }
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            handler.send_response(response.status)
            chunked = response.getheader("Transfer-Encoding", "").lower() == "chunked"
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                    handler.send_header(key, value)
            if chunked:  # a watch: stream it through, chunk by chunk
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                while chunk := response.read1(65536):
                    handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    handler.wfile.flush()
                handler.wfile.write(b"0\r\n\r\n")
            else:
                data = response.read()
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
        except OSError:
            handler.close_connection = True
        finally:
            conn.close()


def for_cluster(kubeconfig: str) -> FaultProxy:
    """A proxy in front of the apiserver that ``kubeconfig`` (an admin's) names."""
    from embedding_operator.kube import Connection

    conn = Connection.from_environment(kubeconfig)
    assert isinstance(conn.verify, ssl.SSLContext) and conn.cert is not None
    ca = ssl.create_default_context()
    ca.load_verify_locations(cadata=_ca_pem(conn.verify))
    admin = ssl.create_default_context()
    admin.load_verify_locations(cadata=_ca_pem(conn.verify))
    admin.load_cert_chain(*conn.cert)
    return FaultProxy(conn.host, ca, admin)


def _ca_pem(context: ssl.SSLContext) -> str:
    return "".join(ssl.DER_cert_to_PEM_cert(der) for der in context.get_ca_certs(binary_form=True))
