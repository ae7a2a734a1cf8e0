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
import ssl
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from embedding_operator import memory
from embedding_operator.kube import Kube, KubeError, core_path
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


RELOAD_SECONDS = 30.0
"""How often the front-proxy trust and the serving certificate are read again."""


def requestheader_config(args: argparse.Namespace, kube: Kube) -> RequestHeaderConfig:
    if args.requestheader_client_ca_file:
        names = tuple(n for n in args.requestheader_allowed_names.split(",") if n)
        ca = Path(args.requestheader_client_ca_file).read_text()
        return RequestHeaderConfig(client_ca=ca, allowed_names=names)
    configmap = kube.get(core_path(CONFIGMAP_NAMESPACE, "configmaps", CONFIGMAP_NAME))
    if configmap is None:
        raise RuntimeError(f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} not found")
    return RequestHeaderConfig.from_configmap(configmap.get("data") or {})


def serving_pems(args: argparse.Namespace, kube: Kube) -> tuple[bytes, bytes]:
    """The certificate and key: the files of the flags, or the ``--tls-secret``'s (read through
    the API: no volume needed)."""
    if args.tls_secret:
        namespace, _, name = args.tls_secret.partition("/")
        secret = kube.get(core_path(namespace, "secrets", name)) if name else None
        data = (secret or {}).get("data") or {}
        if "tls.crt" not in data or "tls.key" not in data:
            raise RuntimeError(f"--tls-secret {args.tls_secret}: no Secret with tls.crt, tls.key")
        return base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])
    if not (args.tls_cert_file and args.tls_private_key_file):
        raise RuntimeError("give --tls-cert-file and --tls-private-key-file, or --tls-secret")
    return Path(args.tls_cert_file).read_bytes(), Path(args.tls_private_key_file).read_bytes()


Material = tuple[RequestHeaderConfig, bytes, bytes]
"""What TLS is made of: the front-proxy trust, the serving certificate and its key."""


def tls_context(material: Material) -> ssl.SSLContext:
    config, cert, key = material
    with tempfile.TemporaryDirectory() as directory:  # ssl loads only files
        paths = []
        for name, pem in (("tls.crt", cert), ("tls.key", key)):
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            paths.append(path)
        return server_context(paths[0], paths[1], config)


class ReloadingTls:
    """TLS that follows a rotated front-proxy CA (the ConfigMap kube-apiserver keeps current)
    and a renewed serving certificate (cert-manager's, or new files) without a restart.

    The listening context hands every handshake, at its start (the SNI callback, which OpenSSL
    runs with or without SNI), the context built from the newest material: its certificate and
    its CA are the ones in force. The requestheader settings of the server change with it, so
    headers are trusted by the same rules that verified the certificate."""

    def __init__(self, read: Callable[[], Material], api: RestApi) -> None:
        self.read = read
        self.api = api
        self.material = read()
        self.current = tls_context(self.material)
        self.api.requestheader = self.material[0]
        self.listening = tls_context(self.material)
        self.listening.sni_callback = self._pick

    def _pick(self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        connection.context = self.current

    def reload(self) -> bool:
        """Read the material again; True when it changed and is now in force. Material that
        does not load (a half-written Secret, a bad PEM) leaves the current one in force."""
        material = self.read()
        if material == self.material:
            return False
        context = tls_context(material)
        self.material, self.current = material, context
        self.api.requestheader = material[0]
        return True

    async def follow(self, interval: float = RELOAD_SECONDS) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                if await asyncio.to_thread(self.reload):
                    log.info("new TLS material in force (front-proxy CA or serving certificate)")
            except (RuntimeError, ValueError, OSError, ssl.SSLError, KubeError) as e:
                log.warning("TLS material not reloaded, the current one stays: %s", e)


async def serve(args: argparse.Namespace) -> None:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(THREADS))
    kube = Kube.from_environment(FIELD_MANAGER)
    api = RestApi(kube, RequestHeaderConfig(""), args.max_request_bytes, tuple(args.namespaces))
    tls = ReloadingTls(lambda: (requestheader_config(args, kube), *serving_pems(args, kube)), api)
    api.cache.start()
    reloading = asyncio.create_task(tls.follow())
    runners = [web.AppRunner(api.app(), access_log=None)]
    if args.metrics_port:
        runners.append(web.AppRunner(metrics_app(), access_log=None))
    for runner in runners:
        await runner.setup()
    site = web.TCPSite(runners[0], args.bind_address, args.secure_port, ssl_context=tls.listening)
    await site.start()
    if args.metrics_port:
        await web.TCPSite(runners[1], args.bind_address, args.metrics_port).start()
    log.info("serving the REST API on https://%s:%s", args.bind_address, args.secure_port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        reloading.cancel()
        api.cache.stop()
        for runner in runners:
            await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    memory.give_back()  # lists of every resource come and go with each request
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args))
    except (RuntimeError, ValueError) as e:
        log.error("cannot serve: %s", e)
        return 1
    return 0
