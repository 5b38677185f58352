#!/usr/bin/env python3
"""The WebGPU bench's local server (standard library only; the GPU machine has
python3 and no cargo).

- GET/HEAD `/...` from SITE (the bench page, `pkg/` from wasm-bindgen);
- GET/HEAD `/models/NAME/FILE` from the folder given as `--model NAME=DIR`,
  answering single `Range: bytes=a-b` requests with 206 as a model host does
  (the page streams each part of the weights with ranged reads);
- POST `/result?kind=K` appends `{"kind": K, ...body}` as one JSON line to
  `--results` (the page reports the adapter, each timing, errors and `done`).

usage: serve.py SITE --port N --results FILE [--model NAME=DIR ...]
"""
import argparse
import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()


class Handler(http.server.SimpleHTTPRequestHandler):
    site = "."
    models = {}
    results = None

    def log_message(self, fmt, *args):
        sys.stderr.write("serve.py: " + (fmt % args) + "\n")

    def end_headers(self):
        # The page must never run a stale bundle or model file.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def translate(self):
        """The file a GET/HEAD names, or None."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p not in ("", ".", "..")]
        if len(parts) >= 2 and parts[0] == "models":
            base = self.models.get(parts[1])
            if base is None:
                return None
            return os.path.join(base, *parts[2:])
        target = os.path.join(self.site, *parts)
        if os.path.isdir(target):
            target = os.path.join(target, "index.html")
        return target

    def send_file(self, head):
        f = self.translate()
        if f is None or not os.path.isfile(f):
            self.send_error(404, "no such file")
            return
        size = os.path.getsize(f)
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (m.group(1) == "" and m.group(2) == ""):
                self.send_error(416, "only single byte ranges")
                return
            if m.group(1) == "":
                start = max(0, size - int(m.group(2)))
            else:
                start = int(m.group(1))
                if m.group(2) != "":
                    end = min(end, int(m.group(2)))
            if start > end or start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            status = 206
        ctype = self.guess_type(f)
        if f.endswith(".wasm"):
            ctype = "application/wasm"
        elif f.endswith(".js"):
            ctype = "text/javascript"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        with open(f, "rb") as src:
            src.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = src.read(min(left, 4 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def do_GET(self):
        try:
            self.send_file(head=False)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_HEAD(self):
        self.send_file(head=True)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/result":
            self.send_error(404, "POST /result only")
            return
        kind = urllib.parse.parse_qs(url.query).get("kind", ["log"])[0]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            value = {"text": body.decode("utf-8", "replace")}
        record = {"kind": kind, "t": round(time.time(), 3)}
        record.update(value if isinstance(value, dict) else {"value": value})
        line = json.dumps(record)
        with LOCK:
            with open(self.results, "a") as out:
                out.write(line + "\n")
        sys.stdout.write("page: " + line + "\n")
        sys.stdout.flush()
        self.send_response(204)
        self.end_headers()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("site")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--model", action="append", default=[], help="NAME=DIR")
    a = ap.parse_args()
    Handler.site = os.path.abspath(a.site)
    Handler.results = a.results
    for m in a.model:
        name, _, d = m.partition("=")
        if not d or not os.path.isdir(d):
            raise SystemExit(f"serve.py: --model {m}: expected NAME=DIR with an existing folder")
        Handler.models[name] = os.path.abspath(d)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    sys.stderr.write(f"serve.py: http://127.0.0.1:{a.port}/ site {Handler.site} models {Handler.models}\n")
    srv.serve_forever()


if __name__ == "__main__":
    main()
