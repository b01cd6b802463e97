"""A stand-in for ``python -m hoopgw`` that only tests the process plumbing of the fixtures.

Invoked as ``fake_gateway.py -m hoopgw serve -c CFG`` (or ``token issue ...``): ``serve`` answers
``GET /healthz`` on ``api_listen`` and accepts TCP on every connection's ``listen`` until SIGTERM, then
exits 0; ``token issue`` prints a fake token.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


def hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def main(argv: list[str]) -> int:
    args = argv[2:] if argv[:2] == ["-m", "hoopgw"] else argv
    cfg_path = args[args.index("-c") + 1]
    if args[:2] == ["token", "issue"]:
        print("fake-token-" + args[args.index("--subject") + 1])
        return 0
    assert args[0] == "serve", args
    cfg = tomllib.loads(Path(cfg_path).read_text())
    http = ThreadingHTTPServer(hostport(cfg["gateway"]["api_listen"]), Health)
    socks = []
    for conn in cfg.get("connections", []):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(hostport(conn["listen"]))
        s.listen()
        socks.append(s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print("fake gateway ready", file=sys.stderr, flush=True)
    stop.wait(120)
    http.shutdown()
    http.server_close()
    for s in socks:
        s.close()
    print("fake gateway stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
