"""Where results go, by size; operator-wide, from the environment.

===========================================  ===========  ======================================
variable                                     default      meaning
===========================================  ===========  ======================================
``EMBEDDING_OPERATOR_INLINE_MAX_BYTES``      262144       largest ``embeddings`` JSON kept in the
                                                          status (256 KiB: with a spec of up to
                                                          ~1 MB the object stays under etcd's
                                                          1.5 MiB)
``EMBEDDING_OPERATOR_CHUNK_BYTES``           786432       bytes per ConfigMap (768 KiB: well under
                                                          the 1 MiB ConfigMap limit)
``EMBEDDING_OPERATOR_MAX_RESULT_BYTES``      100663296    largest chunked result (96 MiB = 128
                                                          chunks; the largest valid spec, 10,000
                                                          x 2,048 float32, is 78 MiB)
===========================================  ===========  ======================================

A result over the last bound fails the run before the first Voyage request; nothing is ever
truncated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

CONFIGMAP_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class StorageSettings:
    """Size bounds of the result stores (module docstring); checked when built."""

    inline_max_bytes: int = 256 * 1024
    chunk_bytes: int = 768 * 1024
    max_result_bytes: int = 96 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 0 < self.chunk_bytes <= CONFIGMAP_LIMIT - 64 * 1024:
            raise ValueError("chunk size must leave room under the 1 MiB ConfigMap limit")
        if self.inline_max_bytes < 0 or self.max_result_bytes < 0:
            raise ValueError("size limits must not be negative")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorageSettings:
        env = os.environ if env is None else env
        defaults = cls()

        def number(name: str, default: int) -> int:
            value = env.get(name, "").strip()
            if not value:
                return default
            if not value.isdigit():
                raise ValueError(f"{name} must be a number of bytes, not {value!r}")
            return int(value)

        return cls(
            inline_max_bytes=number(
                "EMBEDDING_OPERATOR_INLINE_MAX_BYTES", defaults.inline_max_bytes
            ),
            chunk_bytes=number("EMBEDDING_OPERATOR_CHUNK_BYTES", defaults.chunk_bytes),
            max_result_bytes=number(
                "EMBEDDING_OPERATOR_MAX_RESULT_BYTES", defaults.max_result_bytes
            ),
        )
