"""Smoke tests of the image built from the project's Dockerfile, run with runc as user 65532 on
a read-only root filesystem (tests/image/runner.py). Skipped only when NO_IMAGE=1 disables the
build explicitly."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from embedding_operator import __version__
from tests.image import runner

# Also `cluster`: the fast tier (`-m "not cluster"`) stays free of the slow image build.
pytestmark = [pytest.mark.image, pytest.mark.cluster]


@pytest.fixture(scope="module")
def image() -> Iterator[runner.Image]:
    if runner.disabled():
        pytest.skip(f"{runner.DISABLE_ENV}=1: the image build was disabled explicitly")
    yield runner.build()


def python(image: runner.Image, code: str) -> subprocess.CompletedProcess[str]:
    return image.run(["-c", code], entrypoint=["python"])


def test_help_lists_the_commands(image: runner.Image) -> None:
    result = image.run(["--help"])
    assert result.returncode == 0, result.stderr
    for command in ("run", "worker", "embed", "crd"):
        assert command in result.stdout


def test_version_is_the_package_version(image: runner.Image) -> None:
    result = image.run(["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["embedding-operator", __version__]


def test_runs_as_65532_on_a_read_only_root(image: runner.Image) -> None:
    assert image.config["User"] == "65532:65532"
    result = python(
        image,
        "import getpass, os\n"
        "print(os.getuid(), os.getgid(), getpass.getuser())\n"
        "for path in ('/x', '/opt/venv/x', '/tmp/x'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except OSError as exc:\n"
        "        print(path, exc.errno)\n",
    )
    assert result.returncode == 0, result.stderr
    ids, *refused = result.stdout.splitlines()
    # getuser(): kopf names its peering id with it, and raises for a uid without a name.
    assert ids == "65532 65532 nonroot"
    # EROFS (30) everywhere, /tmp included: the pods mount an emptyDir there.
    assert refused == ["/x 30", "/opt/venv/x 30", "/tmp/x 30"]


def test_every_module_imports_after_the_trim(image: runner.Image) -> None:
    """The Dockerfile removes distributions the code never imports; every module of the package
    (and voyageai, which imports pillow, huggingface-hub and langchain at import time) must
    still import, and the removed ones must be gone."""
    result = python(
        image,
        "import importlib, importlib.metadata as md, pkgutil, embedding_operator, voyageai\n"
        "for m in pkgutil.walk_packages(embedding_operator.__path__, 'embedding_operator.'):\n"
        "    if not m.name.endswith('__main__'):  # __main__ runs the command\n"
        "        importlib.import_module(m.name)\n"
        "gone = []\n"
        "for dist in ('tokenizers', 'hf-xet', 'langsmith', 'zstandard', 'pip', 'setuptools'):\n"
        "    try:\n"
        "        md.version(dist)\n"
        "    except md.PackageNotFoundError:\n"
        "        gone.append(dist)\n"
        "print(' '.join(gone))\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "tokenizers",
        "hf-xet",
        "langsmith",
        "zstandard",
        "pip",
        "setuptools",
    ]


def test_oci_labels(image: runner.Image) -> None:
    labels = image.config["Labels"]
    assert labels["org.opencontainers.image.source"].startswith("https://github.com/")
    assert labels["org.opencontainers.image.version"] == __version__
    revision = labels["org.opencontainers.image.revision"]
    assert (
        subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], check=False).returncode
        == 0
    )
