"""TCP forwarding into a network namespace, so a host service appears inside it.

The one-node cluster (:mod:`edgefleet.testing.node`) runs kubelet, containerd and pods
in a network namespace of their own; the API server and the OCI registry stay on the
host's loopback. This forwarder listens *inside* the namespace (its listening sockets
are made after ``setns(2)`` into it) and connects *on the host* (sockets made after
switching back), so ``127.0.0.1:<registry port>`` means the same registry on both
sides and nothing is added to the host's interfaces or routes.

    python -m edgefleet.testing.nsforward --netns /proc/<pid>/ns/net \\
        127.0.0.1:6443=127.0.0.1:6443 10.88.0.1:6443=127.0.0.1:6443

It prints ``ready`` once every listener is bound, and exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys

__all__ = ["main"]

_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def listen_in(netns: str, addresses: list[tuple[str, int]]) -> list[socket.socket]:
    """Listening sockets bound inside the namespace at ``netns`` (a path to its file)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            sockets = []
            for host, port in addresses:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
                s.listen(512)
                s.setblocking(False)
                sockets.append(s)
            return sockets
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(target)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


async def _serve(listener: socket.socket, upstream: tuple[str, int]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return await asyncio.start_server(handle, sock=listener)


async def _run(pairs: list[tuple[socket.socket, tuple[str, int]]]) -> None:
    servers = [await _serve(listener, upstream) for listener, upstream in pairs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nsforward", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--netns", required=True, help="path of the namespace, e.g. /proc/PID/ns/net"
    )
    parser.add_argument("forward", nargs="+", help="INSIDE_HOST:PORT=HOST_HOST:PORT")
    args = parser.parse_args(argv)
    inside, upstream = [], []
    for spec in args.forward:
        left, _, right = spec.partition("=")
        inside.append(_endpoint(left))
        upstream.append(_endpoint(right))
    listeners = listen_in(args.netns, inside)
    asyncio.run(_run(list(zip(listeners, upstream, strict=True))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
