"""A process kubelet: runs pods of the project's own image as local processes.

It registers a Node (``process-node``) and keeps it Ready (node Lease + status heartbeat),
binds unscheduled pods to it (there is no scheduler), and for each pod on the node:

* refuses any container image whose repository's last path segment is not
  ``embedding-operator`` (pod Failed, reason ``ImageNotSupported``);
* resolves ``env``/``envFrom`` from Secrets, ConfigMaps and the downward API; a missing
  non-optional Secret/ConfigMap/key leaves the container Waiting with reason
  ``CreateContainerConfigError`` and is retried;
* gets a token of the pod's ServiceAccount (TokenRequest bound to the pod) and hands the
  process a kubeconfig (``KUBECONFIG``) with it, so RBAC applies to the process;
* runs ``command`` + ``args`` (argv[0] ``embedding-operator`` is the console script next to
  this Python) in a process group of its own, output to ``<state>/logs/pods/``;
* reports phase, container states, exit codes and the termination message (the output's
  tail on failure), restarts per ``restartPolicy``, enforces ``activeDeadlineSeconds``;
* kills the process group when the pod is deleted, then removes the pod (grace 0).

Run: ``python -m tests.cluster.kubelet --kubeconfig K --state-dir D``. See
docs/control-plane.md for the limits.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from tests.cluster import netns
from tests.cluster.harness import start_time

log = logging.getLogger("process-kubelet")

SUPPORTED_IMAGE = "embedding-operator"
VENV_BIN = Path(sys.executable).parent
POD_IP = "127.0.0.1"
TERMINATION_MESSAGE_BYTES = 4096
MAX_GRACE_SECONDS = 10.0
SMP = "application/strategic-merge-patch+json"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def image_supported(image: str) -> bool:
    """True when the image repository's last path segment is ``embedding-operator``."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0] == SUPPORTED_IMAGE


class ConfigError(Exception):
    """The container's configuration can't be resolved (CreateContainerConfigError)."""


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined variables are substituted, ``$$`` is ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR_REF.sub(sub, text)


