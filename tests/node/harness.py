"""A real node beside the test control plane: kubelet and kube-scheduler (k8s.io/kubernetes
v1.37.2, as the control plane), containerd v2 with Debian's runc, the CNI bridge of Debian's
containernetworking-plugins, and the project's image imported into containerd from the buildah
build. See docs/control-plane.md ("The real node").

Isolation, so that nothing outlives ``stop()``:

- **network**: containerd (so the CNI bridge and every pod's veth) runs in a network namespace
  of our own, ``eo-<id>``; nothing gets an address outside it. Pods reach the apiserver at the
  ``kubernetes`` Service's cluster IP and the Voyage stand-in at the bridge's address through
  ``tests/node/forward.py``, which listens inside that namespace and connects to 127.0.0.1 of
  the host (what kube-proxy's DNAT does for the one Service the pods use).
- **processes**: containerd starts in the cgroup ``eo-<id>/runtime`` of the ``pids`` hierarchy,
  its shims with it, and the kubelet puts the pods under ``eo-<id>`` (``cgroupRoot``); stop kills
  the whole ``eo-<id>`` subtree and removes the cgroups.
- **mounts**: containerd runs in a mount namespace of its own (``unshare --mount``), so container
  root filesystems, pod network namespaces and shm mounts vanish with it; the state directory
  is a shared bind mount, so the kubelet's volume mounts reach the containers; stop unmounts
  everything under it.
- **sysctls**: the kubelet sets vm.overcommit_memory, vm.panic_on_oom, kernel.panic and
  kernel.panic_on_oops at start-up; stop puts back the values it found.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.harness import (
    REPO_ROOT,
    SERVICE_CIDR,
    Cluster,
    ClusterError,
    free_port,
    terminate_groups,
)
from tests.image import runner

NODE_BIN_DIR = REPO_ROOT / ".cache" / "node-bin"
BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"
NODE_NAME = "real-node"
CGROUP_FS = Path("/sys/fs/cgroup")
API_SERVICE_IP = SERVICE_CIDR.rsplit(".", 1)[0] + ".1"  # the `kubernetes` Service's cluster IP
POD_SUBNET = "10.244.0.0/24"
BRIDGE = "eo0"
BRIDGE_IP = "10.244.0.1"  # the bridge, in the node's network namespace: the pods' gateway
PAUSE_IMAGE = "localhost/pause:embedding-operator-test"
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
)


def ensure_node_binaries(bin_dir: Path = NODE_BIN_DIR) -> None:
    """Build kubelet, kube-scheduler, containerd, its shim, ctr and pause (a no-op when up to
    date)."""
    env = dict(os.environ, NODE_BIN_DIR=str(bin_dir))
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, env=env)


def ensure_pause_image(bin_dir: Path = NODE_BIN_DIR) -> Path:
    """The pod sandbox image (``pause`` on an empty root), as an OCI archive for containerd."""
    archive = runner.ARCHIVE.parent / "pause.oci.tar"
    stamp = archive.with_suffix(".stamp")
    digest = subprocess.run(
        ["sha256sum", str(bin_dir / "pause")], check=True, capture_output=True, text=True
    ).stdout.split()[0]
    if archive.exists() and stamp.exists() and stamp.read_text() == digest:
        return archive
    ctr = runner.buildah("from", "scratch")
    try:
        runner.buildah("copy", "--chmod", "0755", ctr, str(bin_dir / "pause"), "/pause")
        runner.buildah("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", ctr)
        runner.buildah("commit", "--quiet", ctr, PAUSE_IMAGE)
    finally:
        runner.buildah("rm", ctr)
    archive.unlink(missing_ok=True)
    runner.buildah("push", "--quiet", PAUSE_IMAGE, f"oci-archive:{archive}:{PAUSE_IMAGE}")
    stamp.write_text(digest)
    return archive


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _cgroup_hierarchies() -> list[Path]:
    """The cgroup v1 hierarchies (and the v2 one beside them on this hybrid layout)."""
    return sorted(p for p in CGROUP_FS.iterdir() if p.is_dir() and not p.is_symlink())


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in our mount namespace, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(path) or point.startswith(f"{path}/"):
            points.append(point)
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


@dataclass
class RealNodeCluster(Cluster):
    """The control plane of ``tests.cluster`` without the process kubelet, plus a real node."""

    with_kubelet: bool = False
    node_name: str = NODE_NAME
    node_bin_dir: Path = NODE_BIN_DIR
    image: str = ""
    node_id: str = field(default_factory=lambda: f"eo-{uuid.uuid4().hex[:8]}")
    forwards: dict[int, int] = field(default_factory=dict)  # bridge port -> host loopback port
    sysctls: dict[str, str] = field(default_factory=dict)

    @property
    def node_file(self) -> Path:
        return self.state_dir / "node.json"

    @property
    def netns(self) -> str:
        return self.node_id

    @property
    def containerd_socket(self) -> Path:
        return self.state_dir / "containerd" / "containerd.sock"

    def ctr(self, *args: str) -> str:
        ctr = str(self.node_bin_dir / "ctr")
        return _run(ctr, "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args)

    def bridge_url(self, host_port: int) -> str:
        """The URL at which pods reach 127.0.0.1:``host_port`` of this machine (only ports
        given to ``forwards`` before start)."""
        return f"http://{BRIDGE_IP}:{host_port}"

    # -- lifecycle -------------------------------------------------------------------------

    def _start(self, t0: float, timeout: float) -> None:
        super()._start(t0, timeout)
        deadline = t0 + timeout + 120  # the image import and the kubelet's start-up
        self.sysctls = {k: Path("/proc/sys", k).read_text().strip() for k in KUBELET_SYSCTLS}
        self.node_file.write_text(json.dumps({"id": self.node_id, "sysctls": self.sysctls}))
        _run("ip", "netns", "add", self.netns)
        _run("ip", "-n", self.netns, "link", "set", "lo", "up")
        _run("ip", "-n", self.netns, "addr", "add", f"{API_SERVICE_IP}/32", "dev", "lo")
        # The bridge now (the CNI plugin adopts it), so the forwarder can listen on its address.
        _run("ip", "-n", self.netns, "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "-n", self.netns, "addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE)
        _run("ip", "-n", self.netns, "link", "set", BRIDGE, "up")
        # The kubelet (in this namespace) takes the node's address from the default route.
        _run("ip", "-n", self.netns, "route", "add", "default", "dev", BRIDGE)
        for hierarchy in _cgroup_hierarchies():
            (hierarchy / self.node_id).mkdir()
        runtime_cgroup = CGROUP_FS / "pids" / self.node_id / "runtime"
        runtime_cgroup.mkdir()
        # Kubelet volume mounts made under the state dir must reach containerd's namespace.
        _run("mount", "--bind", str(self.state_dir), str(self.state_dir))
        _run("mount", "--make-rshared", str(self.state_dir))

        containerd_conf = self._write_containerd_config()
        env = {"PATH": f"{self.node_bin_dir}:{os.environ['PATH']}"}
        self._spawn(
            "containerd",
            [
                "sh",
                "-c",
                # Own mount namespace (mounts propagate in, never out); not `ip netns exec`,
                # which remounts /sys and so hides the cgroup mounts runc needs.
                'echo $$ > "$0/cgroup.procs" && exec nsenter --net="$1" '
                'unshare --mount --propagation slave "$2" --config="$3"',
                str(runtime_cgroup),
                f"/run/netns/{self.netns}",
                str(self.node_bin_dir / "containerd"),
                str(containerd_conf),
            ],
            extra_env=env,
        )
        while not self.containerd_socket.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise ClusterError("containerd did not open its socket")
            time.sleep(0.2)
        t = time.monotonic()
        for archive in (ensure_pause_image(self.node_bin_dir), runner.ARCHIVE):
            self.ctr("images", "import", "--no-unpack=false", str(archive))
        self.timings["image-import"] = time.monotonic() - t

        self._spawn(
            "forward",
            [
                sys.executable,
                "-m",
                "tests.node.forward",
                f"--netns=/run/netns/{self.netns}",
                f"{API_SERVICE_IP}:443={self.server.rsplit(':', 1)[1]}",
                *(f"{BRIDGE_IP}:{port}={port}" for port in self.forwards),
            ],
            cwd=REPO_ROOT,
        )
        kubelet_conf = self._write_kubelet_config()
        # The kubelet runs in the node's network namespace too, so its probes reach the pods'
        # addresses; it reaches the apiserver through the forwarder, as the pods do.
        kubeconfig = json.loads(self.kubeconfig.read_text())
        kubeconfig["clusters"][0]["cluster"]["server"] = f"https://{API_SERVICE_IP}:443"
        node_kubeconfig = self.state_dir / "kubelet.kubeconfig"
        node_kubeconfig.write_text(json.dumps(kubeconfig))
        node_kubeconfig.chmod(0o600)
        self._spawn(
            "kubelet",
            [
                "nsenter",
                f"--net=/run/netns/{self.netns}",
                str(self.node_bin_dir / "kubelet"),
                f"--config={kubelet_conf}",
                f"--kubeconfig={node_kubeconfig}",
                f"--root-dir={self.state_dir / 'kubelet'}",
                f"--cert-dir={self.state_dir / 'kubelet' / 'pki'}",
                f"--hostname-override={self.node_name}",
                "--v=1",
            ],
            extra_env=env,
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.node_bin_dir / "kube-scheduler"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        self.with_kubelet = True  # now wait for the node as the process kubelet's start does
        try:
            self._wait_controllers(deadline)
        finally:
            self.with_kubelet = False
        self.timings["node-ready"] = time.monotonic() - t0

    def _write_containerd_config(self) -> Path:
        base = self.state_dir / "containerd"
        cni = base / "net.d"
        cni.mkdir(parents=True)
        (cni / "10-bridge.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "eo-pods",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(base / "ipam"),
                                "ranges": [[{"subnet": POD_SUBNET, "gateway": BRIDGE_IP}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        },
                        {"type": "loopback"},
                    ],
                }
            )
        )
        conf = base / "config.toml"
        conf.write_text(
            f"""version = 3
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.nri.v1.nri",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "{base / "opt"}"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"
[plugins.'io.containerd.cri.v1.runtime']
  # The VM withholds CAP_SYS_RESOURCE: no oom_score_adj below containerd's own (the sandbox
  # asks for -998, and runc's init dies: "can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  # Pod network namespaces under the state dir, not /run/netns (whose files would outlive
  # containerd's private mount namespace).
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{cni}"
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        )
        return conf

    def _write_kubelet_config(self) -> Path:
        conf = self.state_dir / "kubelet.yaml"
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This VM has cgroup v1 (with an empty v2 hierarchy beside it); kubelet 1.35+
            # refuses v1 unless told, and there is no systemd to drive cgroups.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.node_id}",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": "127.0.0.1",
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            # The apiserver reaches the kubelet (logs) without a client certificate here.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": str(self.state_dir / "pod-logs"),
            "failSwapOn": False,
            # Never evict or garbage-collect the imported images on a busy shared disk.
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "registerNode": True,
            "serializeImagePulls": False,
        }
        conf.write_text(json.dumps(config))
        return conf

    def stop(self) -> list[int]:
        if self.node_file.exists():
            data = json.loads(self.node_file.read_text())
            self.node_id, self.sysctls = data["id"], data["sysctls"]
        if not self.records and self.pids_file.exists():
            self.records = self.load_records()
        node = [r for r in self.records if r.name in ("kubelet", "kube-scheduler", "forward")]
        left = terminate_groups(node)
        left += self._kill_cgroup_tree()
        left += super().stop()
        for point in _mounts_under(self.state_dir):
            subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
        self._remove_cgroups()
        if Path("/run/netns", self.netns).exists():
            subprocess.run(["ip", "netns", "delete", self.netns], check=False)
        for key, value in self.sysctls.items():
            with contextlib.suppress(OSError):
                Path("/proc/sys", key).write_text(value)
        if not left:
            self.node_file.unlink(missing_ok=True)
        return left

    def _kill_cgroup_tree(self, timeout: float = 15) -> list[int]:
        """SIGKILL every process under ``eo-<id>`` (containerd, shims, containers) until none
        is left; returns those still alive after ``timeout``."""
        top = CGROUP_FS / "pids" / self.node_id
        deadline = time.monotonic() + timeout
        while True:
            pids = {
                int(p)
                for procs in (top.rglob("cgroup.procs") if top.exists() else [])
                for p in procs.read_text().split()
            }
            if not pids or time.monotonic() > deadline:
                return sorted(pids)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def _remove_cgroups(self) -> None:
        for hierarchy in _cgroup_hierarchies():
            top = hierarchy / self.node_id
            if not top.exists():
                continue
            for d in sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()

    def leftovers(self) -> list[str]:
        """What of this node is still there (must be nothing after stop)."""
        found = [f"mount {m}" for m in _mounts_under(self.state_dir)]
        found += [
            f"cgroup {h / self.node_id}"
            for h in _cgroup_hierarchies()
            if (h / self.node_id).exists()
        ]
        if Path("/run/netns", self.netns).exists():
            found.append(f"netns {self.netns}")
        return found
