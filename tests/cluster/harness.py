"""Start and stop a real Kubernetes control plane on loopback ports.

etcd, kube-apiserver and kube-controller-manager are the binaries built from their Go
modules by ``tests/cluster/build.sh``; the process kubelet (``tests/cluster/kubelet.py``)
runs the pods. Every process is started in a process group of its own, recorded in
``<state>/pids.json``, and only those groups are signalled on stop.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster import netns, pki

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN_DIR = REPO_ROOT / ".cache" / "cluster-bin"
DEFAULT_STATE_DIR = REPO_ROOT / ".cache" / "cluster"
BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"
NODE_NAME = "process-node"
SERVICE_CIDR = "10.0.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_binaries(bin_dir: Path = DEFAULT_BIN_DIR) -> None:
    """Build the binaries (a no-op when they are up to date)."""
    env = dict(os.environ, CLUSTER_BIN_DIR=str(bin_dir))
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, env=env)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class ProcessRecord:
    name: str
    pid: int
    start: int

    def is_ours(self) -> bool:
        """The pid is alive and is the process we started (guards against pid reuse)."""
        return pid_alive(self.pid) and start_time(self.pid) == self.start


def terminate_groups(records: list[ProcessRecord], timeout: float = 15.0) -> list[int]:
    """SIGTERM each record's process group, SIGKILL after ``timeout``.

    Returns the pids of the group members still alive at the end (empty on success).
    """
    groups = [r.pid for r in records if r.is_ours() or _group_members(r.pid)]
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_group_members(g) for g in groups):
        _reap(groups)
        time.sleep(0.1)
    for pgid in groups:
        if _group_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_group_members(g) for g in groups):
        _reap(groups)
        time.sleep(0.1)
    _reap(groups)
    return [p for g in groups for p in _group_members(g)]


def _reap(pids: list[int]) -> None:
    """Collect those of ``pids`` that are our exited children (never anyone else's children:
    other code in this process may be waiting for its own)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _kubeconfig(server: str, ca: Path, user: dict[str, str], name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "embedding-operator-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [
            {
                "name": "embedding-operator-test",
                "context": {"cluster": "embedding-operator-test", "user": name},
            }
        ],
        "current-context": "embedding-operator-test",
    }


