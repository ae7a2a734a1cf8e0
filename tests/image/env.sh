# Sourced by the image scripts: buildah and podman on the project's own container storage, so
# nothing lands in the machine's /var/lib/containers and `make clean` removes it all.
_store="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.cache/containers"
IMAGE_NAME=localhost/embedding-operator
bah() { buildah --root "$_store/storage" --runroot "$_store/run" --storage-driver overlay "$@"; }
