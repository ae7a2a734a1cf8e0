"""Discovery documents: what ``kubectl api-resources`` and the aggregator's availability check
read. The REST paths are not Kubernetes objects, so the resource carries only the verbs the seed's
paths map to; ``kubectl get --raw`` and ``kubectl create --raw`` reach them."""

from __future__ import annotations

from typing import Any

from embedding_operator.api import names

RESOURCE = "deployment-embeddings"
GROUP_VERSION = f"{names.AGGREGATED_GROUP}/{names.AGGREGATED_VERSION}"
PREFIX = f"/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{RESOURCE}"


def _version() -> dict[str, str]:
    return {"groupVersion": GROUP_VERSION, "version": names.AGGREGATED_VERSION}


def api_group() -> dict[str, Any]:
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": names.AGGREGATED_GROUP,
        "versions": [_version()],
        "preferredVersion": _version(),
    }


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}


def api_resource_list() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": RESOURCE,
                "singularName": "deployment-embedding",
                "namespaced": True,
                "kind": names.KIND,
                "verbs": ["create", "delete", "get", "list", "update"],
            },
            {
                "name": f"{RESOURCE}/run",
                "singularName": "",
                "namespaced": True,
                "kind": names.KIND,
                "verbs": ["create"],
            },
        ],
    }