class Kubelet:
    def __init__(self, api_client: Any, state_dir: Path, node_name: str) -> None:
        self.api_client = api_client
        # The client's generated types want model objects; plain dicts are sent here.
        self.core: Any = client.CoreV1Api(api_client)
        self.coordination: Any = client.CoordinationV1Api(api_client)
        self.state_dir = state_dir
        self.node_name = node_name
        self.pod_log_dir = state_dir / "logs" / "pods"
        self.pod_log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = state_dir / "kubelet"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pids_file = state_dir / "kubelet-pods.json"
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.RLock()  # reentrant: shutdown may run inside handle()
        self.stopping = threading.Event()
        self.node_since = now()  # lastTransitionTime of the node's conditions
        cfg = api_client.configuration
        self.server: str = cfg.host
        ca_file = cfg.ssl_ca_cert
        self.ca_data = base64.b64encode(Path(ca_file).read_bytes()).decode() if ca_file else ""

    # -- node ------------------------------------------------------------------------------

    def register_node(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "embedding-operator.dev/process-kubelet": "true",
                },
            },
            "spec": {},
        }
        try:
            self.core.create_node(body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        self.post_node_status()

    def post_node_status(self) -> None:
        ts = now()
        conditions = [
            ("Ready", "True", "KubeletReady", "process kubelet is posting ready status"),
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "no pressure"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "no pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "no pressure"),
        ]
        resources = {"cpu": str(os.cpu_count() or 1), "memory": "8Gi", "pods": "110"}
        status = {
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "message": m,
                    "lastHeartbeatTime": ts,
                    "lastTransitionTime": self.node_since,
                }
                for t, s, r, m in conditions
            ],
            "addresses": [
                {"type": "InternalIP", "address": POD_IP},
                {"type": "Hostname", "address": self.node_name},
            ],
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {
                "kubeletVersion": "v1.37.2-process",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "process://0",
                "kernelVersion": os.uname().release,
                "osImage": "process kubelet",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        }
        self.core.patch_node_status(self.node_name, {"status": status}, _content_type=SMP)

    def renew_lease(self) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": 40,
                "renewTime": micro_now(),
            },
        }
        try:
            self.coordination.patch_namespaced_lease(
                self.node_name, "kube-node-lease", {"spec": body["spec"]}
            )
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", body)

    def heartbeat_loop(self) -> None:
        while not self.stopping.wait(10):
            try:
                self.renew_lease()
                self.post_node_status()
            except Exception:
                log.exception("heartbeat failed")

    # -- pods ------------------------------------------------------------------------------

    def bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self.core.create_namespaced_pod_binding(
                meta["name"], meta["namespace"], body, _preload_content=False
            )
            log.info("bound %s/%s to %s", meta["namespace"], meta["name"], self.node_name)
        except client.ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("binding %s/%s: %s", meta["namespace"], meta["name"], exc.reason)

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.core.delete_namespaced_pod(
                name,
                namespace,
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                grace_period_seconds=0,
            )
        except client.ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("deleting %s/%s: %s", namespace, name, exc.reason)

    def handle(self, event_type: str, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        uid = meta["uid"]
        phase = pod.get("status", {}).get("phase", "Pending")
        with self.lock:
            worker = self.workers.get(uid)
        if event_type == "DELETED":
            if worker:
                worker.request_stop(0, remove=False)
                with self.lock:
                    self.workers.pop(uid, None)
            return
        node = spec.get("nodeName")
        if not node:
            if not meta.get("deletionTimestamp") and spec.get("schedulerName") in (
                None,
                "default-scheduler",
            ):
                self.bind(pod)
            return
        if node != self.node_name:
            return
        if meta.get("deletionTimestamp"):
            grace = meta.get("deletionGracePeriodSeconds")
            if worker and worker.is_alive():
                worker.request_stop(30 if grace is None else grace, remove=True)
            else:
                self.delete_pod(meta["namespace"], meta["name"], uid)
            return
        if worker is None and phase not in ("Succeeded", "Failed"):
            worker = PodWorker(self, pod)
            with self.lock:
                self.workers[uid] = worker
            worker.start()

    def save_pids(self) -> None:
        """Write the live pod processes' pids. Pod threads call this concurrently: the shared
        temporary file is written and renamed under the lock, or one thread's rename would find
        the file another already moved (FileNotFoundError, and a pod thread dead)."""
        with self.lock:
            procs = [
                {"pid": p.pid, "start": s}
                for w in self.workers.values()
                for p, s in w.live_processes()
            ]
            tmp = self.pids_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(procs))
            tmp.replace(self.pids_file)

    def run(self) -> None:
        self.register_node()
        self.renew_lease()
        threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True).start()
        log.info("process kubelet running as node %s", self.node_name)
        while not self.stopping.is_set():
            try:
                pods = self.core.list_pod_for_all_namespaces(_preload_content=False)
                listing = json.loads(pods.data)
                for item in listing["items"]:
                    self.handle("ADDED", item)
                rv = listing["metadata"]["resourceVersion"]
                w: Any = watch.Watch()  # type: ignore[no-untyped-call]
                for event in w.stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout_seconds=30,
                    allow_watch_bookmarks=True,
                ):
                    if self.stopping.is_set():
                        break
                    kind = event["type"]
                    if kind == "BOOKMARK":
                        continue
                    if kind == "ERROR":
                        break
                    self.handle(kind, event["raw_object"])
            except client.ApiException as exc:
                if exc.status != 410:
                    log.warning("watch failed: %s", exc)
                    time.sleep(1)
            except Exception:
                if self.stopping.is_set():
                    break
                log.exception("watch loop error")
                time.sleep(1)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.kill_all(grace=3)
        self.save_pids()


