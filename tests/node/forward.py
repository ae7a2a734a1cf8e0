"""TCP forwarder from the real node's network namespace to this machine's loopback.

``python -m tests.node.forward --netns=/run/netns/NAME IP:PORT=HOSTPORT ...`` listens on IP:PORT
inside the namespace (the ``kubernetes`` Service's cluster IP, the pods' gateway) and connects
each accepted connection to 127.0.0.1:HOSTPORT of the host. The listening sockets are created
while the thread is in the namespace (setns), then the thread returns to the host's namespace:
a socket keeps the namespace it was created in. The pods see the apiserver at the address their
in-cluster configuration names, as kube-proxy would route it; no address outside the node's
namespace is ever used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import socket

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listen_in(netns: str, addresses: list[tuple[str, int]]) -> list[socket.socket]:
    host = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        _setns(target)
        socks = []
        for ip, port in addresses:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
            s.listen(128)
            s.setblocking(False)
            socks.append(s)
        return socks
    finally:
        _setns(host)
        os.close(host)
        os.close(target)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


def _handler(host_port: int) -> object:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", host_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


async def serve(netns: str, routes: list[tuple[str, int, int]]) -> None:
    socks = listen_in(netns, [(ip, port) for ip, port, _ in routes])
    servers = [
        await asyncio.start_server(_handler(host_port), sock=s)  # type: ignore[arg-type]
        for s, (_, _, host_port) in zip(socks, routes, strict=True)
    ]
    print(
        "forwarding " + ", ".join(f"{ip}:{p} -> 127.0.0.1:{h}" for ip, p, h in routes), flush=True
    )
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.node.forward")
    parser.add_argument("--netns", required=True)
    parser.add_argument("routes", nargs="+", help="IP:PORT=HOSTPORT")
    args = parser.parse_args(argv)
    routes = []
    for route in args.routes:
        listen, host_port = route.split("=")
        ip, port = listen.rsplit(":", 1)
        routes.append((ip, int(port), int(host_port)))
    asyncio.run(serve(args.netns, routes))


if __name__ == "__main__":
    main()
