# One image for the operator (`embedding-operator run`) and its worker Jobs
# (`embedding-operator worker ...`). Runs as a non-root user with a read-only root filesystem.
# Build: `docker build .` or `buildah bud .`. The tests build this same file with buildah on a
# stand-in for python:3.11-slim made from Debian 12's packages (docs/control-plane.md); BASE
# names another base with the same Python minor version.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# A virtual environment, copied whole to the final stage: its paths are the same on any base
# (the official image's Python lives in /usr/local, Debian's in /usr).
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# Then remove what the operator and the worker never import (checked by the image tests, which
# import every module of the package in the built image): voyageai's optional local-model and
# tokenizer stack (tokenizers, hf-xet), langchain-core's tracing client (langsmith and its
# compressor), the kubernetes client's asyncio copy (kube.py uses the sync client), and pip.
RUN /opt/venv/bin/pip install --no-cache-dir --no-compile . \
 && /opt/venv/bin/pip uninstall --yes --quiet tokenizers hf-xet langsmith zstandard \
 && rm -rf /opt/venv/lib/python3*/site-packages/kubernetes/aio \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/python -m pip uninstall --yes --quiet pip setuptools

FROM ${BASE}
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="embedding-operator" \
      org.opencontainers.image.description="Kubernetes operator for VoyageAI embedding jobs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/embedding-operator/embedding-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /opt/venv /opt/venv
# A name for uid 65532: kopf's peering id calls getpass.getuser(), which raises for a uid
# that /etc/passwd lacks (the operator crash-looped on a real kubelet without it).
RUN echo "nonroot:x:65532:65532:nonroot:/tmp:/usr/sbin/nologin" >> /etc/passwd \
 && echo "nonroot:x:65532:" >> /etc/group
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["embedding-operator"]
CMD ["run"]