def _cert_user(pair: pki.KeyPair) -> dict[str, str]:
    return {
        "client-certificate-data": base64.b64encode(pair.cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(pair.key.read_bytes()).decode(),
    }


@dataclass
class Cluster:
    """A control plane under ``state_dir``; use as a context manager or call start/stop."""

    state_dir: Path = DEFAULT_STATE_DIR
    bin_dir: Path = DEFAULT_BIN_DIR
    with_kubelet: bool = True
    node_name: str = NODE_NAME
    apiserver_args: list[str] = field(default_factory=list)
    """Extra kube-apiserver flags (the operator benchmark's audit log, say)."""
    records: list[ProcessRecord] = field(default_factory=list)
    server: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def log_dir(self) -> Path:
        """Logs of the control plane processes; pod logs are under ``log_dir / "pods"``."""
        return self.state_dir / "logs"

    @property
    def pod_log_dir(self) -> Path:
        return self.log_dir / "pods"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "pids.json"

    @property
    def kubelet_pids_file(self) -> Path:
        return self.state_dir / "kubelet-pods.json"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> Cluster:
        t0 = time.monotonic()
        if self.pids_file.exists():
            previous = self.load_records()
            if any(r.is_ours() for r in previous):
                raise ClusterError(
                    f"a cluster is already running from {self.state_dir} "
                    "(run `python -m tests.cluster down` first)"
                )
        for b in BINARIES:
            if not (self.bin_dir / b).is_file():
                raise ClusterError(f"{self.bin_dir / b} missing: run bash {BUILD_SCRIPT}")
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True)
        self.log_dir.mkdir()
        self.pod_log_dir.mkdir()
        try:
            self._start(t0, timeout)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        return self

    def _start(self, t0: float, timeout: float) -> None:
        deadline = t0 + timeout
        certs = pki.generate(self.state_dir / "pki")
        self.timings["pki"] = time.monotonic() - t0

        etcd_port, etcd_peer = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            ],
            extra_env={"ETCD_UNSAFE_NO_FSYNC": "true"},
        )
        self._wait_http(f"http://127.0.0.1:{etcd_port}/health", deadline, "etcd", None)
        self.timings["etcd"] = time.monotonic() - t0

        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.state_dir / 'apiserver'}",
                f"--tls-cert-file={certs.apiserver.cert}",
                f"--tls-private-key-file={certs.apiserver.key}",
                f"--client-ca-file={certs.ca.cert}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={certs.sa_pub}",
                f"--service-account-signing-key-file={certs.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                # aggregation layer
                f"--requestheader-client-ca-file={certs.front_proxy_ca.cert}",
                f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT_NAME}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={certs.front_proxy_client.cert}",
                f"--proxy-client-key-file={certs.front_proxy_client.key}",
                "--enable-aggregator-routing=true",
                # `kubectl logs` and exec dial the node: by its InternalIP (127.0.0.1), never by
                # resolving the name process-node through the host's DNS resolver
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "--v=1",
                *self.apiserver_args,
            ],
        )
        ctx = ssl.create_default_context(cafile=str(certs.ca.cert))
        ctx.load_cert_chain(str(certs.admin.cert), str(certs.admin.key))
        self._wait_http(f"{self.server}/readyz", deadline, "kube-apiserver", ctx)
        self.timings["kube-apiserver"] = time.monotonic() - t0

        self.kubeconfig.write_text(
            json.dumps(_kubeconfig(self.server, certs.ca.cert, _cert_user(certs.admin), "admin"))
        )
        self.kubeconfig.chmod(0o600)
        kcm_kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        kcm_kubeconfig.write_text(
            json.dumps(
                _kubeconfig(
                    self.server,
                    certs.ca.cert,
                    _cert_user(certs.controller_manager),
                    "system:kube-controller-manager",
                )
            )
        )
        kcm_kubeconfig.chmod(0o600)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.state_dir / 'controller-manager'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={certs.sa_key}",
                f"--root-ca-file={certs.ca.cert}",
                f"--cluster-signing-cert-file={certs.ca.cert}",
                f"--cluster-signing-key-file={certs.ca.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*",
                "--profiling=false",
                "--v=1",
            ],
        )
        if self.with_kubelet:
            self._spawn_kubelet()
        self._wait_controllers(deadline)
        self.timings["ready"] = time.monotonic() - t0

    def _spawn_kubelet(self) -> None:
        self._spawn(
            "kubelet",
            [
                sys.executable,
                "-m",
                "tests.cluster.kubelet",
                f"--kubeconfig={self.kubeconfig}",
                f"--state-dir={self.state_dir}",
                f"--node-name={self.node_name}",
            ],
            cwd=REPO_ROOT,
        )

    def start_kubelet(self, timeout: float = 60.0) -> None:
        """Start the process kubelet later, on a cluster started without it (the operator
        benchmark runs its first figures with no pod started, then with pods)."""
        self.with_kubelet = True
        self._spawn_kubelet()
        self._wait_controllers(time.monotonic() + timeout)

    def _spawn(
        self,
        name: str,
        argv: list[str],
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env.update(extra_env or {})
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=cwd or self.state_dir,
            )
        self._procs.append(proc)
        self.records.append(ProcessRecord(name=name, pid=proc.pid, start=start_time(proc.pid)))
        self._save_records()

    def _save_records(self) -> None:
        data = [{"name": r.name, "pid": r.pid, "start": r.start} for r in self.records]
        self.pids_file.write_text(json.dumps({"server": self.server, "processes": data}))

    def load_records(self) -> list[ProcessRecord]:
        data = json.loads(self.pids_file.read_text())
        self.server = data.get("server", "")
        return [ProcessRecord(**p) for p in data["processes"]]

    def _check_alive(self) -> None:
        for r in self.records:
            if not r.is_ours():
                tail = (self.log_dir / f"{r.name}.log").read_text(errors="replace")[-3000:]
                raise ClusterError(f"{r.name} exited during start-up; log tail:\n{tail}")

    def _wait_http(self, url: str, deadline: float, what: str, ctx: ssl.SSLContext | None) -> None:
        last: object = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = exc
            time.sleep(0.2)
        raise ClusterError(f"{what} not ready at {url}: {last}")

    def _wait_controllers(self, deadline: float) -> None:
        """Ready when the SA controller made `default/default` (and the node is Ready)."""
        from kubernetes import client

        api: Any = client.CoreV1Api(self.api_client())
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                api.read_namespaced_service_account("default", "default")
                if not self.with_kubelet or self._node_ready(api):
                    return
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            time.sleep(0.2)
        raise ClusterError("controllers/kubelet not ready in time")

    def _node_ready(self, api: Any) -> bool:
        from kubernetes import client

        try:
            node = api.read_node(self.node_name)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))

    def stop(self) -> list[int]:
        """Stop every process this cluster started. Returns pids left alive (empty = clean)."""
        if not self.records and self.pids_file.exists():
            self.records = self.load_records()
        # Kubelet first (it stops its pods), then the controllers, the apiserver, etcd.
        left: list[int] = []
        for record in reversed(self.records):
            left += terminate_groups([record])
        left += self._kill_leftover_pods()
        netns.cleanup(self.state_dir)
        for proc in self._procs:
            proc.poll()
        self._procs = []
        if not left:
            self.pids_file.unlink(missing_ok=True)
        self.records = []
        return left

    def _kill_leftover_pods(self) -> list[int]:
        """Pod processes the kubelet did not stop (only when it died abruptly)."""
        if not self.kubelet_pids_file.exists():
            return []
        try:
            data = json.loads(self.kubelet_pids_file.read_text())
        except (OSError, ValueError):
            return []
        records = [ProcessRecord(name="pod", pid=p["pid"], start=p["start"]) for p in data]
        return terminate_groups(records, timeout=5)

    def started_pids(self) -> list[int]:
        return [r.pid for r in self.records]

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` with admin rights."""
        from kubernetes import config

        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
