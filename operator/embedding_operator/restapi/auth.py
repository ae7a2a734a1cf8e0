"""Who is calling, and may they: authentication and authorization as kube-apiserver expects of an
extension API server.

* A request proxied by kube-apiserver arrives over TLS with the front-proxy client certificate.
  The TLS layer (``ssl``, see :func:`server_context`) verifies it against the requestheader CA;
  only when it did, and the certificate's common name is an allowed one, are the
  ``X-Remote-User``/``-Group``/``-Extra-*`` headers trusted.
* A direct call with ``Authorization: Bearer`` is checked by a TokenReview.
* Anything else is 401: a forged ``X-Remote-User`` without that certificate is never trusted.

Every call is then authorized by a SubjectAccessReview against the custom resource, so one set of
RBAC rules governs kubectl and REST (:func:`access_review`).
"""

from __future__ import annotations

import hashlib
import json
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from embedding_operator.api import names

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestHeaderConfig:
    """The front proxy's trust settings (kube-apiserver's ``--requestheader-*`` flags)."""

    client_ca: str
    """PEM of the CA that signs the front-proxy client certificate."""
    allowed_names: tuple[str, ...] = ()
    """Common names allowed; empty: any certificate the CA signed."""
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_headers_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> RequestHeaderConfig:
        """From ``kube-system/extension-apiserver-authentication`` (its lists are JSON)."""
        ca = data.get("requestheader-client-ca-file")
        if not ca:
            raise ValueError(
                f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} has no requestheader-client-ca-file: "
                "kube-apiserver runs without --requestheader-client-ca-file (no aggregation layer)"
            )

        def listed(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key)
            return tuple(json.loads(raw)) if raw else default

        return cls(
            client_ca=ca,
            allowed_names=listed("requestheader-allowed-names", ()),
            username_headers=listed("requestheader-username-headers", cls.username_headers),
            group_headers=listed("requestheader-group-headers", cls.group_headers),
            extra_headers_prefixes=listed(
                "requestheader-extra-headers-prefix", cls.extra_headers_prefixes
            ),
        )


def server_context(
    cert_file: str, key_file: str, requestheader: RequestHeaderConfig
) -> ssl.SSLContext:
    """TLS for the server. Client certificates are optional (bearer-token callers have none) but,
    when sent, must verify against the requestheader CA, or the handshake fails."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cadata=requestheader.client_ca)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def common_name(peercert: Mapping[str, Any] | None) -> str | None:
    """The subject CN of a peer certificate the TLS layer verified (None: no certificate)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def proxied_user(
    config: RequestHeaderConfig, peercert: Mapping[str, Any] | None, headers: Mapping[str, str]
) -> User | None:
    """The user kube-apiserver proxied this request for, or None when the connection does not
    carry an allowed front-proxy certificate (the headers are then ignored)."""
    cn = common_name(peercert)
    if cn is None or (config.allowed_names and cn not in config.allowed_names):
        return None
    name = next((headers[h] for h in config.username_headers if headers.get(h)), None)
    if not name:
        return None
    groups = tuple(value for h in config.group_headers for value in _all(headers, h))
    extra: dict[str, list[str]] = {}
    lowered = [p.lower() for p in config.extra_headers_prefixes]
    for key, value in headers.items():
        prefix = next((p for p in lowered if key.lower().startswith(p)), None)
        if prefix is not None:
            extra.setdefault(unquote(key[len(prefix) :].lower()), []).append(value)
    return User(name=name, groups=groups, extra={k: tuple(v) for k, v in extra.items()})


def _all(headers: Mapping[str, str], key: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(key, []))
    value = headers.get(key)
    return [value] if value else []


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def token_review(token: str) -> dict[str, Any]:
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }


def reviewed_user(review: Mapping[str, Any]) -> User | None:
    status = review.get("status") or {}
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    return User(
        name=user.get("username", ""),
        uid=user.get("uid", ""),
        groups=tuple(user.get("groups") or ()),
        extra={k: tuple(v) for k, v in (user.get("extra") or {}).items()},
    )


@dataclass(frozen=True)
class Access:
    """What a call does to the custom resource, in RBAC's terms."""

    verb: str
    namespace: str
    name: str | None = None
    subresource: str | None = None

    def describe(self) -> str:
        resource = names.PLURAL + (f"/{self.subresource}" if self.subresource else "")
        return (
            f'cannot {self.verb} resource "{resource}" in API group "{names.GROUP}" '
            f'in the namespace "{self.namespace}"'
        )


def access_review(user: User, access: Access) -> dict[str, Any]:
    """A SubjectAccessReview of ``access`` on ``deploymentembeddings`` for ``user``."""
    attributes: dict[str, Any] = {
        "namespace": access.namespace,
        "verb": access.verb,
        "group": names.GROUP,
        "version": names.VERSION,
        "resource": names.PLURAL,
    }
    if access.subresource:
        attributes["subresource"] = access.subresource
    if access.name:
        attributes["name"] = access.name
    spec: dict[str, Any] = {"user": user.name, "resourceAttributes": attributes}
    if user.uid:
        spec["uid"] = user.uid
    if user.groups:
        spec["groups"] = list(user.groups)
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": spec,
    }


def denial(user: User, access: Access, review: Mapping[str, Any]) -> str | None:
    """None when the review allowed the access, else the 403 message (with the SAR's reason)."""
    status = review.get("status") or {}
    if status.get("allowed") and not status.get("denied"):
        return None
    what = (
        f'{names.PLURAL}.{names.GROUP} "{access.name}"'
        if access.name
        else (f"{names.PLURAL}.{names.GROUP}")
    )
    message = f'{what} is forbidden: User "{user.name}" {access.describe()}'
    reason = status.get("reason") or status.get("evaluationError")
    return f"{message}: {reason}" if reason else message


class ReviewCache:
    """Outcomes of TokenReviews and SubjectAccessReviews for a short while, like kube's
    delegating authenticator and authorizer (``--authentication-token-webhook-cache-ttl``,
    ``--authorization-webhook-cache-authorized-ttl``/``-unauthorized-ttl``: 10 s each by
    default): a client paging through a list costs one review, not one per page.

    The key holds everything the review's answer depends on, so no answer is reused for another
    question; tokens are keyed by their sha256, never kept. A revoked right or token takes
    effect within ``ttl`` seconds, as with kube-apiserver's own webhooks. Bounded: past
    ``size`` entries the oldest goes. Errors (kube-apiserver unreachable) are never cached.
    """

    def __init__(
        self, ttl: float = 10.0, size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def get(self, key: Hashable) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self.clock() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self._entries[key] = (self.clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def token_key(token: str) -> Hashable:
    return ("token", hashlib.sha256(token.encode()).hexdigest())


def access_key(user: User, access: Access) -> Hashable:
    """Every attribute a SubjectAccessReview of ``access`` for ``user`` depends on."""
    extra = tuple(sorted((k, tuple(v)) for k, v in user.extra.items()))
    return ("access", user.name, user.uid, tuple(user.groups), extra, access)
