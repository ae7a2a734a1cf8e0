"""The aggregated REST API (``embedding-operator api-server``): the seed service's paths over the
DeploymentEmbedding resources, behind Kubernetes authentication and RBAC.

It may use ``api/``, ``storage/`` and ``kube.py``; it never imports the controller, nor the
controller it (tests/unit/test_layers.py).
"""
