#!/usr/bin/env python3
"""The demo and test backend: one Tornado process of the pool gale balances over.

Run one per port, as supervisord would in the reference deployment:

    python tests/tornado/app.py --port 8000 --name tornado-8000

`--port 0` lets the OS pick the port; the real port is printed as one line on stdout
once the socket is bound, so a test harness can read it. Logs go to stderr.

The server runs with `xheaders=True` (as behind nginx), so `request.remote_ip` and
`request.protocol` come from X-Real-IP / X-Scheme: /whoami reports them, which is how the
tests check that gale overwrites those headers whatever the client sent.

Handlers (every one accepts any method):
  /             the demo's page: names this process and links to each part of the deployment
                (examples/tornado-site.toml: balancing, static files, gzip, uploads, header policy)
  /form         the demo's upload form (it posts to /upload, gale's upload location)
  /upload       what the form's upload comes to after gale: an HTML page of the fields gale
                passed (`<field>.name`, `.content_type`, `.path`, `.md5`, `.size`, the passed
                text fields) and whether the stored file matches them; the file is then deleted
  /whoami       (also /any/prefix/whoami) JSON: port, pid, name, remote_ip, protocol, host,
                method, uri, headers, body_length, peer_port (the client port of the
                connection: tells whether gale reused an upstream keep-alive connection)
  /slow?s=N     sleeps N seconds (asynchronously) then answers JSON
  /die          os._exit(1) before answering: a "query of death"
  /echo         md5 and length of the request body; /echo?back=1 returns the body itself
  /upload-answer?status=N[&delay=S]   the backend of an upload location: parses the form gale
                forwarded (Tornado's own multipart parser), opens every `<field>.path`, checks
                md5 and size against `.md5` / `.size`, then waits S seconds and answers status N
                with a JSON report (fields, files with their checks and mode)
  /html?n=N     exactly N bytes of a fixed text/html page (the gzip tests)
  /big?n=N      N bytes of a fixed pattern (byte i is i % 251); &chunked=1 streams it chunked;
                &die_after=M sends the head and M bytes, then exits (a response cut short);
                &stall_after=M&stall=S pauses S seconds after every M bytes (a slow backend)
  /redirect?to=URL   302 to URL (gale must not rewrite Location)
  /ws           (also /any/prefix/ws) WebSocket echo (text and binary); the text "__whoami__"
                answers JSON (protocol, host, remote_ip), "__close__" makes the server close;
                opens and closes are counted in /stats as hits "ws-open" / "ws-close", open
                ones as inflight "ws"
  /ws-refuse    refuses every request, WebSocket handshakes included: 403 with a body
  /health       the health-check endpoint: 200 "ok" unless /health-set changed it; the Host it
                got is kept for /stats (health_host)
  /health-set?status=N[&delay=S]   from now on /health waits S seconds, then answers status N
                (the tests flip a backend's health with it, directly, not through gale)
  /stats        hits and in-flight requests per path, distinct peer connections, open connections
                (this one included) (never counted)
"""

import argparse
import asyncio
import collections
import hashlib
import html
import json
import logging
import os
import stat
import sys

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web
import tornado.websocket

# Per-process counters the tests read through /stats (directly, not through gale).
HITS = collections.Counter()
INFLIGHT = collections.Counter()
PEERS = set()

PATTERN = bytes(range(251))

ANY_METHOD = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")


def pattern(n):
    """n bytes of the pattern byte[i] = i % 251 (a proxy that drops or reorders bytes shows)."""
    reps = n // len(PATTERN) + 1
    return (PATTERN * reps)[:n]


class Base(tornado.web.RequestHandler):
    """Counts hits and in-flight requests, answers every method the same way."""

    SUPPORTED_METHODS = ANY_METHOD

    def prepare(self):
        HITS[self.request.path] += 1
        INFLIGHT[self.request.path] += 1
        PEERS.add(self.peer())

    def on_finish(self):
        INFLIGHT[self.request.path] -= 1

    def peer(self):
        try:
            return self.request.connection.stream.socket.getpeername()
        except (AttributeError, OSError):
            return None

    def write_json(self, obj):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))

    def identity(self):
        app = self.application.settings
        return {"port": app["port"], "pid": os.getpid(), "name": app["name"]}

    async def get(self, *args):
        await self.handle(*args)

    async def post(self, *args):
        await self.handle(*args)

    async def put(self, *args):
        await self.handle(*args)

    async def delete(self, *args):
        await self.handle(*args)

    async def patch(self, *args):
        await self.handle(*args)

    async def options(self, *args):
        await self.handle(*args)

    async def head(self, *args):
        await self.handle(*args)


