"""Relay between an OpenSSH ``sftp -D`` client and a real ``sftp-server``, through ``SftpSession``.

Usage: ``python sftp_tee.py OUTDIR [SERVER] [--deny GLOB ...]``. The client's stdin/stdout are the
SFTP stream; the server runs as a child. Both raw directions are written, in the order the session
saw them, to ``OUTDIR/transcript.bin`` (records of a direction byte ``c`` or ``s``, a uint32 length
and the bytes read); requests whose op dict has ``write`` True and a path matching a
``--deny`` glob are refused with :meth:`SftpSession.refuse`, as the gateway would. At the end,
``OUTDIR/result.json`` holds ``{"version", "ops", "records"}``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

from hoopgw._core import SftpSession

READ_SIZE = 65536


def main() -> None:
    """Relay until both sides are done."""
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir", type=Path)
    parser.add_argument("server", nargs="?", default="/usr/lib/openssh/sftp-server")
    parser.add_argument("--deny", action="append", default=[])
    args = parser.parse_args()
    outdir: Path = args.outdir
    deny: list[str] = args.deny

    session = SftpSession()
    lock = threading.Lock()
    out_lock = threading.Lock()
    ops: list[dict[str, object]] = []
    records: list[dict[str, object]] = []
    child = subprocess.Popen([args.server], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    child_in, child_out = child.stdin, child.stdout

    transcript = (outdir / "transcript.bin").open("wb")

    def log(direction: bytes, data: bytes) -> None:
        transcript.write(direction + struct.pack("!I", len(data)) + data)

    def write_client(data: bytes) -> None:
        with out_lock:
            os.write(1, data)

    def client_to_server() -> None:
        while data := os.read(0, READ_SIZE):
            forward: list[bytes] = []
            refusals: list[bytes] = []
            with lock:  # decide under the lock, write outside it (the pipes may block)
                log(b"c", data)
                for chunk, op in session.feed_client(data):
                    if op is not None:
                        ops.append(op)
                        path = str(op["path"])
                        if op["write"] and any(fnmatch.fnmatch(path, g) for g in deny):
                            refusals.append(session.refuse(int(str(op["id"])), f"denied: {path}"))
                            continue
                    forward.append(chunk)
            for reply in refusals:
                write_client(reply)
            child_in.write(b"".join(forward))
            child_in.flush()
        child_in.close()

    pump = threading.Thread(target=client_to_server, daemon=True)
    pump.start()
    while data := os.read(child_out.fileno(), READ_SIZE):
        with lock:  # the session sees a reply before the client can answer it
            log(b"s", data)
            records.extend(session.feed_server(data))
        write_client(data)
    pump.join(timeout=30)
    child.wait(timeout=30)
    with lock:
        records.extend(session.finish())
        result = {"version": session.version, "ops": ops, "records": records}
    transcript.close()
    (outdir / "result.json").write_text(json.dumps(result, indent=1))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
