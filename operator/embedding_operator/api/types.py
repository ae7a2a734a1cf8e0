"""The DeploymentEmbedding API as pydantic models: the single source of truth for the CRD.

Field bounds are chosen so that a resource stays well under etcd's 1.5 MiB object limit and the
CRD's CEL rules stay inside the apiserver's cost budget (see docs/api.md, "Size limits").
Constraints that the CRD expresses in CEL are mirrored here by validators with the same messages,
so the facade and ``embedding-operator embed`` refuse the same objects as ``kubectl apply``.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from embedding_operator.api import names
from embedding_operator.api.catalog import MODELS, OutputDtype, get_model
from embedding_operator.api.status import Phase

MAX_INPUTS: int = 10_000
"""Inputs per resource. 10,000 x ~100 characters is ~1 MB; the total below is the real bound."""
MAX_INPUT_LENGTH: int = 16_384
"""Characters per input (~4K tokens at ~4 characters a token); chunk longer documents."""
MAX_TOTAL_INPUT_CHARACTERS: int = 1_000_000
"""All inputs together: keeps the object (spec plus a status reference) well under 1.5 MiB."""

ModelName = Literal[
    "voyage-4-large",
    "voyage-4",
    "voyage-4-lite",
    "voyage-3-large",
    "voyage-3.5",
    "voyage-3.5-lite",
    "voyage-code-3",
    "voyage-finance-2",
    "voyage-law-2",
    "voyage-multilingual-2",
    "voyage-3",
    "voyage-3-lite",
]
InputType = Literal["query", "document"]
ConditionStatus = Literal["True", "False", "Unknown"]
QUANTITY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[mkMGTPE]|[eE][+-]?[0-9]+)?$"
"""A Kubernetes resource quantity (``resource.Quantity``'s grammar, without a sign): 100m, 0.5,
1Gi, 1e3. "lots", "1Gibberish" and "0.5.5" are not quantities."""
Quantity = (
    Annotated[int, Field(ge=0)]
    | Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN, max_length=32)]
)
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
    "m": Decimal("0.001"),
    "": Decimal(1),
}
RESOURCE_NAMES = ("cpu", "memory")
"""The resources a worker container may ask for (extended resources such as GPUs: no use)."""
Input = Annotated[str, StringConstraints(min_length=1, max_length=MAX_INPUT_LENGTH)]
DnsName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
]
SecretKey = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
]


class _Model(BaseModel):
    """camelCase on the wire, unknown fields refused (the CRD prunes and kubectl --validate=strict
    refuses them too)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=False
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class _SpecModel(_Model):
    """Spec types are strict, like the apiserver: "1024" is not an integer, "yes" not a boolean."""

    model_config = ConfigDict(strict=True)


class SecretKeyRef(_SpecModel):
    """A key of a Secret in the resource's namespace."""

    name: DnsName = Field(description="Name of the Secret, in the resource's namespace.")
    key: SecretKey = Field(description="Key within the Secret that holds the Voyage API key.")


class RateLimits(_SpecModel):
    """Overrides of the model's default limits (tier 1), e.g. for a higher Voyage usage tier."""

    requests_per_minute: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Requests per minute for this run."
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1_000, le=1_000_000_000, description="Tokens per minute for this run."
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, le=64, description="Requests in flight at once."
    )


def quantity_value(quantity: int | str) -> Decimal:
    """The number a quantity stands for (``1Gi`` -> 1073741824), to compare requests and limits
    as the apiserver does (CEL's ``quantity(...).compareTo(...)``)."""
    text = str(quantity).lstrip("+")
    match = re.fullmatch(r"([0-9.]+)(?:[eE]([+-]?[0-9]+)|([A-Za-z]*))", text)
    if not match:
        raise ValueError(f"{quantity!r} is not a quantity")
    number = Decimal(match[1])
    if match[2] is not None:
        return number * Decimal(10) ** int(match[2])
    return number * _SUFFIXES[match[3] or ""]


def request_over_limit_error(resource: str) -> str:
    return f"requests.{resource} must not exceed limits.{resource} (a request is at most its limit)"


class ResourceList(_SpecModel):
    """Amounts per resource; only the resources a worker can use."""

    cpu: Quantity | None = Field(default=None, description="CPU, e.g. 500m or 1.")
    memory: Quantity | None = Field(default=None, description="Memory, e.g. 256Mi or 1Gi.")


def _request_rules() -> list[JsonValue]:
    """requests <= limits, per resource, in CEL (Kubernetes' quantity library): the apiserver
    refuses such a Job, so the resource must be refused first (mirrored by ``_check`` below)."""
    return [
        {
            "rule": (
                f"!(has(self.requests) && has(self.limits) && has(self.requests.{name}) && "
                f"has(self.limits.{name})) || quantity(string(self.requests.{name}))"
                f".compareTo(quantity(string(self.limits.{name}))) <= 0"
            ),
            "message": request_over_limit_error(name),
            "fieldPath": f".requests.{name}",
            "reason": "FieldValueInvalid",
        }
        for name in RESOURCE_NAMES
    ]


