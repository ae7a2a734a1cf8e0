"""The chunked store: a large result as ConfigMaps owned by the DeploymentEmbedding.

It talks to the API through the project's :class:`embedding_operator.kube.Kube` (plain dicts over
the ``kubernetes`` package's configured ``ApiClient``).

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
from embedding_operator.kube import Kube, core_path, owner_reference
from embedding_operator.storage.chunks import Chunker, chunk_name, reassemble, run_key
from embedding_operator.storage.layout import ResultLayout
from embedding_operator.storage.settings import StorageSettings
from embedding_operator.storage.sinks import OrderedSink, ResultTooLargeError

DATA_KEY = "chunk"
RUN_LABEL = f"{names.GROUP}/result-run"
"""Label with the run key, to find and delete the chunks of earlier runs."""
CHUNK_ANNOTATION = f"{names.GROUP}/chunk"


def labels(resource_name: str, run_id: str) -> dict[str, str]:
    return {
        names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
        names.OWNER_LABEL: resource_name,
        RUN_LABEL: run_key(run_id),
    }


class ConfigMapSink(OrderedSink):
    """Streams the result into owned ConfigMaps.

    ``owner`` is the DeploymentEmbedding object (or a ready ownerReference).
    """

    def __init__(
        self,
        kube: Kube,
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
        self.kube = kube
        self.namespace = namespace
        self.resource_name = resource_name
        self.run_id = run_id
        self.owner = owner_reference(dict(owner))
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
        if self.kube.create(core_path(self.namespace, "configmaps"), body) is None:
            # Already there: a retried pod of the same run; replace with this attempt's bytes.
            self.kube.request("PUT", core_path(self.namespace, "configmaps", name), body)
        self.names.append(name)

    def _abort(self) -> None:
        """Delete the chunks written so far (best effort: ownership removes them eventually)."""
        for name in self.names:
            self.kube.delete(core_path(self.namespace, "configmaps", name))
        self.names.clear()


def read_chunks(kube: Kube, namespace: str, storage: ChunkedStorage) -> Iterator[bytes]:
    """The chunks of a stored result, in order (``get`` on each ConfigMap)."""
    for name in storage.names:
        config_map = kube.get(core_path(namespace, "configmaps", name))
        if config_map is None:
            raise FileNotFoundError(f"ConfigMap {namespace}/{name} of the result is missing")
        yield base64.b64decode(config_map.get("binaryData", {})[DATA_KEY])


def load_result(kube: Kube, namespace: str, result: Result) -> npt.NDArray[Any]:
    """A chunked result's array, verified against the status digest (for the REST facade)."""
    if result.storage is None:
        raise ValueError("the result is inline")
    layout = ResultLayout(result.model, result.count, result.dimensions, result.dtype)
    chunks = read_chunks(kube, namespace, result.storage)
    return reassemble(chunks, result.storage, result.count, layout.row_length)


def previous_runs_selector(resource_name: str, keep_run_id: str | None = None) -> str:
    """Label selector of the result ConfigMaps of ``resource_name``, except ``keep_run_id``'s."""
    selector = (
        f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE},{names.OWNER_LABEL}={resource_name}"
    )
    if keep_run_id is not None:
        selector += f",{RUN_LABEL}!={run_key(keep_run_id)}"
    return selector


def delete_previous_runs(
    kube: Kube, namespace: str, resource_name: str, keep_run_id: str | None = None
) -> None:
    """Delete the result ConfigMaps of ``resource_name`` except those of ``keep_run_id``
    (``deletecollection``), e.g. when a spec change clears the old result."""
    kube.request(
        "DELETE",
        core_path(namespace, "configmaps"),
        query={"labelSelector": previous_runs_selector(resource_name, keep_run_id)},
    )