def page(title, body):
    """A page of the demo, with the site's style sheet (served by gale, cached: versioned)."""
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>"
        '<link rel="stylesheet" href="/static/app.css?v=1"></head><body>'
        f"{body}</body></html>"
    )


class Index(Base):
    async def handle(self):
        who = self.identity()
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            page(
                "gale demo",
                f"<h1>Hello from {who['name']}</h1>"
                f"<p>Tornado process {who['pid']} on port {who['port']} answered this request, "
                f"proxied by gale. Your address as Tornado sees it: "
                f"{html.escape(self.request.remote_ip or '')} "
                f"({html.escape(self.request.protocol)}).</p>"
                "<h2>What gale does here</h2><ul>"
                '<li id="balancing"><a href="/">Balancing</a>: reload this page, the four '
                "Tornado processes gale started answer in turn.</li>"
                '<li id="static"><a href="/static/app.css?v=1">/static/app.css?v=1</a>: a static '
                "file gale serves itself; a versioned URL gets <code>Expires</code> and "
                "<code>Cache-Control: max-age=315360000</code> (the static-cache plugin), "
                '<a href="/static/app.css">/static/app.css</a> without a query does not.</li>'
                '<li id="gzip"><a href="/html?n=5000">/html?n=5000</a>: gale compresses text '
                "(<code>Content-Encoding: gzip</code>) for clients that accept it, this page "
                "and the style sheet too; answers under 1000 bytes stay as they are.</li>"
                '<li id="upload"><a href="/form">Upload a file</a>: gale receives the form, '
                "stores the file and sends Tornado only its name, content type, path, md5 and "
                "size.</li>"
                '<li id="header-policy">Header policy: every answer from Tornado carries '
                "<code>X-Frame-Options: SAMEORIGIN</code>, added by the header-policy plugin, "
                'and <a href="/robots.txt">/robots.txt</a> is answered 404 by it before Tornado '
                "sees the request.</li>"
                '<li><a href="/whoami">/whoami</a> shows everything this process received.</li>'
                "</ul>",
            )
        )


class Form(Base):
    async def handle(self):
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            page(
                "gale demo: upload",
                "<h1>Upload a file</h1>"
                '<form action="/upload" method="post" enctype="multipart/form-data">'
                '<p><input type="file" name="file"></p>'
                '<p>Description: <input type="text" name="description"></p>'
                '<p><input type="submit" name="submit" value="Upload"></p></form>'
                '<p class="note">gale stores the file (the upload location of '
                "examples/tornado-site.toml) and passes Tornado a short form instead: the "
                "file's name, content type, path, md5 and size, plus the description.</p>"
                '<p><a href="/">Back</a></p>',
            )
        )


class Uploaded(Base):
    """The demo's `/upload` handler: the form gale passed, shown as it came."""

    async def handle(self):
        args = self.request.body_arguments
        rows = "".join(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(v.decode('utf-8', 'replace'))}</td></tr>"
            for name, values in args.items()
            for v in values
        )
        checks = []
        for name, paths in args.items():
            if not name.endswith(".path"):
                continue
            field = name[: -len(".path")]
            for i, raw in enumerate(paths):
                path = raw.decode("utf-8", "surrogateescape")
                md5 = args.get(field + ".md5", [b""] * (i + 1))[i].decode("ascii", "replace")
                size = args.get(field + ".size", [b"-1"] * (i + 1))[i].decode("ascii", "replace")
                # Only a regular file is read (a path sent straight to Tornado, not through
                # gale, could name a device), in pieces, and never deleted: a real application
                # moves it to its place; the demo's stay in the store (examples/uploads).
                try:
                    if not stat.S_ISREG(os.lstat(path).st_mode):
                        raise OSError(f"{path} is not a regular file")
                    digest, length = hashlib.md5(), 0
                    with open(path, "rb") as f:
                        while piece := f.read(1 << 16):
                            digest.update(piece)
                            length += len(piece)
                except OSError as e:
                    checks.append(f'<li class="bad">{html.escape(field)}: {html.escape(str(e))}</li>')
                    continue
                ok = digest.hexdigest() == md5 and str(length) == size
                checks.append(
                    f'<li class="{"ok" if ok else "bad"}">{html.escape(field)}: Tornado read '
                    f"{length} bytes from the stored file, md5 "
                    f"{'matches' if ok else 'DOES NOT match'}.</li>"
                )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            page(
                "gale demo: uploaded",
                "<h1>What gale passed to Tornado</h1>"
                f"<table>{rows}</table><ul>{''.join(checks)}</ul>"
                f"<p class=\"note\">Answered by {self.identity()['name']}.</p>"
                '<p><a href="/form">Upload another</a> · <a href="/">Back</a></p>',
            )
        )