class Container:
    """One container of a pod: its process and its reported state."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.proc_start = 0
        self.log_offset = 0
        self.restart_count = 0
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.done = False  # terminated for good (no restart)
        self.next_start = 0.0
        self.ever_started = False

    def status(self) -> dict[str, Any]:
        running = "running" in self.state
        pid = self.proc.pid if self.proc else 0
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"process://{self.spec.get('image', '')}",
            "containerID": f"process://{pid}" if pid else None,
            "ready": running,
            "started": running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodWorker(threading.Thread):
    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.kubelet = kubelet
        self.core: Any = kubelet.core
        self.pod = pod
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.spec: dict[str, Any] = pod["spec"]
        self.containers = [Container(c) for c in self.spec.get("containers", [])]
        self.stop_requested = threading.Event()
        self.stop_grace = 30.0
        self.remove_after_stop = True
        self.proc_lock = threading.Lock()
        self.workdir = Path(
            tempfile.mkdtemp(prefix=f"{self.namespace}_{self.pod_name}_", dir=kubelet.run_dir)
        )
        self.workdir.chmod(0o700)
        self.kubeconfig: Path | None = None
        self.network = (
            netns.PodNetwork(self.uid, kubelet.state_dir) if netns.wants_namespace(pod) else None
        )
        self.pod_ip = POD_IP
        self.start_time = now()
        self.started_mono = time.monotonic()
        self.last_status: dict[str, Any] = {}

    # -- control from the dispatcher -------------------------------------------------------

    def request_stop(self, grace: float, remove: bool) -> None:
        self.stop_grace = min(float(grace), MAX_GRACE_SECONDS)
        self.remove_after_stop = remove
        self.stop_requested.set()

    def live_processes(self) -> list[tuple[subprocess.Popen[bytes], int]]:
        with self.proc_lock:
            return [
                (c.proc, c.proc_start)
                for c in self.containers
                if c.proc is not None and c.proc.poll() is None
            ]

    def kill_all(self, grace: float) -> None:
        procs = [p for p, _ in self.live_processes()]
        for p in procs:
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.05)
        for p in procs:
            _signal_group(p.pid, signal.SIGKILL)  # the whole group, leader gone or not
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("process %s did not die", p.pid)

    # -- status ----------------------------------------------------------------------------

    def write_status(
        self, phase: str, reason: str | None = None, message: str | None = None
    ) -> bool:
        """Report the pod's status; False when it could not be written (it is retried: the
        next call writes it, since the last written status is remembered only on success)."""
        all_running = bool(self.containers) and all("running" in c.state for c in self.containers)
        ts = now()

        def cond(kind: str, ok: bool) -> dict[str, Any]:
            return {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": ts}

        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "reason": reason,
            "message": message,
            "conditions": [
                cond("PodScheduled", True),
                cond("Initialized", True),
                cond("ContainersReady", all_running),
                cond("Ready", all_running),
            ],
            "containerStatuses": [c.status() for c in self.containers],
        }
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        if comparable == self.last_status:
            return True
        try:
            self.core.patch_namespaced_pod_status(
                self.pod_name, self.namespace, {"status": status}, _content_type=SMP
            )
            self.last_status = comparable
        except client.ApiException as exc:
            if exc.status == 404:
                self.stop_requested.set()
                self.remove_after_stop = False
                return True
            log.warning("status of %s: %s %s", self.name, exc.status, exc.body)
            return False
        except Exception as exc:  # the apiserver is down or restarting: try again later
            log.warning("status of %s not written: %s", self.name, exc)
            return False
        return True

    def write_final(self, phase: str, reason: str, message: str) -> None:
        """A terminal status, retried until the apiserver takes it (or the pod is deleted)."""
        while not self.write_status(phase, reason, message) and not self.stop_requested.wait(1.0):
            pass

    # -- environment -----------------------------------------------------------------------

    def _read(self, kind: str, name: str) -> dict[str, str] | None:
        try:
            if kind == "Secret":
                obj = self.core.read_namespaced_secret(name, self.namespace)
                return {k: base64.b64decode(v).decode() for k, v in (obj.data or {}).items()}
            cm = self.core.read_namespaced_config_map(name, self.namespace)
            return dict(cm.data or {})
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _key_ref(self, kind: str, ref: dict[str, Any]) -> str | None:
        data = self._read(kind, ref["name"])
        optional = bool(ref.get("optional"))
        if data is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        if ref["key"] not in data:
            if optional:
                return None
            raise ConfigError(
                f"couldn't find key {ref['key']} in {kind} {self.namespace}/{ref['name']}"
            )
        return data[ref["key"]]

    def _field(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.spec
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": self.kubelet.node_name,
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.podIP": self.pod_ip,
            "status.hostIP": POD_IP,
        }
        if path in simple:
            return str(simple[path])
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        raise ConfigError(f"unsupported fieldPath {path!r}")

    def resolve_env(self, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = source.get(key)
                if not ref:
                    continue
                data = self._read(kind, ref["name"])
                if data is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
                for k, v in data.items():
                    env[prefix + k] = v
        for item in container.get("env") or []:
            name = item["name"]
            if "valueFrom" not in item:
                env[name] = expand(item.get("value", ""), env)
                continue
            vf = item["valueFrom"]
            value: str | None
            if "secretKeyRef" in vf:
                value = self._key_ref("Secret", vf["secretKeyRef"])
            elif "configMapKeyRef" in vf:
                value = self._key_ref("ConfigMap", vf["configMapKeyRef"])
            elif "fieldRef" in vf:
                value = self._field(vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                value = "0"
            else:
                raise ConfigError(f"unsupported valueFrom for {name}")
            if value is not None:
                env[name] = value
        return env

    def ensure_kubeconfig(self) -> Path:
        if self.kubeconfig is not None:
            return self.kubeconfig
        sa = self.spec.get("serviceAccountName") or "default"
        user: dict[str, str] = {}
        if self.spec.get("automountServiceAccountToken", True):
            try:
                tr = self.core.create_namespaced_service_account_token(
                    sa,
                    self.namespace,
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenRequest",
                        "spec": {
                            "expirationSeconds": 86400,
                            "boundObjectRef": {
                                "apiVersion": "v1",
                                "kind": "Pod",
                                "name": self.pod_name,
                                "uid": self.uid,
                            },
                        },
                    },
                )
            except client.ApiException as exc:
                raise ConfigError(f"token for serviceaccount {sa!r}: {exc.status} {exc.reason}")
            user = {"token": tr.status.token}
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "cluster",
                    "cluster": {
                        "server": self.kubelet.server,
                        "certificate-authority-data": self.kubelet.ca_data,
                    },
                }
            ],
            "users": [{"name": f"system:serviceaccount:{self.namespace}:{sa}", "user": user}],
            "contexts": [
                {
                    "name": "pod",
                    "context": {
                        "cluster": "cluster",
                        "user": f"system:serviceaccount:{self.namespace}:{sa}",
                        "namespace": self.namespace,
                    },
                }
            ],
            "current-context": "pod",
        }
        path = self.workdir / "kubeconfig"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f)
        self.kubeconfig = path
        return path

    # -- processes -------------------------------------------------------------------------

    def start_container(self, c: Container) -> None:
        try:
            pod_env = self.resolve_env(c.spec)
            kubeconfig = self.ensure_kubeconfig()
        except ConfigError as exc:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            c.next_start = time.monotonic() + 2
            return
        env = {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.workdir),
            "LANG": "C.UTF-8",
            "HOSTNAME": self.pod_name,
            "PYTHONUNBUFFERED": "1",
        }
        env.update(pod_env)
        env["KUBECONFIG"] = str(kubeconfig)
        command = [expand(a, env) for a in c.spec.get("command") or [SUPPORTED_IMAGE]]
        args = [expand(a, env) for a in c.spec.get("args") or []]
        argv = command + args
        exe = argv[0]
        if "/" not in exe:
            found = shutil.which(exe, path=env["PATH"])
            if found:
                exe = found
        if self.network is not None:
            argv = self.network.command([exe, *argv[1:]])
            exe = argv[0]
        workdir = c.spec.get("workingDir")
        cwd = workdir if workdir and os.path.isdir(workdir) else str(self.workdir)
        log_path = self.kubelet.pod_log_dir / f"{self.namespace}_{self.pod_name}_{c.name}.log"
        with open(log_path, "ab") as out:
            c.log_offset = out.tell()
            try:
                with self.proc_lock:
                    c.proc = subprocess.Popen(
                        [exe, *argv[1:]],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=cwd,
                        start_new_session=True,
                    )
                    c.proc_start = start_time(c.proc.pid)
            except OSError as exc:
                c.proc = None
                msg = f"failed to start {argv[0]!r}: {exc}"
                out.write(f"{msg}\n".encode())
                self.container_exited(c, 128, "StartError", msg)
                return
        self.kubelet.save_pids()
        c.ever_started = True
        c.state = {"running": {"startedAt": now()}}
        log.info("%s: started %s (pid %s)", self.name, argv, c.proc.pid)

    def tail(self, c: Container) -> str:
        path = self.kubelet.pod_log_dir / f"{self.namespace}_{self.pod_name}_{c.name}.log"
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(c.log_offset, size - TERMINATION_MESSAGE_BYTES))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def container_exited(self, c: Container, code: int, reason: str, message: str = "") -> None:
        started = c.state.get("running", {}).get("startedAt", now())
        term: dict[str, Any] = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now(),
        }
        if message:
            term["message"] = message
        if c.proc is not None:
            term["containerID"] = f"process://{c.proc.pid}"
        c.state = {"terminated": term}
        policy = self.spec.get("restartPolicy", "Always")
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            c.last_state = {"terminated": term}
            backoff = min(30.0, 2.0**c.restart_count)
            c.restart_count += 1
            c.next_start = time.monotonic() + backoff
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff:.0f}s restarting failed container",
                }
            }
        else:
            c.done = True
        self.kubelet.save_pids()

    def poll_containers(self) -> None:
        for c in self.containers:
            if c.proc is not None and "running" in c.state:
                code = c.proc.poll()
                if code is not None:
                    if code < 0:  # killed by a signal: report like a shell does
                        code = 128 - code
                    msg = self.tail(c) if code != 0 else ""
                    self.container_exited(c, code, "Completed" if code == 0 else "Error", msg)
            elif not c.done and "running" not in c.state and time.monotonic() >= c.next_start:
                self.start_container(c)

    def phase(self) -> str:
        if all(c.done for c in self.containers):
            ok = all(c.state["terminated"]["exitCode"] == 0 for c in self.containers)
            return "Succeeded" if ok else "Failed"
        if any(c.ever_started for c in self.containers):
            return "Running"
        return "Pending"

    # -- main ------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("%s: worker failed", self.name)
            self.kill_all(grace=1)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self.network is not None:
                self.network.delete()
            self.kubelet.save_pids()

    def _run(self) -> None:
        bad = [
            c.get("image", "")
            for c in self.spec.get("initContainers", []) + self.spec.get("containers", [])
            if not image_supported(c.get("image", ""))
        ]
        if bad:
            msg = (
                f"image {bad[0]!r} is not supported by the process kubelet: only images "
                f"whose repository's last path segment is {SUPPORTED_IMAGE!r} "
                f"(e.g. {SUPPORTED_IMAGE}:dev) are run, as local processes"
            )
            for c in self.containers:
                c.state = {"waiting": {"reason": "ImageNotSupported", "message": msg}}
            self.write_final("Failed", "ImageNotSupported", msg)
            return
        if self.spec.get("initContainers"):
            msg = "init containers are not supported by the process kubelet"
            self.write_final("Failed", "InitContainersNotSupported", msg)
            return
        deadline_s = self.spec.get("activeDeadlineSeconds")
        if self.network is not None:
            try:
                self.network.create()
                self.network.relay(int(self.kubelet.server.rsplit(":", 1)[1]))
            except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                self.write_status("Failed", "NetworkNotReady", f"pod network: {exc}")
                return
            self.pod_ip = self.network.address
        self.write_status("Pending")
        while True:
            if self.stop_requested.is_set():
                self.stop_for_deletion()
                return
            if deadline_s is not None and time.monotonic() - self.started_mono > deadline_s:
                self.kill_all(grace=min(MAX_GRACE_SECONDS, 5))
                self.poll_containers_final(137, "DeadlineExceeded")
                self.write_final(
                    "Failed",
                    "DeadlineExceeded",
                    f"Pod was active on the node longer than the specified deadline "
                    f"({deadline_s}s)",
                )
                return
            self.poll_containers()
            phase = self.phase()
            written = self.write_status(phase)
            if phase in ("Succeeded", "Failed") and written:
                log.info("%s: %s", self.name, phase)
                return
            self.stop_requested.wait(0.2 if written else 1.0)

    def poll_containers_final(self, default_code: int, reason: str) -> None:
        """After a kill: every container is terminated for good."""
        for c in self.containers:
            if c.proc is not None and "running" in c.state:
                code = c.proc.poll()
                code = default_code if code is None or code < 0 else code
                c.state = {
                    "terminated": {
                        "exitCode": code,
                        "reason": reason,
                        "startedAt": c.state["running"]["startedAt"],
                        "finishedAt": now(),
                        "containerID": f"process://{c.proc.pid}",
                    }
                }
            elif "terminated" not in c.state:
                c.state = {"terminated": {"exitCode": default_code, "reason": reason}}
            c.done = True

    def stop_for_deletion(self) -> None:
        self.kill_all(self.stop_grace)
        if not self.remove_after_stop:
            return
        already_terminal = self.phase() in ("Succeeded", "Failed")
        if not already_terminal:
            self.poll_containers_final(137, "Error")
            self.write_status("Failed", "Terminated", "pod deleted; its processes were killed")
        self.kubelet.delete_pod(self.namespace, self.pod_name, self.uid)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.kubelet")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--node-name", default="process-node")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s"
    )
    cfg = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=args.kubeconfig, client_configuration=cfg
    )
    cfg.connection_pool_maxsize = 32
    kubelet = Kubelet(client.ApiClient(cfg), args.state_dir, args.node_name)

    def on_signal(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        kubelet.run()
    except SystemExit:
        pass
    finally:
        log.info("stopping: killing pod processes")
        kubelet.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
