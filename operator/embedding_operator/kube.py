"""A small JSON client for the Kubernetes API, shared by the controller, the worker and the stores.

It rides on the ``kubernetes`` package for configuration, TLS and authentication, but sends and
returns plain dicts: the objects this project builds are dicts (pure builder functions), and the
generated model classes would add a second shape of every object to keep in sync.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

from embedding_operator.api import names

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """An API error: ``status`` is the HTTP code, ``reason`` the Status reason (e.g. Conflict)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Kube:
    def __init__(self, api_client: Any) -> None:
        self._api = api_client

    @classmethod
    def from_environment(cls) -> Kube:
        """A kubeconfig ($KUBECONFIG or ~/.kube/config) when there is one, else the pod's
        in-cluster service account."""
        from kubernetes import client, config

        configuration = client.Configuration()
        kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        if os.path.exists(kubeconfig.split(os.pathsep)[0]):
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        else:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        return cls(client.ApiClient(configuration))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        headers = {"Accept": accept, "Content-Type": content_type}
        _, url, headers, data, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(method, url, header_params=headers, body=data)
        raw = response.read()
        payload = json.loads(raw) if raw else None
        if not 200 <= response.status < 300:
            payload = payload if isinstance(payload, dict) else {}
            raise KubeError(
                response.status,
                payload.get("reason", "Unknown"),
                payload.get("message", raw.decode(errors="replace") if raw else ""),
            )
        return payload

    def get(self, path: str, **query: str) -> Obj | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            obj: Obj = self.request("GET", path, query=query or None)
        except KubeError as e:
            if e.status == 404:
                return None
            raise
        return obj

    def list(self, path: str, **query: str) -> list[Obj]:
        items: list[Obj] = self.request("GET", path, query=query or None)["items"]
        return items

    def create(self, path: str, body: Obj) -> Obj | None:
        """Create; None when an object of that name already exists (creation is idempotent)."""
        try:
            obj: Obj = self.request("POST", path, body)
        except KubeError as e:
            if e.status == 409 and e.reason == "AlreadyExists":
                return None
            raise
        return obj

    def patch(self, path: str, body: Obj) -> Obj:
        obj: Obj = self.request("PATCH", path, body, content_type=MERGE_PATCH)
        return obj

    def delete(self, path: str, propagation: str = "Background") -> bool:
        """Delete; False when it was already gone."""
        try:
            self.request("DELETE", path, {"propagationPolicy": propagation})
        except KubeError as e:
            if e.status == 404:
                return False
            raise
        return True


def owner_reference(body: Obj, *, block_owner_deletion: bool = False) -> Obj:
    """An ownerReference to the DeploymentEmbedding ``body``: what it owns is garbage-collected
    with it. Blocking foreground deletion needs update rights on the owner's finalizers, so only
    the operator, which has them, asks for it."""
    meta = body["metadata"]
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": block_owner_deletion,
    }


def resource_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    path = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{quote(namespace)}/{names.PLURAL}"
    if name:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def group_path(group_version: str, namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/apis/{group_version}/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def post_event(
    kube: Kube, body: Obj, type_: str, reason: str, message: str, component: str
) -> None:
    """A core/v1 Event on the resource (what ``kubectl describe`` shows)."""
    from embedding_operator.api.status import now

    meta = body["metadata"]
    stamp = now()
    kube.create(
        core_path(meta["namespace"], "events"),
        {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": names.API_VERSION,
                "kind": names.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": os.environ.get("HOSTNAME", component),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        },
    )