class Whoami(Base):
    async def handle(self):
        req = self.request
        headers = collections.defaultdict(list)
        for name, value in req.headers.get_all():
            headers[name].append(value)
        peer = self.peer()
        self.write_json(
            dict(
                self.identity(),
                remote_ip=req.remote_ip,
                protocol=req.protocol,
                host=req.host,
                method=req.method,
                uri=req.uri,
                version=req.version,
                headers=headers,
                body_length=len(req.body),
                peer_port=peer[1] if peer else None,
            )
        )


class Slow(Base):
    async def handle(self):
        seconds = float(self.get_argument("s", "1"))
        await asyncio.sleep(seconds)
        self.write_json(dict(self.identity(), slept=seconds))


class Die(Base):
    async def handle(self):
        logging.warning("query of death: exiting without answering")
        sys.stderr.flush()
        os._exit(1)


class Echo(Base):
    async def handle(self):
        body = self.request.body
        if self.get_argument("back", "0") == "1":
            self.set_header("Content-Type", "application/octet-stream")
            self.finish(body)
            return
        self.write_json(
            dict(
                self.identity(),
                method=self.request.method,
                length=len(body),
                md5=hashlib.md5(body).hexdigest(),
            )
        )


class UploadAnswer(Base):
    """What a Tornado app behind the reference configuration's `/upload` location does with the form it gets."""

    async def handle(self):
        status = int(self.get_query_argument("status", "200"))
        delay = float(self.get_query_argument("delay", "0"))
        args = self.request.body_arguments
        files = []
        for name, paths in args.items():
            if not name.endswith(".path"):
                continue
            field = name[: -len(".path")]
            for i, raw in enumerate(paths):
                path = raw.decode("utf-8", "surrogateescape")
                report = {
                    "field": field,
                    "path": path,
                    "name": args.get(field + ".name", [b""] * (i + 1))[i].decode("utf-8", "replace"),
                    "md5": args.get(field + ".md5", [b""] * (i + 1))[i].decode(),
                    "size": int(args.get(field + ".size", [b"-1"] * (i + 1))[i]),
                }
                try:
                    st = os.lstat(path)
                    with open(path, "rb") as f:
                        data = f.read()
                    report.update(
                        exists=True,
                        mode=f"{st.st_mode & 0o7777:04o}",
                        actual_md5=hashlib.md5(data).hexdigest(),
                        actual_size=len(data),
                    )
                except OSError as e:
                    report.update(exists=False, error=str(e))
                report["ok"] = report.get("actual_md5") == report["md5"] and report.get(
                    "actual_size"
                ) == report["size"]
                files.append(report)
        fields = {
            name: [v.decode("utf-8", "replace") for v in values] for name, values in args.items()
        }
        if delay:
            await asyncio.sleep(delay)
        self.set_status(status)
        self.write_json(
            dict(self.identity(), status=status, files=files, fields=fields,
                 content_type=self.request.headers.get("Content-Type", ""))
        )


