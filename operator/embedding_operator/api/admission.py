"""The ValidatingAdmissionPolicy shipped beside the CRD: a Running resource cannot be deleted.

Declarative, so no webhook server has to be up for the rule to hold. The namespace controller is
exempt: deleting a namespace must not hang on a run; its Jobs go with it.
"""

from __future__ import annotations

from typing import Any

from embedding_operator.api import names

POLICY_NAME = f"deny-delete-running.{names.GROUP}"


def build_admission_policy() -> list[dict[str, Any]]:
    """The policy and its binding."""
    labels = {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": POLICY_NAME, "labels": labels},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [names.GROUP],
                            "apiVersions": ["*"],
                            "operations": ["DELETE"],
                            "resources": [names.PLURAL],
                        }
                    ]
                },
                "matchConditions": [
                    {
                        "name": "not-namespace-deletion",
                        "expression": "request.userInfo.username != "
                        "'system:serviceaccount:kube-system:namespace-controller'",
                    }
                ],
                "validations": [
                    {
                        "expression": "!has(oldObject.status) || !has(oldObject.status.phase) || "
                        "oldObject.status.phase != 'Running'",
                        "messageExpression": "'DeploymentEmbedding ' + oldObject.metadata.name + "
                        "' is Running and cannot be deleted; cancel it first with the "
                        f"{names.CANCEL_ANNOTATION} annotation, or wait for it to finish'",
                        "reason": "Forbidden",
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": POLICY_NAME, "labels": labels},
            "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
        },
    ]
