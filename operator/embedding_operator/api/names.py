"""Fixed names of the API (docs/api.md): tests, docs and manifests depend on them."""

import hashlib
from typing import Final

GROUP: Final = "embedding-operator.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "DeploymentEmbedding"
PLURAL: Final = "deploymentembeddings"
SINGULAR: Final = "deploymentembedding"
SHORT_NAME: Final = "demb"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

RUN_ANNOTATION: Final = f"{GROUP}/run-requested-at"
CANCEL_ANNOTATION: Final = f"{GROUP}/cancel-requested-at"
ATTEMPT_ANNOTATION: Final = f"{GROUP}/attempt"
"""On a Job: which attempt (``status.runCount``) of its resource it runs."""

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "embedding-operator"
OWNER_LABEL: Final = f"{GROUP}/deployment-embedding"

AGGREGATED_GROUP: Final = "api.embedding-operator.dev"
AGGREGATED_VERSION: Final = "v1alpha1"

DEFAULT_API_KEY_SECRET: Final = "voyage-api-key"
"""Secret read when ``spec.apiKeySecretRef`` is absent (same namespace as the resource)."""
DEFAULT_API_KEY_SECRET_KEY: Final = "api-key"

MAX_NAME_LENGTH: Final = 63
NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def job_name(name: str, uid: str, run_request: str, attempt: int) -> str:
    """The Job of one run: attempt number ``attempt`` (``status.runCount`` + 1 when it starts) of
    the resource with ``uid``, requested by ``run_request``.

    Deterministic, so a restarted operator finds the Job it created (it creates the Job first and
    records the run second) instead of making a second one, and a worker can tell that its run is
    the current request. The attempt number makes every accepted request a new name: going back
    to an earlier annotation value is a new run, never the old, finished Job. At most 63
    characters, since it becomes a pod label value.
    """
    digest = hashlib.sha256(f"{uid}/{attempt}/{run_request}".encode()).hexdigest()[:10]
    return f"{name[: MAX_NAME_LENGTH - 11].rstrip('-')}-{digest}"
