"""Where results go, by size; operator-wide, from the environment.

``EMBEDDING_OPERATOR_INLINE_MAX_BYTES`` (64 KiB of base64, 12 vectors of 1,024 floats: every
client that lists or watches the resources pays for what the status holds, docs/api.md),
``EMBEDDING_OPERATOR_CHUNK_BYTES`` (768 KiB: well under the 1 MiB ConfigMap limit) and
``EMBEDDING_OPERATOR_MAX_RESULT_BYTES`` (96 MiB = 128 chunks; the largest valid spec, 10,000 x
2,048 float32, is 78 MiB): defaults and bounds in the registry, :mod:`embedding_operator.settings`.

A result over the last bound fails the run before the first Voyage request; nothing is ever
truncated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from embedding_operator import settings as registry
from embedding_operator.settings import CONFIGMAP_LIMIT


@dataclass(frozen=True)
class StorageSettings:
    """Size bounds of the result stores (module docstring); checked when built."""

    inline_max_bytes: int = int(registry.default("EMBEDDING_OPERATOR_INLINE_MAX_BYTES"))
    chunk_bytes: int = int(registry.default("EMBEDDING_OPERATOR_CHUNK_BYTES"))
    max_result_bytes: int = int(registry.default("EMBEDDING_OPERATOR_MAX_RESULT_BYTES"))

    def __post_init__(self) -> None:
        if not 0 < self.chunk_bytes <= CONFIGMAP_LIMIT - 64 * 1024:
            raise ValueError("chunk size must leave room under the 1 MiB ConfigMap limit")
        if self.inline_max_bytes < 0 or self.max_result_bytes < 0:
            raise ValueError("size limits must not be negative")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorageSettings:
        """From the environment; a bad value is a SettingError naming it."""
        env = os.environ if env is None else env
        return cls(
            inline_max_bytes=registry.integer("EMBEDDING_OPERATOR_INLINE_MAX_BYTES", env) or 0,
            chunk_bytes=registry.integer("EMBEDDING_OPERATOR_CHUNK_BYTES", env) or 0,
            max_result_bytes=registry.integer("EMBEDDING_OPERATOR_MAX_RESULT_BYTES", env) or 0,
        )
