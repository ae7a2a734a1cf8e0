"""``embedding-operator embed`` against the stand-in, local file sinks, and the stand-in's own
command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedding_operator.cli import main
from embedding_operator.storage import JsonFileSink, NpyFileSink, ResultLayout, open_file_sink
from embedding_operator.voyage.engine import Progress
from embedding_operator.voyage.progress import render
from tests.unit.conftest import API_KEY
from tests.voyage_standin import StandIn, expected_matrix

REPO = Path(__file__).resolve().parents[2]
INPUTS = [f"sentence number {i}" for i in range(300)]


def manifest(tmp_path: Path, dtype: str = "float", extra: str = "") -> Path:
    path = tmp_path / "embedding.yaml"
    lines = "\n".join(f"    - {json.dumps(t)}" for t in INPUTS)
    path.write_text(
        f"""apiVersion: v1
kind: Secret
metadata: {{name: voyage-api-key}}
stringData: {{api-key: not-used-by-embed}}
---
apiVersion: embedding-operator.dev/v1alpha1
kind: DeploymentEmbedding
metadata:
  name: trial
spec:
  model: voyage-3.5-lite
  outputDimension: 512
  outputDtype: {dtype}
  inputs:
{lines}
{extra}"""
    )
    return path


@pytest.fixture
def env(standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    monkeypatch.setenv("VOYAGE_API_KEY", API_KEY)
    monkeypatch.setenv("VOYAGE_BASE_URL", standin.base_url)
    monkeypatch.setenv("VOYAGE_TIMEOUT_SECONDS", "5")
    return standin


def test_embed_to_npy(env: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.npy"
    assert main(["embed", "-f", str(manifest(tmp_path)), "-o", str(out)]) == 0
    expected = expected_matrix(INPUTS, "voyage-3.5-lite", 512)
    assert np.array_equal(np.load(out), expected)
    printed = capsys.readouterr()
    assert "embedded 300 inputs with voyage-3.5-lite (512 dims, float)" in printed.out
    assert f"{env.stats.tokens:,} tokens" in printed.out
    assert printed.err == ""  # no progress bar when stderr is not a terminal


def test_embed_to_json_has_the_status_result_shape(
    env: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    assert main(["embed", "-f", str(manifest(tmp_path, "int8")), "-o", str(out), "--progress"]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "voyage-3.5-lite" and result["count"] == 300
    assert result["dimensions"] == 512 and result["dtype"] == "int8"
    assert result["totalTokens"] == env.stats.tokens
    expected = expected_matrix(INPUTS, "voyage-3.5-lite", 512, "int8")
    assert np.array_equal(np.asarray(result["embeddings"]), expected)
    assert "300/300 inputs" in capsys.readouterr().err


def test_embed_with_a_wrong_key_fails_without_showing_it(
    env: StandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = "pa-not-the-right-key-987654321"
    monkeypatch.setenv("VOYAGE_API_KEY", wrong)
    out = tmp_path / "result.npy"
    assert main(["embed", "-f", str(manifest(tmp_path)), "-o", str(out)]) == 1
    printed = capsys.readouterr()
    assert "Provided API key is invalid." in printed.err and "401" in printed.err
    assert wrong not in printed.out + printed.err
    assert env.stats.requests == 1
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_embed_usage_errors(
    env: StandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = manifest(tmp_path)
    assert main(["embed", "-f", str(path), "-o", str(tmp_path / "x.csv")]) == 2
    assert "must end in .npy or .json" in capsys.readouterr().err
    assert main(["embed", "-f", str(path), "--name", "other"]) == 2
    assert "no DeploymentEmbedding named 'other'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("outputDimension: 512", "outputDimension: 4096"))
    assert main(["embed", "-f", str(bad)]) == 2
    assert "outputDimension" in capsys.readouterr().err
    monkeypatch.delenv("VOYAGE_API_KEY")
    assert main(["embed", "-f", str(path)]) == 2
    assert "VOYAGE_API_KEY" in capsys.readouterr().err
    assert env.stats.requests == 0


def test_embed_as_a_command(env: StandIn, tmp_path: Path) -> None:
    out = tmp_path / "result.npy"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedding_operator",
            "embed",
            "-f",
            str(manifest(tmp_path)),
            "-o",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("embedded 300 inputs")
    assert np.load(out).shape == (300, 512)


def test_file_sinks_by_suffix_and_abort(tmp_path: Path) -> None:
    layout = ResultLayout("voyage-3.5", 2, 256)
    npy = open_file_sink(tmp_path / "a.npy", layout)
    assert isinstance(npy, NpyFileSink)
    npy.abort()
    sink = open_file_sink(tmp_path / "a.json", layout)
    assert isinstance(sink, JsonFileSink)
    sink.write(0, np.zeros((1, 256), dtype=np.float32))
    assert list(tmp_path.iterdir()) == [tmp_path / "a.json.partial"]
    sink.abort()
    assert list(tmp_path.iterdir()) == []  # an aborted run leaves nothing, half-written or not


def test_progress_line() -> None:
    line = render(Progress(done=250, total=1000, tokens=12345, requests=3, elapsed=2.5), width=10)
    assert line.startswith("[##--------]  25%  250/1000 inputs  12,345 tokens  2.5 s")


def test_standin_command_line(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.voyage_standin",
            "--port",
            "0",
            "--api-key",
            "k",
            "--rpm",
            "5",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("voyage stand-in listening on http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1].strip()
        import urllib.request

        request = urllib.request.Request(
            base_url + "/embeddings",
            data=json.dumps({"input": ["hi"], "model": "voyage-3.5"}).encode(),
            headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
        assert body["usage"]["total_tokens"] == 1 and len(body["data"][0]["embedding"]) == 1024
    finally:
        process.terminate()
        process.wait(timeout=10)
