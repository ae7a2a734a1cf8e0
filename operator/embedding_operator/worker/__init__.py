"""What runs in a Job's pod: ``embedding-operator worker``. Never imports kopf."""

from embedding_operator.worker.main import run_worker

__all__ = ["run_worker"]
