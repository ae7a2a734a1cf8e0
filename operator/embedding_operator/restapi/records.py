"""The seed service's JSON over DeploymentEmbedding objects, both ways, and the list query.

Pure functions: a custom resource in, the seed's record out (``id, name, inputs, model,
inputType, status, jobId, result, error, createdAt, updatedAt`` plus the resource's other spec
fields in camelCase); a request body in, a validated spec out, with the messages of the CRD's
rules (the pydantic types are their single source).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from embedding_operator.api import MODELS, DeploymentEmbeddingSpec
from embedding_operator.api.types import is_valid_name
from embedding_operator.restapi.errors import bad_request

Obj = dict[str, Any]

STATUSES = ("pending", "running", "completed", "failed")
READ_ONLY = frozenset(
    {"id", "status", "jobId", "result", "error", "createdAt", "updatedAt", "namespace"}
)
"""Record fields a client may send back unchanged (e.g. a GET body PUT back); they are ignored."""
SPEC_FIELDS = tuple(
    (field.alias or name) for name, field in DeploymentEmbeddingSpec.model_fields.items()
)
RECORD_FIELDS = frozenset({"name", *READ_ONLY, *SPEC_FIELDS})
RESULT_SUMMARY = ("model", "totalTokens", "count", "dimensions", "dtype")
"""What a record says of a result besides its vectors."""
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def phase_of(obj: Obj) -> str:
    """The seed's lowercase status; a resource the operator has not seen yet is pending."""
    phase = (obj.get("status") or {}).get("phase") or "Pending"
    return str(phase).lower()


def updated_at(obj: Obj) -> str | None:
    """The last write to the object: the newest managedFields time (Kubernetes keeps no
    single 'updated' stamp), else its creation."""
    meta = obj["metadata"]
    times = [str(e["time"]) for e in meta.get("managedFields") or [] if e.get("time")]
    created: str | None = meta.get("creationTimestamp")
    return max(times) if times else created


def record(
    obj: Obj, embeddings: list[list[float]] | None = None, *, with_result: bool = True
) -> Obj:
    """The seed's record of ``obj``. ``embeddings`` are the reassembled vectors (inline ones are
    read from the status when None); ``with_result=False`` leaves them out (lists)."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    status = obj.get("status") or {}
    out: Obj = {
        "id": meta.get("uid"),
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "inputs": spec.get("inputs", []),
        "model": spec.get("model"),
        "inputType": spec.get("inputType"),
        "status": phase_of(obj),
        "jobId": status.get("jobName"),
        "result": None,
        "error": status.get("message") if status.get("phase") == "Failed" else None,
        "createdAt": meta.get("creationTimestamp"),
        "updatedAt": updated_at(obj),
    }
    for key, value in spec.items():
        out.setdefault(key, value)
    result = status.get("result")
    if result and status.get("phase") == "Completed":
        out["result"] = {k: result.get(k) for k in RESULT_SUMMARY}
        if with_result:
            rows = embeddings if embeddings is not None else result.get("embeddings")
            out["result"] = {"embeddings": rows, **out["result"]}
    return out


def pick(rec: Obj, fields: tuple[str, ...] | None) -> Obj:
    return rec if fields is None else {k: rec.get(k) for k in fields}


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _spec_error(error: ValidationError) -> str:
    """One message per problem, each naming its field as the body spells it."""
    messages = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        path = _field_path(tuple(item["loc"]))
        messages.append(f"{path}: {message}" if path else message.removeprefix("spec."))
    return "; ".join(messages)


def _spec_fields(body: Obj) -> Obj:
    unknown = sorted(set(body) - RECORD_FIELDS)
    if unknown:
        raise bad_request(
            f"{unknown[0]}: unknown field; a record has {', '.join(('name', *SPEC_FIELDS))}"
        )
    spec = {k: v for k, v in body.items() if k in SPEC_FIELDS}
    if isinstance(spec.get("inputs"), str):
        spec["inputs"] = [spec["inputs"]]  # the seed accepts one string
    return spec


def validate_spec(spec: Obj) -> Obj:
    """``spec`` checked by the CRD's rules (400 naming the field otherwise), in wire form."""
    try:
        return DeploymentEmbeddingSpec.model_validate(spec).to_dict()
    except ValidationError as e:
        raise bad_request(_spec_error(e)) from None


