"""embedding-operator: VoyageAI embedding jobs declared as Kubernetes custom resources.

The package is layered so that dependencies point one way:

- ``api``        DeploymentEmbedding types, model catalog, generated CRD (imports nothing else)
- ``voyage``     Voyage client layer: batching, rate limits, retries (knows nothing of Kubernetes)
- ``storage``    result encodings and stores (inline in status, chunked ConfigMaps)
- ``worker``     what runs inside a Job's pod (never imports kopf)
- ``controller`` the kopf operator that turns run requests into Jobs and Job outcomes into status
"""

__version__ = "0.1.0"
