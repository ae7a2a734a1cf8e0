"""Escalation attempts a compromised operator might make with a worker Job, shared by the guard's
unit test (cel-python) and the threat-model test on the real control plane."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

GUARD = "embedding-operator guard: "
"""The prefix of every message of the chart's operator guard (templates/operator-guard.yaml)."""


def escalations(job: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Each escalation attempt: the Job, and the guard's message that must refuse it."""

    def change(edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> dict[str, Any]:
        out = copy.deepcopy(job)
        pod = out["spec"]["template"]["spec"]
        edit(pod, pod["containers"][0])
        return out

    unlabelled = copy.deepcopy(job)  # (an unlabelled Job takes its pods' labels by default)
    unlabelled["metadata"]["labels"] = unlabelled["spec"]["template"]["metadata"]["labels"] = {}
    return {
        "unlabelled": (unlabelled, "carry the labels"),
        "other-service-account": (
            change(lambda pod, _: pod.update(serviceAccountName="default")),
            "run as the ServiceAccount",
        ),
        "host-path": (
            change(
                lambda pod, c: (
                    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
                    c["volumeMounts"].append({"name": "host", "mountPath": "/host"}),
                )
            ),
            "emptyDir volumes only",
        ),
        "host-network": (
            change(lambda pod, _: pod.update(hostNetwork=True)),
            "may not use host namespaces",
        ),
        "privileged": (
            change(
                lambda _, c: c["securityContext"].update(
                    privileged=True, allowPrivilegeEscalation=True
                )
            ),
            "may not be privileged",
        ),
        "other-image": (
            change(lambda _, c: c.update(image="attacker/tool:latest")),
            "configured image",
        ),
        "node-name": (
            change(lambda pod, _: pod.update(nodeName="control-plane-1")),
            "scheduled as the chart's worker values say",
        ),
        "control-plane-toleration": (
            change(
                lambda pod, _: pod.update(
                    tolerations=[
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}
                    ]
                )
            ),
            "scheduled as the chart's worker values say",
        ),
        "critical-priority": (
            change(lambda pod, _: pod.update(priorityClassName="system-node-critical")),
            "scheduled as the chart's worker values say",
        ),
        "other-secret": (
            change(
                lambda _, c: c["env"][0]["valueFrom"]["secretKeyRef"].update(name="someone-else")
            ),
            "may read only its own API-key Secret",
        ),
    }
