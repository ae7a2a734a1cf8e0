"""Every operator-wide setting in one registry: name, type, default, bounds, worker or not.

The operator, the Voyage layer and the result stores read their settings through :func:`read`;
the operator hands the ``worker`` ones on to every Job (:data:`WORKER_SETTINGS`); the Helm chart's
``env`` and the tables in docs/operator.md are checked against this registry by
``tests/unit/test_settings.py``. A leaf module: it imports nothing of the package but its
version, so every layer may use it.

A value that does not parse is a :class:`SettingError` naming the variable: in the worker that is
a permanent failure (retrying the pod cannot fix the operator's environment). Integers accept
whole-valued floats such as ``1.6e+07`` (Helm renders large whole numbers from a values file that
way) and refuse fractions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from embedding_operator import __version__

Value = int | float | str | None

CONFIGMAP_LIMIT = 1024 * 1024


class SettingError(ValueError):
    """A setting's value is not one it can take; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    """One environment variable of the operator."""

    name: str
    type: type[int] | type[float] | type[str]
    default: Value
    """The value when unset or empty (None: the code's own fallback, e.g. the model catalog)."""
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    worker: bool = False
    """Handed on to every worker pod (never a secret: the API key comes only from a Secret)."""
    chart: str | None = None
    """The chart value that sets it (``values.yaml`` path), if the chart exposes it."""


OPERATOR: Final = (
    Setting(
        "EMBEDDING_OPERATOR_IMAGE",
        str,
        f"embedding-operator:{__version__}",
        "image of the worker Jobs",
        chart="image.repository + image.tag",
    ),
    Setting(
        "EMBEDDING_OPERATOR_IMAGE_PULL_POLICY",
        str,
        "IfNotPresent",
        "pull policy of the worker Jobs' image",
        choices=("Always", "IfNotPresent", "Never"),
        chart="image.pullPolicy",
    ),
    Setting(
        "EMBEDDING_OPERATOR_WORKER_SERVICE_ACCOUNT",
        str,
        "embedding-operator-worker",
        "the workers' ServiceAccount, created per namespace",
        chart="operator.workerServiceAccount",
    ),
    Setting(
        "EMBEDDING_OPERATOR_WORKER_CLUSTER_ROLE",
        str,
        "embedding-operator-worker",
        "the chart's ClusterRole of worker rights, bound per namespace",
        chart="the release's worker ClusterRole",
    ),
    Setting(
        "EMBEDDING_OPERATOR_WORKER_EXTRA_ENV",
        str,
        None,
        "a JSON object of further worker environment (HTTPS_PROXY, say)",
        chart="worker.extraEnv",
    ),
    Setting(
        "EMBEDDING_OPERATOR_WORKER_POD_SPEC",
        str,
        None,
        "a JSON object of worker pod scheduling and pull secrets",
        chart="worker.nodeSelector, tolerations, affinity, priorityClassName, imagePullSecrets",
    ),
    Setting(
        "EMBEDDING_OPERATOR_RESYNC_SECONDS",
        float,
        30.0,
        "periodic reconcile of resources with work left",
        minimum=1,
        chart="operator.resyncSeconds",
    ),
    Setting(
        "EMBEDDING_OPERATOR_POD_START_TIMEOUT_SECONDS",
        float,
        120.0,
        "a worker pod not started by then fails the run",
        minimum=1,
        chart="operator.podStartTimeoutSeconds",
    ),
    Setting(
        "EMBEDDING_OPERATOR_LEASE_NAMESPACE",
        str,
        None,
        "namespace of the leader-election Lease (unset: no leader election, one replica only)",
        chart="the release's namespace",
    ),
    Setting(
        "EMBEDDING_OPERATOR_LEASE_NAME",
        str,
        "embedding-operator",
        "name of the leader-election Lease",
        chart="the release's full name",
    ),
    Setting(
        "EMBEDDING_OPERATOR_LEASE_DURATION_SECONDS",
        int,
        8,
        "a standby takes over a Lease not renewed for this long (handover after a crash)",
        minimum=2,
        chart="leaderElection.leaseDurationSeconds",
    ),
    Setting(
        "EMBEDDING_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS",
        float,
        5.0,
        "the leader exits when it could not renew for this long (under the duration)",
        minimum=0.5,
        chart="leaderElection.renewDeadlineSeconds",
    ),
    Setting(
        "EMBEDDING_OPERATOR_LEASE_RETRY_PERIOD_SECONDS",
        float,
        2.0,
        "how often the leader renews and a standby tries to acquire",
        minimum=0.1,
        chart="leaderElection.retryPeriodSeconds",
    ),
)

