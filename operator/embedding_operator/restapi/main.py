"""``embedding-operator api-server`` (flags in cli.py, after kube-apiserver's own): TLS, and the
two listeners (the API on ``--secure-port``, Prometheus metrics in plain HTTP on
``--metrics-port``)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import signal
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from embedding_operator.kube import Kube, core_path
from embedding_operator.restapi.auth import (
    CONFIGMAP_NAME,
    CONFIGMAP_NAMESPACE,
    RequestHeaderConfig,
    server_context,
)
from embedding_operator.restapi.server import RestApi, metrics_app

log = logging.getLogger("embedding_operator.restapi")

THREADS = 16
"""Concurrent calls to kube-apiserver (each request makes two or three)."""
FIELD_MANAGER = "embedding-operator-api-server"
"""Names the REST server's writes in managedFields."""


def requestheader_config(args: argparse.Namespace, kube: Kube) -> RequestHeaderConfig:
    if args.requestheader_client_ca_file:
        names = tuple(n for n in args.requestheader_allowed_names.split(",") if n)
        ca = Path(args.requestheader_client_ca_file).read_text()
        return RequestHeaderConfig(client_ca=ca, allowed_names=names)
    configmap = kube.get(core_path(CONFIGMAP_NAMESPACE, "configmaps", CONFIGMAP_NAME))
    if configmap is None:
        raise SystemExit(f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} not found")
    return RequestHeaderConfig.from_configmap(configmap.get("data") or {})


def serving_files(args: argparse.Namespace, kube: Kube, directory: str) -> tuple[str, str]:
    """The certificate and key files: the flags', or those of ``--tls-secret`` written to
    ``directory`` (``ssl`` loads only files). Reading the Secret through the API needs no volume
    and takes a renewed certificate (cert-manager) on restart."""
    if args.tls_secret:
        namespace, _, name = args.tls_secret.partition("/")
        secret = kube.get(core_path(namespace, "secrets", name)) if name else None
        data = (secret or {}).get("data") or {}
        if "tls.crt" not in data or "tls.key" not in data:
            raise SystemExit(f"--tls-secret {args.tls_secret}: no Secret with tls.crt and tls.key")
        paths = []
        for key in ("tls.crt", "tls.key"):
            path = os.path.join(directory, key)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(data[key]))
            paths.append(path)
        return paths[0], paths[1]
    if not (args.tls_cert_file and args.tls_private_key_file):
        raise SystemExit("give --tls-cert-file and --tls-private-key-file, or --tls-secret")
    return args.tls_cert_file, args.tls_private_key_file


async def serve(args: argparse.Namespace) -> None:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(THREADS))
    kube = Kube.from_environment(FIELD_MANAGER)
    config = requestheader_config(args, kube)
    api = RestApi(kube, config, args.max_request_bytes, tuple(args.namespaces))
    api.cache.start()
    with tempfile.TemporaryDirectory() as directory:
        context = server_context(*serving_files(args, kube, directory), config)
    runners = [web.AppRunner(api.app(), access_log=None)]
    if args.metrics_port:
        runners.append(web.AppRunner(metrics_app(), access_log=None))
    for runner in runners:
        await runner.setup()
    await web.TCPSite(runners[0], args.bind_address, args.secure_port, ssl_context=context).start()
    if args.metrics_port:
        await web.TCPSite(runners[1], args.bind_address, args.metrics_port).start()
    log.info("serving the REST API on https://%s:%s", args.bind_address, args.secure_port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        api.cache.stop()
        for runner in runners:
            await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0
