"""What every local service shares: its status record, pid files, liveness and port checks.

A service writes `<state>/<name>/pid` when it starts a process and `down` stops only a pid whose command
line still names this state dir, so a reused pid or a service started by someone else is never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached; the message says what to do."""


class ServiceStatus(msgspec.Struct, frozen=True):
    name: str
    address: str
    version: str
    running: bool
    healthy: bool
    pid: int = 0
    detail: str = ""


def read_pid(path: Path) -> int:
    """The pid on the first line of a pid file (PostgreSQL's postmaster.pid has more lines), 0 if none."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return 0
    return int(first) if first.isdigit() else 0


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie (which kill(pid, 0) calls alive)."""
    with contextlib.suppress(ChildProcessError):  # not our child: init reaps it
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    _reap(pid)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def owned_pid(pid_file: Path, marker: str) -> int:
    """The pid in pid_file if that process is alive and its command line contains `marker`, else 0."""
    pid = read_pid(pid_file)
    if pid and pid_alive(pid) and marker in cmdline(pid):
        return pid
    return 0


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, alive: Callable[[], bool] | None = None,
               log: Path | None = None, interval_s: float = 0.1) -> None:
    """Poll `check` until true; fail early (with the log tail) when `alive` says the process died."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise ServiceError(f"{what}: the process exited during start-up{log_tail(log)}")
        if time.monotonic() > deadline:
            raise ServiceError(f"{what}: not healthy after {timeout_s:.0f} s{log_tail(log)}")
        time.sleep(interval_s)


def log_tail(log: Path | None, lines: int = 25) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(tail)


def spawn(argv: Sequence[str], log: Path, pid_file: Path, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> int:
    """Start a long-running process in its own session (Ctrl-C in the caller does not reach it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid: int, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """Signal, wait for exit; SIGKILL when it does not stop in time."""
    if not pid_alive(pid):
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            return
        time.sleep(0.05)


def run(argv: Sequence[str], what: str, timeout_s: float = 300.0, cwd: Path | None = None) -> str:
    """Run a setup command; ServiceError with its output when it fails."""
    try:
        r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, cwd=cwd, check=False)
    except FileNotFoundError as e:
        raise ServiceError(f"{what}: {argv[0]} not found ({e})") from e
    except subprocess.TimeoutExpired as e:
        raise ServiceError(f"{what}: timed out after {timeout_s:.0f} s: {' '.join(argv)}") from e
    if r.returncode != 0:
        raise ServiceError(f"{what} failed (exit {r.returncode}): {' '.join(argv)}\n{r.stdout[-3000:]}"
                           f"\n{r.stderr[-3000:]}")
    return r.stdout