WORKER: Final = (
    Setting(
        "EMBEDDING_OPERATOR_LOG_FORMAT",
        str,
        "text",
        "log lines as text or one JSON object per line",
        choices=("text", "json"),
        worker=True,
        chart="logFormat",
    ),
    Setting(
        "VOYAGE_BASE_URL",
        str,
        None,
        "Voyage API base URL including /v1 (default: Voyage's own)",
        worker=True,
        chart="voyage.baseURL",
    ),
    Setting(
        "VOYAGE_TIMEOUT_SECONDS",
        float,
        120.0,
        "timeout of one request",
        minimum=0.001,
        worker=True,
        chart="voyage.timeoutSeconds",
    ),
    Setting(
        "VOYAGE_MAX_ATTEMPTS",
        int,
        8,
        "attempts per batch, the first included",
        minimum=1,
        worker=True,
        chart="voyage.maxAttempts",
    ),
    Setting(
        "VOYAGE_MAX_RETRY_SECONDS",
        float,
        600.0,
        "no new attempt of a batch after this long",
        minimum=0.001,
        worker=True,
    ),
    Setting(
        "EMBEDDING_OPERATOR_RPM",
        int,
        None,
        "requests per minute for every resource (default: the model catalog's tier 1)",
        minimum=1,
        worker=True,
        chart="voyage.requestsPerMinute",
    ),
    Setting(
        "EMBEDDING_OPERATOR_TPM",
        int,
        None,
        "tokens per minute for every resource (default: the model catalog's tier 1)",
        minimum=1,
        worker=True,
        chart="voyage.tokensPerMinute",
    ),
    Setting(
        "EMBEDDING_OPERATOR_CONCURRENCY",
        int,
        8,
        "requests in flight per run",
        minimum=1,
        worker=True,
        chart="voyage.concurrency",
    ),
    Setting(
        "EMBEDDING_OPERATOR_INLINE_MAX_BYTES",
        int,
        64 * 1024,
        "largest result kept in the status (its base64); larger ones go to ConfigMaps",
        minimum=0,
        worker=True,
        chart="storage.inlineMaxBytes",
    ),
    Setting(
        "EMBEDDING_OPERATOR_CHUNK_BYTES",
        int,
        768 * 1024,
        "bytes per result ConfigMap (room left under the 1 MiB ConfigMap limit)",
        minimum=1,
        maximum=CONFIGMAP_LIMIT - 64 * 1024,
        worker=True,
        chart="storage.chunkBytes",
    ),
    Setting(
        "EMBEDDING_OPERATOR_MAX_RESULT_BYTES",
        int,
        96 * 1024 * 1024,
        "largest chunked result; a larger one fails before the first request",
        minimum=0,
        worker=True,
        chart="storage.maxResultBytes",
    ),
)

REGISTRY: Final = {s.name: s for s in OPERATOR + WORKER}
WORKER_SETTINGS: Final = tuple(s.name for s in WORKER)
"""Operator environment handed on to every worker pod."""


def parse(setting: Setting, text: str) -> Value:
    """``text`` as ``setting``'s type, within its bounds; SettingError naming it otherwise."""
    text = text.strip()
    if not text:
        return setting.default
    if setting.type is str:
        if setting.choices and text not in setting.choices:
            allowed = ", ".join(setting.choices)
            raise SettingError(f"{setting.name} must be one of {allowed}, not {text!r}")
        return text
    what = "a whole number" if setting.type is int else "a number"
    try:
        number = float(text)
    except ValueError:
        raise SettingError(f"{setting.name} must be {what}, not {text!r}") from None
    if not math.isfinite(number) or (setting.type is int and not number.is_integer()):
        raise SettingError(f"{setting.name} must be {what}, not {text!r}")
    value: int | float = int(number) if setting.type is int else number
    low, high = setting.minimum, setting.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = " and ".join(
            f"{word} {_plain(bound)}"
            for word, bound in (("at least", low), ("at most", high))
            if bound is not None
        )
        raise SettingError(f"{setting.name} must be {bounds}, not {text!r}")
    return value


def read(name: str, env: Mapping[str, str] | None = None) -> Value:
    """The value of setting ``name`` in ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    return parse(REGISTRY[name], env.get(name, ""))


def integer(name: str, env: Mapping[str, str] | None = None) -> int | None:
    """An ``int`` setting (None when unset and without a default)."""
    value = read(name, env)
    assert value is None or isinstance(value, int), name
    return value


def number(name: str, env: Mapping[str, str] | None = None) -> float | None:
    """A ``float`` setting (None when unset and without a default)."""
    value = read(name, env)
    assert value is None or isinstance(value, float), name
    return value


def string(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A ``str`` setting (None when unset and without a default)."""
    value = read(name, env)
    assert value is None or isinstance(value, str), name
    return value


def default(name: str) -> int | float | str:
    """The default of a setting that has one (for dataclass fields)."""
    value = REGISTRY[name].default
    assert value is not None, name
    return value


def check_all(names: tuple[str, ...], env: Mapping[str, str] | None = None) -> None:
    """Parse every setting in ``names`` now, so a bad one fails before any work starts."""
    for name in names:
        read(name, env)


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)
