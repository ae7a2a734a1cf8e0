"""Result stores: the status inline (base64), owned ConfigMaps in chunks, local files.

All share the sink contract of :class:`embedding_operator.voyage.ResultSink` (``write(offset,
rows)`` in order, ``finish(total_tokens) -> Result``, ``abort()``). Encoding, chunking, digests and
reassembly are pure; only :mod:`.configmaps` talks to Kubernetes (imported lazily by callers that
need it, so the facade's readers and the ``embed`` command don't pay for it).
"""

from embedding_operator.storage.chunks import (
    Chunker,
    DigestMismatchError,
    chunk_name,
    digest_of,
    inline_array,
    reassemble,
    result_array,
    run_key,
)
from embedding_operator.storage.files import JsonFileSink, NpyFileSink, open_file_sink
from embedding_operator.storage.layout import ENCODINGS, ResultLayout, dtype_for_encoding
from embedding_operator.storage.settings import StorageSettings
from embedding_operator.storage.sinks import (
    ArraySink,
    InlineSink,
    NullSink,
    OrderedSink,
    ResultTooLargeError,
    inline_fits,
    inline_size,
    select_sink,
    to_lists,
)

__all__ = [
    "ENCODINGS",
    "ArraySink",
    "Chunker",
    "DigestMismatchError",
    "InlineSink",
    "JsonFileSink",
    "NpyFileSink",
    "NullSink",
    "OrderedSink",
    "ResultLayout",
    "ResultTooLargeError",
    "StorageSettings",
    "chunk_name",
    "digest_of",
    "dtype_for_encoding",
    "inline_array",
    "inline_fits",
    "inline_size",
    "open_file_sink",
    "reassemble",
    "result_array",
    "run_key",
    "select_sink",
    "to_lists",
]
