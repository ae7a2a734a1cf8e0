"""Chunking, digests, deterministic names, reassembly and tamper detection; the ConfigMap sink
against a recording stand-in for CoreV1Api (the real API is exercised by the cluster tests)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np
import pytest

from embedding_operator.api.types import ChunkedStorage
from embedding_operator.storage import (
    Chunker,
    DigestMismatchError,
    ResultLayout,
    ResultTooLargeError,
    StorageSettings,
    chunk_name,
    digest_of,
    reassemble,
    result_array,
)
from embedding_operator.storage.configmaps import ConfigMapSink, read_chunks
from tests.voyage_standin import expected_matrix


def test_chunker_cuts_exact_sizes_and_digests_the_stream() -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    chunker = Chunker(1000)
    chunks: list[bytes] = []
    for start in range(0, len(data), 333):  # writes that straddle chunk borders
        chunks += chunker.feed(data[start : start + 333])
    chunks += chunker.close()
    assert [len(c) for c in chunks] == [1000] * 10 + [240]
    assert b"".join(chunks) == data
    assert chunker.digest == "sha256:" + hashlib.sha256(data).hexdigest() == digest_of(data)
    assert chunker.total == len(data)


def test_chunk_names_are_deterministic_and_valid() -> None:
    name = chunk_name("a" * 63, "run-2026-11-28T12:00:00Z", 7)
    assert name == chunk_name("a" * 63, "run-2026-11-28T12:00:00Z", 7)
    assert name != chunk_name("a" * 63, "another-run", 7)
    assert name.endswith("-007") and len(name) <= 253
    assert all(c.isalnum() or c == "-" for c in name) and name == name.lower()


def _storage(data: bytes, encoding: str = "float32-le") -> ChunkedStorage:
    return ChunkedStorage(names=["x"], encoding=encoding, digest=digest_of(data), size=len(data))


def test_reassembly_round_trips_and_detects_tampering() -> None:
    array = expected_matrix([f"t{i}" for i in range(9)], "voyage-3.5", 256)
    data = array.astype("<f4").tobytes()
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    assert np.array_equal(reassemble(chunks, _storage(data), 9, 256), array)
    flipped = bytearray(data)
    flipped[5] ^= 1
    with pytest.raises(DigestMismatchError, match="sha256"):
        reassemble([bytes(flipped)], _storage(data), 9, 256)
    with pytest.raises(DigestMismatchError, match="bytes"):
        reassemble(chunks[:-1], _storage(data), 9, 256)
    with pytest.raises(DigestMismatchError, match="cannot hold"):
        reassemble(chunks, _storage(data), 10, 256)


class FakeKube:
    """Records ConfigMap calls as embedding_operator.kube.Kube would receive them."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        assert path == "/api/v1/namespaces/ns/configmaps"
        self.calls.append("create")
        name = body["metadata"]["name"]
        if name in self.objects:
            return None  # AlreadyExists
        self.objects[name] = body
        return body

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        assert method == "PUT"
        self.calls.append("replace")
        self.objects[path.rsplit("/", 1)[1]] = body
        return body

    def delete(self, path: str) -> bool:
        self.calls.append("delete")
        return self.objects.pop(path.rsplit("/", 1)[1], None) is not None

    def get(self, path: str) -> dict[str, Any] | None:
        return self.objects.get(path.rsplit("/", 1)[1])


RESOURCE = {
    "apiVersion": "embedding-operator.dev/v1alpha1",
    "kind": "DeploymentEmbedding",
    "metadata": {"name": "big", "namespace": "ns", "uid": "0000-1111"},
}
OWNER = {
    "apiVersion": "embedding-operator.dev/v1alpha1",
    "kind": "DeploymentEmbedding",
    "name": "big",
    "uid": "0000-1111",
    "controller": True,
    "blockOwnerDeletion": False,
}


def _sink(
    kube: FakeKube, layout: ResultLayout, settings: StorageSettings | None = None
) -> ConfigMapSink:
    return ConfigMapSink(
        kube,  # type: ignore[arg-type]
        namespace="ns",
        resource_name="big",
        run_id="run-1",
        owner=RESOURCE,
        layout=layout,
        settings=settings or StorageSettings(chunk_bytes=64 * 1024),
    )


def _write(kube: FakeKube, array: np.ndarray, layout: ResultLayout, step: int = 37) -> Any:
    sink = _sink(kube, layout)
    for start in range(0, layout.count, step):
        sink.write(start, array[start : start + step])
    return sink, sink.finish(total_tokens=1234)


@pytest.mark.parametrize("dtype", ["float", "int8", "ubinary"])
def test_configmap_sink_writes_owned_labelled_chunks_that_reassemble(dtype: str) -> None:
    texts = [f"input {i}" for i in range(300)]
    array = expected_matrix(texts, "voyage-3.5", 1024, dtype)
    layout = ResultLayout("voyage-3.5", 300, 1024, dtype)  # type: ignore[arg-type]
    kube = FakeKube()
    _, result = _write(kube, array, layout)
    storage = result.storage
    assert storage is not None and result.embeddings is None
    assert storage.size == array.nbytes and storage.encoding == layout.encoding
    assert storage.names == sorted(kube.objects) and len(storage.names) == -(-array.nbytes // 65536)
    for index, name in enumerate(storage.names):
        body = kube.objects[name]
        meta = body["metadata"]
        assert name == chunk_name("big", "run-1", index)
        assert meta["ownerReferences"] == [OWNER]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "embedding-operator"
        assert meta["labels"]["embedding-operator.dev/deployment-embedding"] == "big"
        assert len(base64.b64decode(body["binaryData"]["chunk"])) <= 64 * 1024
    rebuilt = result_array(result, read_chunks(kube, "ns", storage))  # type: ignore[arg-type]
    assert np.array_equal(rebuilt, array)
    assert result.to_dict()["storage"]["digest"].startswith("sha256:")


def test_a_retried_pod_replaces_its_own_chunks() -> None:
    array = expected_matrix([f"x{i}" for i in range(50)], "voyage-3.5", 1024)
    layout = ResultLayout("voyage-3.5", 50, 1024)
    kube = FakeKube()
    _, first = _write(kube, array, layout)
    _, second = _write(kube, array, layout)
    assert first == second and "replace" in kube.calls


def test_abort_deletes_written_chunks() -> None:
    array = expected_matrix([f"x{i}" for i in range(50)], "voyage-3.5", 1024)
    kube = FakeKube()
    sink = _sink(kube, ResultLayout("voyage-3.5", 50, 1024))
    sink.write(0, array[:40])
    assert kube.objects
    sink.abort()
    assert not kube.objects


def test_a_result_too_large_for_any_store_fails_before_the_run() -> None:
    with pytest.raises(ResultTooLargeError, match="over the limit"):
        _sink(
            FakeKube(),
            ResultLayout("voyage-3.5", 10_000, 2048),
            StorageSettings(max_result_bytes=10 * 1024 * 1024),
        )
