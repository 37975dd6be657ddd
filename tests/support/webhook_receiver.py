"""A webhook receiver for the tests: it checks every request's signature with the Standard
Webhooks reference library (`standardwebhooks`, an implementation independent of the
service's), records what it got, and answers as its path says.

Prints `PORT <n>` once it listens on 127.0.0.1. The first segment of a request's path
chooses the answer; what follows it only tells endpoints apart:

  /ok/...            200
  /fail/<n>/...      500 to the first <n> attempts of each message, then 200
  /gone/...          410
  /hang/...          no answer (the request is held until the client gives up)
  /hang-first/...    no answer to a message's first attempt, 200 to the next ones
  /big/...           200 with a 10 MB body
  /redirect/...      307 to /ok/
  /slow/<ms>/...     200 after <ms> milliseconds

Control routes:
  PUT /_secrets/<path>   the JSON list of `whsec_` secrets requests to /<path> are checked with
  GET /_requests         every request so far, as a JSON list
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

lock = threading.Lock()
secrets = {}  # path -> [secret]
records = []
attempts = {}  # (path, webhook-id) -> attempts seen
in_flight = {}  # webhook-id -> requests being answered

BIG = 10 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_requests":
            with lock:
                body = json.dumps(records).encode()
            self.answer(200, body, [("content-type", "application/json")])
        else:
            self.answer(404)

    def do_PUT(self):
        length = int(self.headers.get("content-length", 0))
        body = self.rfile.read(length)
        if self.path.startswith("/_secrets/"):
            with lock:
                secrets[self.path[len("/_secrets"):]] = json.loads(body)
            self.answer(204)
        else:
            self.answer(404)

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        raw = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        webhook_id = headers.get("webhook-id")
        with lock:
            known = list(secrets.get(self.path, []))
        verified = []
        for secret in known:
            try:
                Webhook(secret).verify(raw, headers)
                verified.append(True)
            except Exception:
                verified.append(False)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with lock:
            key = (self.path, webhook_id)
            attempts[key] = attempts.get(key, 0) + 1
            attempt = attempts[key]
            overlapping = in_flight.get(webhook_id, 0) > 0
            in_flight[webhook_id] = in_flight.get(webhook_id, 0) + 1
            record = {
                "path": self.path,
                "webhook_id": webhook_id,
                "timestamp": headers.get("webhook-timestamp"),
                "signature": headers.get("webhook-signature"),
                "content_type": headers.get("content-type"),
                "raw": raw.decode("utf-8", "replace"),
                "body": body,
                "verified": verified,
                "attempt": attempt,
                "overlapping": overlapping,
                "started": time.time(),
                "finished": None,
                "status": None,
            }
            records.append(record)
        try:
            status = self.respond(attempt)
        finally:
            with lock:
                in_flight[webhook_id] -= 1
                record["finished"] = time.time()
                record["status"] = status

    def respond(self, attempt):
        parts = [p for p in self.path.split("/") if p]
        mode = parts[0] if parts else ""
        if mode == "ok":
            self.answer(200, b"ok")
            return 200
        if mode == "fail":
            if attempt <= int(parts[1]):
                self.answer(500, b"failing on purpose")
                return 500
            self.answer(200, b"ok")
            return 200
        if mode == "gone":
            self.answer(410, b"gone")
            return 410
        if mode == "hang" or (mode == "hang-first" and attempt == 1):
            time.sleep(600)
            return None
        if mode == "hang-first":
            self.answer(200, b"ok")
            return 200
        if mode == "big":
            self.send_response(200)
            self.send_header("content-length", str(BIG))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(BIG // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass
            return 200
        if mode == "redirect":
            self.answer(307, b"", [("location", "/ok/")])
            return 307
        if mode == "slow":
            time.sleep(int(parts[1]) / 1000)
            self.answer(200, b"ok")
            return 200
        self.answer(404)
        return 404


class Server(ThreadingHTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