class ResourceRequirements(_SpecModel):
    """Pod resources of the worker container (the Kubernetes shape)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _request_rules()})

    requests: ResourceList | None = Field(default=None, description="Minimum resources.")
    limits: ResourceList | None = Field(default=None, description="Maximum resources.")

    @model_validator(mode="after")
    def _check(self) -> ResourceRequirements:
        if self.requests is None or self.limits is None:
            return self
        for name in RESOURCE_NAMES:
            wanted, most = getattr(self.requests, name), getattr(self.limits, name)
            if (
                wanted is not None
                and most is not None
                and quantity_value(wanted) > quantity_value(most)
            ):
                raise ValueError(request_over_limit_error(name))
        return self


class JobOptions(_SpecModel):
    """Tuning of the batch/v1 Job that runs the worker."""

    active_deadline_seconds: int = Field(
        default=3600,
        ge=30,
        le=7 * 24 * 3600,
        description="Deadline of the whole run; past it the Job is stopped and the run Failed.",
    )
    backoff_limit: int = Field(
        default=2, ge=0, le=10, description="Pod retries before the run is Failed."
    )
    ttl_seconds_after_finished: int = Field(
        default=86_400,
        ge=0,
        le=30 * 86_400,
        description="How long a finished Job (and its pod, for logs) is kept.",
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Worker container resources; sane defaults when absent."
    )


def dimension_error(model: str, dimension: int) -> str:
    info = get_model(model)
    allowed = ", ".join(str(d) for d in info.dimensions)
    return f"spec.outputDimension: {dimension} is not supported by {model}; use one of {allowed}"


def dtype_error(model: str, dtype: str) -> str:
    info = get_model(model)
    allowed = ", ".join(info.dtypes)
    return f"spec.outputDtype: {dtype} is not supported by {model}; use one of {allowed}"


class DeploymentEmbeddingSpec(_SpecModel):
    """What to embed and how."""

    inputs: list[Input] = Field(
        min_length=1,
        max_length=MAX_INPUTS,
        description=(
            f"Texts to embed, in order (1 to {MAX_INPUTS}, each 1 to {MAX_INPUT_LENGTH} "
            "characters, "
            f"at most {MAX_TOTAL_INPUT_CHARACTERS} characters in all)."
        ),
    )
    model: ModelName = Field(description="Voyage embedding model.")
    input_type: InputType | None = Field(
        default=None, description="'query' or 'document' (Voyage prepends a prompt); absent: none."
    )
    output_dimension: int | None = Field(
        default=None, ge=1, le=4096, description="Vector length; must be one the model supports."
    )
    output_dtype: OutputDtype | None = Field(
        default=None,
        description="float (default), int8, uint8, binary or ubinary, as the model supports.",
    )
    truncation: bool | None = Field(
        default=None,
        description="Truncate inputs over the context length (Voyage's default: true).",
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description=(
            f"Secret holding the Voyage API key; absent: Secret "
            f"'{names.DEFAULT_API_KEY_SECRET}', key '{names.DEFAULT_API_KEY_SECRET_KEY}'."
        ),
    )
    rate_limits: RateLimits | None = Field(
        default=None, description="Overrides of the model's default rate limits."
    )
    job: JobOptions | None = Field(default=None, description="Tuning of the worker Job.")

    @model_validator(mode="after")
    def _check(self) -> DeploymentEmbeddingSpec:
        total = sum(len(s) for s in self.inputs)
        if total > MAX_TOTAL_INPUT_CHARACTERS:
            raise ValueError(total_length_error(total))
        info = MODELS[self.model]
        if self.output_dimension is not None and self.output_dimension not in info.dimensions:
            raise ValueError(dimension_error(self.model, self.output_dimension))
        if self.output_dtype is not None and self.output_dtype not in info.dtypes:
            raise ValueError(dtype_error(self.model, self.output_dtype))
        return self

    @property
    def dimension(self) -> int:
        """The vector length this spec produces."""
        return MODELS[self.model].dimension_for(self.output_dimension)

    @property
    def dtype(self) -> OutputDtype:
        return self.output_dtype or "float"

    @property
    def secret_ref(self) -> SecretKeyRef:
        return self.api_key_secret_ref or SecretKeyRef(
            name=names.DEFAULT_API_KEY_SECRET, key=names.DEFAULT_API_KEY_SECRET_KEY
        )


def total_length_error(total: int) -> str:
    return (
        f"spec.inputs: {total} characters in all, over the limit of {MAX_TOTAL_INPUT_CHARACTERS}; "
        "split the inputs over several resources"
    )


class Condition(_Model):
    """metav1.Condition."""

    type: str = Field(max_length=316, description="Condition type, e.g. Succeeded.")
    status: ConditionStatus
    reason: str = Field(max_length=1024, description="CamelCase reason.")
    message: str = Field(default="", max_length=32_768)
    last_transition_time: datetime
    observed_generation: int | None = Field(default=None, ge=0)


class ChunkedStorage(_Model):
    """Where a result too large for the status lives: owned ConfigMaps, concatenated in order."""

    kind: Literal["ConfigMap"] = "ConfigMap"
    names: list[str] = Field(description="ConfigMaps holding the chunks, in order.")
    encoding: str = Field(
        description="Byte layout, e.g. 'float32-le': row-major, little-endian, count x dimensions."
    )
    digest: str = Field(description="'sha256:<hex>' of the concatenated bytes.")
    size: int = Field(ge=0, description="Bytes in all.")


class InlineVectors(_Model):
    """A small result's vectors in the status, compactly: base64 of the bytes the chunked store
    would hold (row-major, little-endian, ``count`` rows). One string rather than a list of
    numbers: ~5.5 KB instead of ~11 KB of JSON per 1,024 floats on every watch event, and one
    object, not thousands, in every client that parses or deep-copies the resource."""

    encoding: str = Field(
        description="Byte layout, e.g. 'float32-le': row-major, little-endian, count x dimensions."
    )
    data: str = Field(
        json_schema_extra={"format": "byte"},
        description="The vectors' bytes, base64 (standard alphabet, padded).",
    )


class Result(_Model):
    """A finished run's output (the seed service's fields; the vectors inline or stored)."""

    model: str
    total_tokens: int = Field(ge=0)
    count: int = Field(ge=0, description="Number of vectors (equals the number of inputs).")
    dimensions: int = Field(ge=1)
    dtype: OutputDtype
    inline: InlineVectors | None = Field(
        default=None, description="The vectors in the status, base64, when the result is small."
    )
    storage: ChunkedStorage | None = Field(
        default=None, description="Where the vectors are stored when too large for the status."
    )
    embeddings: list[list[float]] | None = Field(
        default=None,
        description=(
            "The vectors as JSON numbers, as version 0.1 wrote them (read, no longer written)."
        ),
    )

    @field_serializer("embeddings")
    def _integers_stay_integers(self, rows: list[list[float]] | None) -> list[list[Any]] | None:
        """int8/uint8/binary vectors serialize as integers, as Voyage returns them (not 12.0)."""
        if rows is None or self.dtype == "float":
            return rows
        return [[int(x) for x in row] for row in rows]


class RunStats(_Model):
    """What a run cost in Voyage calls; the operator turns these into Prometheus metrics."""

    requests: int = Field(default=0, ge=0, description="HTTP requests sent to Voyage.")
    retries: int = Field(default=0, ge=0, description="Requests that were retried.")
    rate_limited: int = Field(default=0, ge=0, description="Responses that were 429.")


class DeploymentEmbeddingStatus(_Model):
    """Written only through the status subresource, by the operator and its worker."""

    phase: Phase | None = Field(default=None, description="Pending, Running, Completed or Failed.")
    message: str | None = Field(default=None, description="Human-readable state or error.")
    conditions: list[Condition] | None = None
    observed_generation: int | None = Field(default=None, ge=0)
    last_handled_run_request: str | None = Field(
        default=None,
        description="The run annotation value last acted on (run, ignored or refused).",
    )
    last_handled_cancel_request: str | None = Field(
        default=None, description="The cancel annotation value last acted on."
    )
    job_name: str | None = None
    run_count: int | None = Field(
        default=None,
        ge=0,
        description="Runs started so far; the next run's Job name derives from it.",
    )
    input_count: int | None = Field(default=None, ge=0, description="Number of spec.inputs.")
    start_time: datetime | None = None
    completion_time: datetime | None = None
    result: Result | None = None
    stats: RunStats | None = None


class ObjectMeta(BaseModel):
    """The part of metav1.ObjectMeta this API constrains; other fields pass through untouched."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="A DNS-1123 label: Job names derive from it.")
    namespace: str | None = None

    @model_validator(mode="after")
    def _check_name(self) -> ObjectMeta:
        if not is_valid_name(self.name):
            raise ValueError(name_error(self.name))
        return self


def is_valid_name(name: str) -> bool:
    return len(name) <= names.MAX_NAME_LENGTH and re.fullmatch(names.NAME_PATTERN, name) is not None


def name_error(name: str) -> str:
    return (
        f"metadata.name: {name!r} must be a lowercase slug of at most {names.MAX_NAME_LENGTH} "
        "characters (a-z, 0-9 and '-', starting and ending with a letter or digit)"
    )


class DeploymentEmbedding(BaseModel):
    """A whole DeploymentEmbedding object, as read from a manifest or the API."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["embedding-operator.dev/v1alpha1"] = Field(
        default="embedding-operator.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["DeploymentEmbedding"] = names.KIND
    metadata: ObjectMeta
    spec: DeploymentEmbeddingSpec
    status: DeploymentEmbeddingStatus | None = None
