#!/usr/bin/env python3
"""Opens N keep-alive connections to a proxy, makes one request on each, then holds them idle.

Used by bench/run.sh (scenario idle-10k) to measure what idle keep-alive connections cost a proxy
in memory. Each connection sends `GET PATH HTTP/1.1`, reads the whole response (Content-Length or
chunked), then waits; a connection the server closes is counted as lost.

Protocol with the harness, on stdout, one line each:
    READY opened=N failed=F          all attempts are done; the connections are idle from now on
    ALIVE n                          after --settle seconds: how many are still open
The process then holds the connections until it receives SIGTERM/SIGINT.
"""

import argparse
import asyncio
import signal
import sys


async def read_response(reader):
    """Reads one HTTP/1.1 response; returns the status code. Raises on a closed or odd stream."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


class Pool:
    def __init__(self):
        self.alive = 0
        self.failed = 0
        self.writers = []


async def one(pool, host, port, path, gate, timeout):
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            await writer.drain()
            status = await asyncio.wait_for(read_response(reader), timeout)
            if status >= 400:
                raise RuntimeError(f"status {status}")
        except Exception as exc:  # noqa: BLE001 - any failure counts as a failed connection
            pool.failed += 1
            if pool.failed <= 3:
                print(f"idle_client: connection failed: {exc!r}", file=sys.stderr)
            return None
    pool.alive += 1
    pool.writers.append(writer)
    return reader


async def watch(pool, reader):
    """Waits until the server closes the connection (it should not while we hold it)."""
    try:
        await reader.read(1)
    except Exception:  # noqa: BLE001
        pass
    pool.alive -= 1


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("-n", "--connections", type=int, default=10000)
    parser.add_argument("--parallel", type=int, default=200, help="connection attempts in flight")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before ALIVE")
    parser.add_argument("--timeout", type=float, default=10.0, help="per connect and per response")
    args = parser.parse_args()

    pool = Pool()
    gate = asyncio.Semaphore(args.parallel)
    readers = await asyncio.gather(
        *(one(pool, args.host, args.port, args.path, gate, args.timeout) for _ in range(args.connections))
    )
    watchers = [asyncio.create_task(watch(pool, r)) for r in readers if r is not None]
    print(f"READY opened={pool.alive} failed={pool.failed}", flush=True)
    await asyncio.sleep(args.settle)
    print(f"ALIVE {pool.alive}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for w in pool.writers:
        w.close()
    for t in watchers:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main())
