"""The operator: kopf handlers (``handlers``) around a level-based reconcile (``loop``) whose
decisions are a pure function (``reconcile.plan``) and whose objects come from pure builders
(``objects``)."""

from __future__ import annotations


def run(namespaces: list[str], liveness_port: int, metrics_port: int) -> None:
    """Run the operator until it is stopped (SIGINT/SIGTERM)."""
    import kopf
    from prometheus_client import start_http_server

    from embedding_operator.controller import handlers  # noqa: F401 (registers the handlers)

    if metrics_port:
        start_http_server(metrics_port)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        memo=kopf.Memo(namespaces=namespaces),
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
    )