def parse_json(raw: bytes) -> Obj:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"the body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def creation(body: Obj) -> tuple[str, Obj]:
    """``(name, spec)`` of a POST body."""
    name = body.get("name")
    if not isinstance(name, str) or not is_valid_name(name):
        raise bad_request(
            f"name: {name!r} must be a lowercase slug of at most 63 characters (a-z, 0-9 and "
            "'-', starting and ending with a letter or digit)"
        )
    return name, validate_spec(_spec_fields(body))


def update(body: Obj, current: Obj) -> Obj:
    """The merge patch of ``spec`` for a PUT body (a null removes an optional field); the
    spec it leads to is checked whole."""
    if "name" in body and body["name"] != current["metadata"]["name"]:
        raise bad_request("name: cannot be changed; create a new record instead")
    patch = _spec_fields(body)
    merged = {**(current.get("spec") or {}), **patch}
    validate_spec({k: v for k, v in merged.items() if v is not None})
    return patch


# -- lists ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    limit: int = DEFAULT_LIMIT
    page: int = 1
    after: tuple[str, str] | None = None
    """From a continue token: (creationTimestamp, name) of the last item already returned."""
    search: str | None = None
    status: str | None = None
    model: str | None = None
    with_result: bool = False
    fields: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> ListQuery:
        limit = _integer(query, "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise bad_request(f"limit: {limit} is out of range; use 1 to {MAX_LIMIT}")
        page = _integer(query, "page", 1)
        if page < 1:
            raise bad_request(f"page: {page} is out of range; pages start at 1")
        after = None
        if query.get("continue"):
            if "page" in query:
                raise bad_request("continue: cannot be combined with page; use one or the other")
            after = decode_continue(query["continue"])
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise bad_request(f"status: {status!r} is not one of {', '.join(STATUSES)}")
        model = query.get("model") or None
        if model is not None and model not in MODELS:
            raise bad_request(f"model: {model!r} is not a supported model")
        return cls(
            limit=limit,
            page=page,
            after=after,
            search=query.get("search") or None,
            status=status,
            model=model,
            with_result=include_result(query, default=False),
            fields=parse_fields(query),
        )

    def matches(self, obj: Obj) -> bool:
        return (
            (self.search is None or self.search in obj["metadata"]["name"])
            and (self.status is None or phase_of(obj) == self.status)
            and (self.model is None or (obj.get("spec") or {}).get("model") == self.model)
        )

    def select(self, items: list[Obj]) -> tuple[list[Obj], int, str | None]:
        """``(page, total matching, continue token or None)``, newest first."""
        matching = newest_first([o for o in items if self.matches(o)])
        if self.after is not None:
            start = sum(1 for o in matching if _before_or_at(o, *self.after))
        else:
            start = (self.page - 1) * self.limit
        page = matching[start : start + self.limit]
        more = start + self.limit < len(matching)
        token = encode_continue(page[-1]) if page and more else None
        return page, len(matching), token


def _integer(query: Mapping[str, str], key: str, default: int) -> int:
    value = query.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"{key}: {value!r} is not an integer") from None


def include_result(query: Mapping[str, str], *, default: bool) -> bool:
    value = query.get("include")
    if value is None:
        return default
    if value not in ("result", ""):
        raise bad_request(f"include: {value!r} is not supported; use include=result")
    return value == "result"


def parse_fields(query: Mapping[str, str]) -> tuple[str, ...] | None:
    value = query.get("fields")
    if not value:
        return None
    fields = tuple(f.strip() for f in value.split(",") if f.strip())
    unknown = [f for f in fields if f not in RECORD_FIELDS]
    if unknown:
        raise bad_request(f"fields: {unknown[0]!r} is not a field of a record")
    return fields


def _created(obj: Obj) -> str:
    return str(obj["metadata"].get("creationTimestamp") or "")


def newest_first(items: list[Obj]) -> list[Obj]:
    """Newest first; the name breaks ties (timestamps have one-second resolution)."""
    by_name = sorted(items, key=lambda o: str(o["metadata"]["name"]))
    return sorted(by_name, key=_created, reverse=True)


def _before_or_at(obj: Obj, created: str, name: str) -> bool:
    """Whether ``obj`` sorts at or before the item ``(created, name)`` (newest first)."""
    mine = _created(obj)
    return mine > created or (mine == created and obj["metadata"]["name"] <= name)


def encode_continue(obj: Obj) -> str:
    meta = obj["metadata"]
    raw = json.dumps([meta.get("creationTimestamp") or "", meta["name"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, name = json.loads(raw)
        if isinstance(created, str) and isinstance(name, str):
            return created, name
    except (ValueError, TypeError, binascii.Error):
        pass
    raise bad_request("continue: not a token this server issued; start the list again")
