"""The project's image, built by ``tests/image/build.sh`` and run with runc as a container runtime
runs it: its own root filesystem (read-only), the image's user, no capabilities, fresh
namespaces. buildah and runc are Debian's (``make host-packages``); the container storage is the
project's own, under ``.cache/containers/``. See docs/control-plane.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STORE = REPO_ROOT / ".cache" / "containers"
ARCHIVE = REPO_ROOT / ".cache" / "image" / "embedding-operator.oci.tar"
# The one switch that turns the image build (and so the image and real-node tests) off; they
# are then reported as skipped with this name, never skipped silently.
DISABLE_ENV = "NO_IMAGE"


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


def buildah(*args: str) -> str:
    argv = ["buildah", "--root", f"{STORE}/storage", "--runroot", f"{STORE}/run"]
    argv += ["--storage-driver", "overlay", *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def build() -> Image:
    """Build the image (a no-op when nothing it copies changed); returns it."""
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Image(out.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Image:
    name: str

    def inspect(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", self.name))
        return data

    @property
    def config(self) -> dict[str, Any]:
        """The image's OCI config (User, Env, Entrypoint, Cmd, Labels, ...)."""
        cfg: dict[str, Any] = self.inspect()["OCIv1"]["config"]
        return cfg

    @contextlib.contextmanager
    def rootfs(self) -> Iterator[Path]:
        """The image's filesystem, mounted from a working container removed afterwards."""
        ctr = buildah("from", "--pull=never", self.name)
        try:
            yield Path(buildah("mount", ctr))
        finally:
            buildah("umount", ctr)
            buildah("rm", ctr)

    def run(
        self, args: list[str], entrypoint: list[str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the image once with runc: the image's user, entrypoint (unless given), env and
        working directory; the root filesystem read-only, no capabilities, no new privileges,
        no network but loopback."""
        cfg = self.config
        uid, _, gid = cfg.get("User", "0").partition(":")
        with self.rootfs() as rootfs, tempfile.TemporaryDirectory() as bundle:
            subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
            spec_path = Path(bundle) / "config.json"
            spec = json.loads(spec_path.read_text())
            spec["root"] = {"path": str(rootfs), "readonly": True}
            spec["process"].update(
                args=(entrypoint if entrypoint is not None else cfg.get("Entrypoint", [])) + args,
                env=cfg.get("Env", []),
                cwd=cfg.get("WorkingDir") or "/",
                user={"uid": int(uid), "gid": int(gid or uid)},
                terminal=False,
                noNewPrivileges=True,
                capabilities={},
            )
            spec_path.write_text(json.dumps(spec))
            name = f"eo-smoke-{uuid.uuid4().hex[:8]}"
            try:
                return subprocess.run(
                    ["runc", "run", "--bundle", bundle, name],
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            finally:
                subprocess.run(
                    ["runc", "delete", "--force", name], check=False, capture_output=True
                )
