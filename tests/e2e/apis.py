"""The kubernetes client's API classes, typed ``Any``: the tests send plain dicts as bodies,
which the client accepts but its generated annotations (model objects) don't."""

from __future__ import annotations

from typing import Any

from kubernetes import client


def CoreV1Api(api: Any) -> Any:
    return client.CoreV1Api(api)


def BatchV1Api(api: Any) -> Any:
    return client.BatchV1Api(api)


def RbacAuthorizationV1Api(api: Any) -> Any:
    return client.RbacAuthorizationV1Api(api)


def ApiextensionsV1Api(api: Any) -> Any:
    return client.ApiextensionsV1Api(api)


def CustomObjectsApi(api: Any) -> Any:
    return client.CustomObjectsApi(api)


def AdmissionregistrationV1Api(api: Any) -> Any:
    return client.AdmissionregistrationV1Api(api)


def ApiregistrationV1Api(api: Any) -> Any:
    return client.ApiregistrationV1Api(api)
