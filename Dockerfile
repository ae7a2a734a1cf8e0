# One image for the operator (`embedding-operator run`) and its worker Jobs
# (`embedding-operator worker ...`). Runs as a non-root user with a read-only root filesystem.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="embedding-operator" \
      org.opencontainers.image.description="Kubernetes operator for VoyageAI embedding jobs" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /install /usr/local
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["embedding-operator"]
CMD ["run"]
