"""The chunked store: a large result as ConfigMaps owned by the DeploymentEmbedding.

Each ConfigMap holds one chunk of the little-endian result bytes (:mod:`.layout`) under
``binaryData["chunk"]``; the status records the names in order, the encoding, the sha256 digest
and the byte size. Chunks are written while the run is going (never more than one chunk is
buffered), named deterministically from the resource and the run (a retried pod replaces its own
chunks), labelled as the operator's and owned by the resource, so deleting the resource deletes
them.

RBAC the writer needs in the namespace: ``configmaps``: ``create``, ``update`` (replace after a
409 from a retried pod), ``delete`` (cleanup after a failed run), plus ``list``/``deletecollection``
for :func:`delete_previous_runs`; the reader: ``get``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

import numpy.typing as npt

from embedding_operator.api import names
from embedding_operator.api.types import ChunkedStorage, Result
from embedding_operator.storage.chunks import Chunker, chunk_name, reassemble, run_key
from embedding_operator.storage.layout import ResultLayout
from embedding_operator.storage.settings import StorageSettings
from embedding_operator.storage.sinks import OrderedSink, ResultTooLargeError

DATA_KEY = "chunk"
RUN_LABEL = f"{names.GROUP}/result-run"
"""Label with the run key, to find and delete the chunks of earlier runs."""
CHUNK_ANNOTATION = f"{names.GROUP}/chunk"


def owner_reference(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The ownerReference to a DeploymentEmbedding object (a dict as the API returns it)."""
    meta = resource["metadata"]
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def labels(resource_name: str, run_id: str) -> dict[str, str]:
    return {
        names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
        names.OWNER_LABEL: resource_name,
        RUN_LABEL: run_key(run_id),
    }


class ConfigMapSink(OrderedSink):
    """Streams the result into owned ConfigMaps through a ``kubernetes`` ``CoreV1Api``."""

    def __init__(
        self,
        core: Any,
        *,
        namespace: str,
        resource_name: str,
        run_id: str,
        owner: Mapping[str, Any],
        layout: ResultLayout,
        settings: StorageSettings | None = None,
    ) -> None:
        super().__init__(layout)
        self.settings = settings or StorageSettings()
        if layout.total_bytes > self.settings.max_result_bytes:
            raise ResultTooLargeError(
                f"the result would take {layout.total_bytes} bytes ({layout.count} vectors of "
                f"{layout.row_bytes} bytes), over the limit of {self.settings.max_result_bytes} "
                "(EMBEDDING_OPERATOR_MAX_RESULT_BYTES); use fewer inputs, a smaller "
                "outputDimension or an integer outputDtype"
            )
        self.core = core
        self.namespace = namespace
        self.resource_name = resource_name
        self.run_id = run_id
        self.owner = dict(owner)
        self.names: list[str] = []
        self._chunker = Chunker(self.settings.chunk_bytes)

    def _append(self, rows: npt.NDArray[Any]) -> None:
        for chunk in self._chunker.feed(rows.tobytes()):
            self._put(chunk)

    def _finish(self, total_tokens: int) -> Result:
        for chunk in self._chunker.close():
            self._put(chunk)
        storage = ChunkedStorage(
            names=list(self.names),
            encoding=self.layout.encoding,
            digest=self._chunker.digest,
            size=self._chunker.total,
        )
        return self._result(total_tokens, storage=storage)

    def _put(self, chunk: bytes) -> None:
        from kubernetes.client.exceptions import ApiException

        name = chunk_name(self.resource_name, self.run_id, len(self.names))
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": labels(self.resource_name, self.run_id),
                "annotations": {CHUNK_ANNOTATION: str(len(self.names))},
                "ownerReferences": [self.owner],
            },
            "binaryData": {DATA_KEY: base64.b64encode(chunk).decode("ascii")},
        }
        try:
            self.core.create_namespaced_config_map(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_config_map(name, self.namespace, body)
        self.names.append(name)

    def abort(self) -> None:
        """Delete the chunks written so far (best effort: ownership removes them eventually)."""
        from kubernetes.client.exceptions import ApiException

        for name in self.names:
            try:
                self.core.delete_namespaced_config_map(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        self.names.clear()


def read_chunks(core: Any, namespace: str, storage: ChunkedStorage) -> Iterator[bytes]:
    """The chunks of a stored result, in order (``get`` on each ConfigMap)."""
    for name in storage.names:
        config_map = core.read_namespaced_config_map(name, namespace)
        yield base64.b64decode((config_map.binary_data or {})[DATA_KEY])


def load_result(core: Any, namespace: str, result: Result) -> npt.NDArray[Any]:
    """A chunked result's array, verified against the status digest (for the REST facade)."""
    if result.storage is None:
        raise ValueError("the result is inline")
    layout = ResultLayout(result.model, result.count, result.dimensions, result.dtype)
    chunks = read_chunks(core, namespace, result.storage)
    return reassemble(chunks, result.storage, result.count, layout.row_length)


def delete_previous_runs(
    core: Any, namespace: str, resource_name: str, keep_run_id: str | None = None
) -> None:
    """Delete the result ConfigMaps of ``resource_name`` except those of ``keep_run_id``."""
    selector = (
        f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE},{names.OWNER_LABEL}={resource_name}"
    )
    if keep_run_id is not None:
        selector += f",{RUN_LABEL}!={run_key(keep_run_id)}"
    core.delete_collection_namespaced_config_map(namespace, label_selector=selector)
