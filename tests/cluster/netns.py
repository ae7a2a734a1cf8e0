"""A network namespace of its own for a pod that must be reached at a routable address.

The process kubelet runs pods in the host's network namespace at 127.0.0.1, which Endpoint and
EndpointSlice validation refuse ("may not be in the loopback range"), so kube-apiserver's
aggregator (``--enable-aggregator-routing``) could never reach an extension API server's pod. A
pod annotated ``process-kubelet.embedding-operator.dev/network: namespace`` therefore gets what a
CNI plugin would give it on a real node:

* a network namespace (``ip netns``) with a veth pair: the pod's end ``eth0`` is the pod IP,
  the host's end is its gateway, a /30 of 10.213.0.0/16 chosen free under a machine-wide lock;
* the pod's process entered into it (``nsenter --net``), where it listens on every address;
* kube-apiserver at the pod's own ``127.0.0.1:<port>``, as its kubeconfig says: the kubelet
  listens there (a socket created inside the namespace) and relays each connection to the real
  kube-apiserver on the host's loopback. The bytes are relayed, TLS stays end to end.

Test traffic thus only goes to loopback and to an address inside a namespace the tests created.
Everything is removed with the pod (deleting the namespace deletes the veth pair); ``cleanup``
removes what a killed kubelet left, from the list kept in the state directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

log = logging.getLogger("process-kubelet")

ANNOTATION = "process-kubelet.embedding-operator.dev/network"
NAMESPACE_VALUE = "namespace"
POOL = ipaddress.ip_network("10.213.0.0/16")
LOCK = Path("/run/lock/embedding-operator-netns.lock")
CLONE_NEWNET = 0x40000000


def wants_namespace(pod: dict[str, object]) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}  # type: ignore[union-attr]
    return bool(annotations.get(ANNOTATION) == NAMESPACE_VALUE)


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class PodNetwork:
    def __init__(self, uid: str, state_dir: Path) -> None:
        key = hashlib.sha256(uid.encode()).hexdigest()[:8]
        self.name = f"eo-{key}"
        self.host_link = f"eoh{key}"
        self.state_file = state_dir / "netns.json"
        self.address = ""
        self.gateway = ""
        self._listeners: list[socket.socket] = []

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def create(self) -> None:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        with LOCK.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = set(_ip("-o", "-4", "addr", "show").split())
            for block in POOL.subnets(new_prefix=30):
                gateway, address = (str(h) for h in block.hosts())
                if f"{gateway}/30" not in used:
                    break
            else:
                raise RuntimeError(f"no free /30 left in {POOL}")
            _record(self.state_file, self.name, add=True)
            _ip("netns", "add", self.name)
            _ip(
                "link",
                "add",
                self.host_link,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                self.name,
            )
            _ip("addr", "add", f"{gateway}/30", "dev", self.host_link)
            _ip("link", "set", self.host_link, "up")
        _ip("-n", self.name, "addr", "add", f"{address}/30", "dev", "eth0")
        _ip("-n", self.name, "link", "set", "eth0", "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip("-n", self.name, "route", "add", "default", "via", gateway)
        self.address, self.gateway = address, gateway
        log.info("pod network %s: %s via %s", self.name, address, gateway)

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace (nsenter execs it: the pid stays the process's)."""
        return [shutil.which("nsenter") or "nsenter", f"--net={self.path}", "--", *argv]

    def relay(self, port: int) -> None:
        """Serve the host's ``127.0.0.1:port`` at the pod's own ``127.0.0.1:port``."""
        ready: list[socket.socket | BaseException] = []

        def listen() -> None:
            host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            pod = os.open(self.path, os.O_RDONLY)
            try:
                _setns(pod)  # this thread only: the socket is created inside the namespace
                try:
                    server = socket.create_server(("127.0.0.1", port), backlog=64)
                finally:
                    _setns(host)
            except BaseException as e:
                ready.append(e)
                return
            finally:
                os.close(host)
                os.close(pod)
            ready.append(server)
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = server.accept()
                    threading.Thread(target=_pipe_to, args=(conn, port), daemon=True).start()

        thread = threading.Thread(target=listen, name=f"relay-{self.name}", daemon=True)
        thread.start()
        while not ready:
            thread.join(0.05)
        if isinstance(ready[0], BaseException):
            raise ready[0]
        self._listeners.append(ready[0])

    def delete(self) -> None:
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        remove(self.name)
        _record(self.state_file, self.name, add=False)


def _pipe_to(conn: socket.socket, port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        conn.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_copy, args=(upstream, conn), daemon=True)
    back.start()
    _copy(conn, upstream)
    back.join()
    conn.close()
    upstream.close()


def _copy(src: socket.socket, dst: socket.socket) -> None:
    """One direction, until EOF; then half-close the other side, as TCP would."""
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def remove(name: str) -> None:
    """Delete a namespace (and with it the veth pair) if it is there."""
    with contextlib.suppress(subprocess.CalledProcessError):
        _ip("netns", "delete", name)


_state_lock = threading.Lock()


def _record(state_file: Path, name: str, *, add: bool) -> None:
    with _state_lock:
        _write_record(state_file, name, add=add)


def _write_record(state_file: Path, name: str, *, add: bool) -> None:
    names = set(json.loads(state_file.read_text())) if state_file.exists() else set()
    names = names | {name} if add else names - {name}
    state_file.write_text(json.dumps(sorted(names)))


def cleanup(state_dir: Path) -> None:
    """Remove the namespaces a killed kubelet left behind."""
    state_file = state_dir / "netns.json"
    if state_file.exists():
        for name in json.loads(state_file.read_text()):
            remove(name)
        state_file.unlink()
