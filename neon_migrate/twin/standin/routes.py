"""The stand-in's HTTP server: Neon's routes over the project model, and its process.

`python -m neon_migrate.twin.standin.routes serve <folder> --daemon` (process.py runs it)
forks into the background, serves on 127.0.0.1, writes `running.json` once it listens and
deletes expired branches on a timer. Every request needs the API key as a Bearer token;
errors answer Neon's `{"code", "message"}` bodies.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import os
import signal
import sys
import threading
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from neon_migrate.twin.daemon import HOST, read_state, write_state
from neon_migrate.twin.standin.model import ApiError, Project, log
from neon_migrate.twin.standin.process import API_PREFIX, MODULE


def route(
    project: Project, method: str, path: str, query: dict[str, list[str]], body: Any
) -> tuple:
    """(status, body[, headers]) for one request; ApiError for an answer other than success."""
    if path in ("/_standin/faults", f"{API_PREFIX}/_standin/faults"):
        return project.fault_hook(method, body)
    if not path.startswith(f"{API_PREFIX}/projects/"):
        raise ApiError(404, "not found")
    parts = path[len(API_PREFIX) + 1 :].split("/")  # projects, id, ...
    if len(parts) < 3 or parts[1] != project.project_id:
        raise ApiError(404, "project not found")
    route = parts[2:]
    with project.lock:
        project.reap()  # expiry is checked on every request (and on a timer)
        answered = project.neon.before(method, route, query, body)  # the branch list too
        if answered is not None:
            return answered
        if route == ["branches"] and method == "POST":
            return project.create_branch(body if isinstance(body, dict) else {})
        if len(route) == 2 and route[0] == "branches" and method == "GET":
            return 200, {"branch": project.branch_json(project._branch(route[1]))}
        if len(route) == 2 and route[0] == "branches" and method == "DELETE":
            return 200, project.delete_branch(route[1])
        if route == ["endpoints"] and method == "GET":
            return 200, {
                "endpoints": [
                    project.endpoint_json(b) for b in project._listed() if b.get("endpoint_id")
                ]
            }
        if len(route) == 2 and route[0] == "operations" and method == "GET":
            op = project.operations.get(route[1])
            if op is None:
                raise ApiError(404, "operation not found")
            return 200, {"operation": project.public(op)}
        if route == ["connection_uri"] and method == "GET":
            return 200, {"uri": project.connection_uri(query)}
    raise ApiError(404 if method == "GET" else 405, f"no route for {method} {path}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "neon-migrate-standin"
    project: Project  # set on the subclass the server uses
    token: str

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        status, body = 500, {"code": "", "message": "internal error"}
        headers: dict[str, str] = {}
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                raise ApiError(401, "authentication required: a valid API key")
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                raise ApiError(400, "the request body is not JSON") from None
            target = urlsplit(self.path)
            status, body, *more = route(
                self.project, method, target.path.rstrip("/"), parse_qs(target.query), payload
            )
            headers = more[0] if more else {}
        except ApiError as exc:
            status, body = (
                exc.status,
                {"code": exc.code, "message": exc.message, "request_id": str(uuid.uuid4())},
            )
        except Exception:
            log.error("%s %s failed:\n%s", method, self.path, traceback.format_exc())
        data = b"" if body is None else str(body).encode() if isinstance(body, str) else (
            json.dumps(body).encode())  # fmt: skip
        self.send_response(status)
        kind = "text/html" if isinstance(body, str) else "application/json"
        for name, value in ({"Content-Type": kind} if data else {}).items() | headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # the request line; no headers
        log.info("%s %s", self.address_string(), format % args)


def serve(folder: Path, daemon: bool = False) -> None:
    config = read_state(folder / "standin.json")
    if config is None:
        raise SystemExit(f"no configuration in {folder / 'standin.json'}")
    if daemon:  # the parent returns at once; the server is adopted by init
        if os.fork() > 0:
            os._exit(0)
        os.setsid()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        force=True,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    project = Project(folder, config)
    handler = type("BoundHandler", (Handler,), {"project": project, "token": config["token"]})
    port = config.get("port") or 0
    try:
        httpd = ThreadingHTTPServer((HOST, port), handler)
    except OSError:  # last time's port is taken now
        httpd = ThreadingHTTPServer((HOST, 0), handler)
    httpd.daemon_threads = True

    def stop(*_: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    stopping = threading.Event()

    def reaper() -> None:
        while not stopping.wait(float(config.get("reap_interval_s") or 5.0)):
            try:
                project.reap()
            except Exception:
                log.error("reaping failed:\n%s", traceback.format_exc())

    threading.Thread(target=reaper, name="reaper", daemon=True).start()
    pg_port = config["pg"]["port"]
    write_state(
        folder / "running.json",
        {
            "pid": os.getpid(),
            "port": httpd.server_port,
            "project_id": project.project_id,
            "server_port": pg_port,
        },
    )
    log.info(
        "Neon API stand-in for project %s on http://%s:%d%s (PostgreSQL port %d)",
        project.project_id,
        HOST,
        httpd.server_port,
        API_PREFIX,
        pg_port,
    )
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        stopping.set()
        for child in list(project.db.children):
            with contextlib.suppress(OSError):
                child.kill()
        httpd.server_close()
        log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the API for the stand-in folder given")
    run.add_argument("folder", type=Path, help="<twin root>/neon-api, with standin.json")
    run.add_argument("--daemon", action="store_true", help="fork into the background")
    args = parser.parse_args(argv)
    serve(args.folder.absolute(), daemon=args.daemon)
    return 0


if __name__ == "__main__":
    sys.exit(main())
