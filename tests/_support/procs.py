"""Bounded subprocesses and waiting."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from hoopgw._pgcluster import free_port, port_is_free
from hoopgw.demo import tcp_accepts

__all__ = [
    "REPO_ROOT",
    "clean_env",
    "free_port",
    "port_is_free",
    "require_binary",
    "run",
    "tcp_accepts",
    "wait_until",
]


#: The source tree: children import hoopgw from it even before `make install` registered it.
REPO_ROOT = Path(__file__).resolve().parents[2]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without libpq's PG* and hoopgw's HOOPGW_* variables, plus ``extra``.

    ``PYTHONPATH`` starts with the source tree so ``python -m hoopgw`` runs the code under test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "HOOPGW_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def run(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    input: str | None = None,
    check: bool = False,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with text I/O captured, a clean environment plus ``env``, never longer than ``timeout``.

    A timeout kills the child and raises ``subprocess.TimeoutExpired``; ``check`` raises
    ``AssertionError`` with both streams on a non-zero exit.
    """
    res = subprocess.run(
        list(cmd),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(env),
        cwd=cwd,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"{cmd[0]} exited with {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
        )
    return res


def wait_until(
    pred: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> None:
    """Poll ``pred`` until true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")


def require_binary(name: str) -> str:
    """Path of a required executable (tests need real clients: a missing one is a setup error)."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} not found on PATH; run `make deps`")
    return path


def hoopgw(
    *args: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m hoopgw ARGS`` from this checkout (no ``$HOOPGW_CONFIG``), text captured, bounded."""
    full_env = {k: v for k, v in os.environ.items() if k != "HOOPGW_CONFIG"}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "hoopgw", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=full_env,
        check=False,
    )


@contextlib.contextmanager
def running_demo(
    base: int, workdir: Path, timeout: float = 90.0
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``hoopgw demo --port-base BASE --dir WORKDIR`` as a child, once it has printed "Press Ctrl-C":
    (the process, its output up to there). On exit it is stopped with SIGTERM (the demo then stops its
    gateway, PostgreSQL and sshd; SIGKILL would orphan them), bounded."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hoopgw", "demo", "--port-base", str(base), "--dir", str(workdir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    )
    stdout = proc.stdout
    assert stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(stdout, lines), daemon=True)
    reader.start()
    out: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while not any("Press Ctrl-C" in line for line in out):
            assert time.monotonic() < deadline, "".join(out)
            assert proc.poll() is None, "".join(out)
            with contextlib.suppress(queue.Empty):
                out.append(lines.get(timeout=0.5))
        yield proc, "".join(out)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        reader.join(5)
        stdout.close()


def _pump(stream: IO[str], q: queue.Queue[str]) -> None:
    for line in stream:
        q.put(line)
