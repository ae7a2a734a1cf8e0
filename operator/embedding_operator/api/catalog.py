"""The supported Voyage embedding models: one catalog for validation, CRD generation and the worker.

Figures are from Voyage's documentation, checked against the voyageai 0.5.0 client. Rate limits
are tier-1 defaults per organization; a resource or the operator may override them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

OutputDtype = Literal["float", "int8", "uint8", "binary", "ubinary"]
ALL_DTYPES: Final[tuple[OutputDtype, ...]] = get_args(OutputDtype)
FLEXIBLE_DIMENSIONS: Final = (256, 512, 1024, 2048)


@dataclass(frozen=True)
class ModelInfo:
    """What one Voyage embedding model accepts, and the default limits it runs under."""

    name: str
    context_tokens: int
    dimensions: tuple[int, ...]
    default_dimension: int
    dtypes: tuple[OutputDtype, ...]
    max_tokens_per_request: int
    tokens_per_minute: int
    requests_per_minute: int = 2000
    legacy: bool = False

    def dimension_for(self, requested: int | None) -> int:
        return self.default_dimension if requested is None else requested


def _flexible(name: str, request_cap: int, tpm: int) -> ModelInfo:
    return ModelInfo(name, 32_000, FLEXIBLE_DIMENSIONS, 1024, ALL_DTYPES, request_cap, tpm)


def _fixed(
    name: str, context: int, dimension: int, request_cap: int = 120_000, legacy: bool = False
) -> ModelInfo:
    return ModelInfo(
        name, context, (dimension,), dimension, ("float",), request_cap, 3_000_000, legacy=legacy
    )


MODELS: Final[dict[str, ModelInfo]] = {
    m.name: m
    for m in (
        _flexible("voyage-4-large", 120_000, 3_000_000),
        _flexible("voyage-4", 320_000, 8_000_000),
        _flexible("voyage-4-lite", 1_000_000, 16_000_000),
        _flexible("voyage-3-large", 120_000, 3_000_000),
        _flexible("voyage-3.5", 320_000, 8_000_000),
        _flexible("voyage-3.5-lite", 1_000_000, 16_000_000),
        _flexible("voyage-code-3", 120_000, 3_000_000),
        _fixed("voyage-finance-2", 32_000, 1024),
        _fixed("voyage-law-2", 16_000, 1024),
        _fixed("voyage-multilingual-2", 32_000, 1024),
        # Older models: Voyage publishes no per-request token cap; 120K is the conservative one.
        _fixed("voyage-3", 32_000, 1024, legacy=True),
        _fixed("voyage-3-lite", 32_000, 512, legacy=True),
    )
}

MAX_INPUTS_PER_REQUEST: Final = 1000


def get_model(name: str) -> ModelInfo:
    """The catalog entry for ``name``; a ValueError that lists the supported models otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; supported models: {', '.join(MODELS)}") from None


def compatibility_groups() -> list[tuple[list[str], tuple[int, ...], tuple[OutputDtype, ...]]]:
    """Models grouped by the (dimensions, dtypes) they accept, in catalog order.

    The CRD's CEL rules are generated from these groups, so they stay short and always match the
    catalog.
    """
    groups: dict[tuple[tuple[int, ...], tuple[OutputDtype, ...]], list[str]] = {}
    for m in MODELS.values():
        groups.setdefault((m.dimensions, m.dtypes), []).append(m.name)
    return [(names, dims, dtypes) for (dims, dtypes), names in groups.items()]