class Html(Base):
    async def handle(self):
        n = int(self.get_argument("n", "5000"))
        lines = "".join(f"<p>gale gzip test line {i}</p>\n" for i in range(n // 20 + 1))
        page = ("<!doctype html><html><body>\n" + lines)[: max(n - 15, 0)] + "</body></html>\n"
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(page.encode()[:n])


class Big(Base):
    async def handle(self):
        n = int(self.get_argument("n", "1048576"))
        chunked = self.get_argument("chunked", "0") == "1"
        self.set_header("Content-Type", "application/octet-stream")
        data = pattern(n)
        die_after = int(self.get_argument("die_after", "-1"))
        if die_after >= 0:
            # Send the head and part of the body, then crash: a response cut in the middle.
            if not chunked:
                self.set_header("Content-Length", str(n))
            self.write(data[:die_after])
            await self.flush()
            await asyncio.sleep(0.2)
            os._exit(1)
        stall_after = int(self.get_argument("stall_after", "0"))
        if stall_after > 0:
            stall = float(self.get_argument("stall", "1"))
            if not chunked:
                self.set_header("Content-Length", str(n))
            for start in range(0, n, stall_after):
                self.write(data[start : start + stall_after])
                await self.flush()
                if start + stall_after < n:
                    await asyncio.sleep(stall)
            self.finish()
            return
        if not chunked:
            self.finish(data)
            return
        # Flushing before finish makes Tornado use Transfer-Encoding: chunked.
        step = 64 * 1024
        for start in range(0, n, step):
            self.write(data[start : start + step])
            await self.flush()
        self.finish()


class SetHeaders(Base):
    """Answers with every query argument as a response header (`?Connection=x-a&X-A=1`)."""

    async def handle(self):
        for name, values in self.request.query_arguments.items():
            for value in values:
                self.add_header(name, value.decode())
        self.write_json(self.identity())


class Redirect(Base):
    async def handle(self):
        self.redirect(self.get_argument("to"), permanent=False)


class WsEcho(tornado.websocket.WebSocketHandler):
    """Echoes every message; Tornado's own Origin check (against Host) stays on."""

    def open(self):
        HITS["ws-open"] += 1
        INFLIGHT["ws"] += 1

    def on_message(self, message):
        if message == "__whoami__":
            req = self.request
            self.write_message(
                json.dumps(dict(protocol=req.protocol, host=req.host, remote_ip=req.remote_ip))
            )
        elif message == "__close__":
            self.close(1000, "closed by the backend")
        else:
            self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        HITS["ws-close"] += 1
        INFLIGHT["ws"] -= 1


class WsRefuse(Base):
    async def handle(self):
        self.set_status(403)
        self.finish("upgrade refused by the backend\n")


# The HTTP server, for /stats' count of open connections.
SERVER = []

# What /health answers; /health-set changes it.
HEALTH = {"status": 200, "delay": 0.0, "host": None}


class Health(Base):
    async def handle(self):
        HEALTH["host"] = self.request.host
        if HEALTH["delay"]:
            await asyncio.sleep(HEALTH["delay"])
        self.set_status(HEALTH["status"])
        self.finish("ok\n" if HEALTH["status"] < 400 else "unhealthy\n")


class HealthSet(tornado.web.RequestHandler):
    """Not counted: the harness calls it directly, bypassing gale."""

    def get(self):
        HEALTH["status"] = int(self.get_argument("status", "200"))
        HEALTH["delay"] = float(self.get_argument("delay", "0"))
        self.finish("set\n")


class Stats(tornado.web.RequestHandler):
    """Not counted itself: the harness polls it directly, bypassing gale."""

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {
                    "hits": dict(HITS),
                    "inflight": {k: v for k, v in INFLIGHT.items() if v},
                    "peers": len(PEERS),
                    "health_host": HEALTH["host"],
                    # Open client connections, this one included (gale's idle keep-alive ones too).
                    "open_connections": len(getattr(SERVER[0], "_connections", ())) if SERVER else 0,
                }
            )
        )


def make_app(port, name):
    return tornado.web.Application(
        [
            (r"/", Index),
            (r"/form", Form),
            (r"/upload", Uploaded),
            # Also under any prefix (/api/whoami): routing tests tell locations apart.
            (r"/(?:.*/)?whoami", Whoami),
            (r"/slow", Slow),
            (r"/die", Die),
            (r"/echo", Echo),
            (r"/upload-answer", UploadAnswer),
            (r"/html", Html),
            (r"/big", Big),
            (r"/redirect", Redirect),
            (r"/set-headers", SetHeaders),
            # Also under any prefix (/idle/ws): tests give WebSocket routes their own locations.
            (r"/(?:.*/)?ws", WsEcho),
            (r"/ws-refuse", WsRefuse),
            (r"/health", Health),
            (r"/health-set", HealthSet),
            (r"/stats", Stats),
        ],
        port=port,
        name=name,
    )


def exit_when_orphaned(parent):
    """A backend must not outlive whoever started it (a killed test run or demo script)."""
    if os.getppid() != parent:
        logging.info("parent %d is gone: exiting", parent)
        os._exit(0)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="0 = OS-assigned")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    try:
        sockets = tornado.netutil.bind_sockets(args.port, address=args.host)
    except OSError as e:
        print(f"app.py: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        sys.exit(1)
    port = sockets[0].getsockname()[1]
    name = args.name or f"tornado-{port}"

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
    )
    server = tornado.httpserver.HTTPServer(make_app(port, name), xheaders=True)
    SERVER.append(server)
    server.add_sockets(sockets)

    print(port, flush=True)
    logging.info("listening on %s:%d (pid %d)", args.host, port, os.getpid())

    parent = os.getppid()
    tornado.ioloop.PeriodicCallback(lambda: exit_when_orphaned(parent), 500).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        # Ctrl-C in the demo reaches the whole process group: stop quietly.
        pass
