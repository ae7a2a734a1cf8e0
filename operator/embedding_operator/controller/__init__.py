"""The operator: kopf handlers (``handlers``) around a level-based reconcile (``loop``) whose
decisions are a pure function (``reconcile.plan``) and whose objects come from pure builders
(``objects``)."""

from __future__ import annotations


def run(namespaces: list[str], liveness_port: int, metrics_port: int) -> None:
    """Run the operator until it is stopped (SIGINT/SIGTERM)."""
    import kopf
    from prometheus_client import start_http_server

    from embedding_operator import memory
    from embedding_operator.controller import handlers  # noqa: F401 (registers the handlers)
    from embedding_operator.controller.leader import Election, leadership

    election = Election.from_env()  # a bad setting stops the process before anything starts
    memory.give_back()  # a burst's memory goes back to the system afterwards
    if metrics_port:
        start_http_server(metrics_port)
    # kopf starts (watches, reconciles) only once this replica leads; a standby waits here.
    with leadership(election, liveness_port) as elector:
        if elector:
            # After handlers' own cleanup (kopf runs them in registration order): the queue
            # has stopped, so the Lease can go now rather than after kopf's wind-down (up to 5 s
            # of waiting for its remaining tasks).
            kopf.on.cleanup(id="release_lease")(lambda **_: elector.release())
        kopf.run(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            memo=kopf.Memo(namespaces=namespaces),
            liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
        )
