"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) plus a
process kubelet, for the tests and the demo. See docs/control-plane.md."""

from tests.cluster.harness import Cluster, ClusterError, ensure_binaries

__all__ = ["Cluster", "ClusterError", "ensure_binaries"]
