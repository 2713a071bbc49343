"""Start, watch, kill and restore the Flink job process (`jobs.flink.main` in the Flink virtualenv).

PyFlink's pins clash with the main venv, so the job runs as its own process, the way one would submit it to a
cluster: `FlinkJob(config, log_dir).start()`. The job reports on stdout as JSON lines ({"event": "submitted",
"job_id": ...}, {"event": "finished", ...}); its stderr goes to a log file. The process gets its own session,
so `kill()` takes down the JVM gateway with it. Retained checkpoints are <checkpoint_dir>/<job_id>/chk-N:
`latest_checkpoint()` finds the newest complete one for `FlinkJobConfig(restore=...)`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import msgspec

from jobs.bars import BarsConfig
from market.config import Config

ENV_FLINK_PYTHON = "COMMODEX_FLINK_PYTHON"
REPO = Path(__file__).resolve().parents[1]
RESOLVE_JARS = REPO / "flink-conf" / "resolve_jars.sh"


def flink_python() -> Path:
    """The Flink venv's interpreter: $COMMODEX_FLINK_PYTHON, else <repo>/.venv-flink/bin/python."""
    env = os.environ.get(ENV_FLINK_PYTHON)
    return Path(env) if env else REPO / ".venv-flink" / "bin" / "python"


def missing_flink() -> str:
    """Why the Flink job cannot run here ("" when it can): no Flink venv or no java."""
    py = flink_python()
    if not py.exists():
        return f"no Flink virtualenv python at {py} (set {ENV_FLINK_PYTHON} or see flink-conf/README.md)"
    if shutil.which("java") is None:
        return "no java on PATH (PyFlink needs a JVM, Java 17)"
    return ""


def resolve_jars(cache_dir: str | Path) -> Path:
    """The connector jar dir under the stack's cache dir, resolved by flink-conf/resolve_jars.sh (idempotent)."""
    target = Path(cache_dir).expanduser().resolve() / "flink-jars"
    out = subprocess.run([str(RESOLVE_JARS), str(target)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise FlinkJobError(f"resolve_jars.sh failed ({out.returncode}): {out.stderr[-2000:]}")
    return target


class FlinkJobError(RuntimeError):
    """The job process failed or did not report in time (the message carries its log's tail)."""


class FlinkJobConfig(Config, frozen=True):
    """Everything `python -m jobs.flink.main` takes (see its --help)."""

    bootstrap: str
    jar_dir: str
    namespace: str = ""
    ticks_topic: str = ""  # default: <namespace>md.ticks
    start_offset: int = -1  # -1: the earliest offset; else where reading starts (a replay appended to a topic)
    group_id: str = "commodex-flink"
    bounded: bool = False
    job: str = "auto"  # auto | bars | market
    checkpoint_dir: str = ""
    checkpoint_interval_ms: int = 1000
    restore: str = ""
    delivery: str = "exactly-once"  # or at-least-once (outputs visible at once, duplicates after a restore)
    transactional_id_prefix: str = "commodex-flink"
    # a killed job's open transaction blocks read_committed readers until the broker aborts it after this
    transaction_timeout_ms: int = 600_000
    watermark_interval_ms: int = 200
    buffer_timeout_ms: int = 10  # latency knobs of jobs.flink.runtime.FlinkSettings
    python_bundle_time_ms: int = 50
    bars: BarsConfig = msgspec.field(default_factory=BarsConfig)

    def __post_init__(self) -> None:
        if self.job not in ("auto", "bars", "market"):
            raise ValueError(f"unknown job {self.job!r}")
        if self.delivery not in ("exactly-once", "at-least-once"):
            raise ValueError(f"unknown delivery {self.delivery!r}")

    def argv(self) -> list[str]:
        out = ["--bootstrap", self.bootstrap, "--jar-dir", self.jar_dir, "--namespace", self.namespace,
               "--group-id", self.group_id, "--job", self.job, "--checkpoint-interval-ms",
               str(self.checkpoint_interval_ms), "--delivery", self.delivery, "--transactional-id-prefix",
               self.transactional_id_prefix, "--transaction-timeout-ms", str(self.transaction_timeout_ms),
               "--watermark-interval-ms", str(self.watermark_interval_ms),
               "--buffer-timeout-ms", str(self.buffer_timeout_ms), "--python-bundle-time-ms",
               str(self.python_bundle_time_ms),
               "--bars-config", msgspec.json.encode(self.bars).decode()]
        for flag, value in (("--ticks-topic", self.ticks_topic), ("--checkpoint-dir", self.checkpoint_dir),
                            ("--restore", self.restore)):
            if value:
                out += [flag, value]
        if self.start_offset >= 0:
            out += ["--start-offset", str(self.start_offset)]
        if self.bounded:
            out.append("--bounded")
        return out


class FlinkJob:
    """One job process. `start()`, then `wait_submitted()` (job id) and `wait()` (bounded) or `kill()`."""

    def __init__(self, config: FlinkJobConfig, log_dir: str | Path, name: str = "flink-job") -> None:
        self.config = config
        self.log_path = Path(log_dir) / f"{name}.log"
        self.events: list[dict[str, object]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._changed = threading.Condition()

    def start(self) -> FlinkJob:
        why = missing_flink()
        if why:
            raise FlinkJobError(why)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as log:
            self._proc = subprocess.Popen(
                [str(flink_python()), "-m", "jobs.flink.main", *self.config.argv()], cwd=REPO,
                stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert self._proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._reader.start()
        return self

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.strip()
            if not line.startswith("{"):
                continue  # PyFlink prints banners now and then
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._changed:
                self.events.append(ev)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def event(self, name: str) -> dict[str, object] | None:
        return next((e for e in self.events if e.get("event") == name), None)

    def _wait_event(self, name: str, timeout_s: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while (ev := self.event(name)) is None:
                if not self.running() and (self._reader is None or not self._reader.is_alive()):
                    raise FlinkJobError(f"job process ended (rc {self.returncode()}) before '{name}':\n"
                                        f"{self.log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FlinkJobError(f"no '{name}' from the job within {timeout_s} s:\n{self.log_tail()}")
                self._changed.wait(min(left, 1.0))
        return ev

    def wait_submitted(self, timeout_s: float = 300.0) -> str:
        """The job id, once the job runs."""
        return str(self._wait_event("submitted", timeout_s)["job_id"])

    def wait(self, timeout_s: float = 600.0) -> dict[str, object]:
        """Wait for a bounded job to finish; its 'finished' event (run_s = job wall time)."""
        ev = self._wait_event("finished", timeout_s)
        assert self._proc is not None
        try:
            rc = self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # finished but the gateway hangs on: nothing left to lose
            self.kill()
            rc = 0
        if rc != 0:
            raise FlinkJobError(f"job process exited with {rc}:\n{self.log_tail()}")
        return ev

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def kill(self) -> None:
        """SIGKILL the job process and everything in its session (the JVM): a crash, not a cancel."""
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(30)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        # Java stack frames bury the cause: keep the other lines
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("at ")]
        return "\n".join(lines)[-chars:]


def checkpoints(checkpoint_dir: str | Path, job_id: str = "") -> list[Path]:
    """Complete retained checkpoints (chk-N with _metadata), oldest first; of one job or of all."""
    root = Path(checkpoint_dir)
    jobs = [root / job_id] if job_id else [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    found = [c for j in jobs for c in j.glob("chk-*") if (c / "_metadata").is_file()]
    return sorted(found, key=lambda c: (c.stat().st_mtime, int(c.name.split("-")[1])))


def latest_checkpoint(checkpoint_dir: str | Path, job_id: str = "") -> Path | None:
    found = checkpoints(checkpoint_dir, job_id)
    return found[-1] if found else None


def wait_for_checkpoint(checkpoint_dir: str | Path, job_id: str, newer_than: int = 0,
                        timeout_s: float = 120.0) -> Path:
    """The first complete checkpoint of `job_id` numbered above `newer_than`."""
    deadline = time.monotonic() + timeout_s
    while True:
        for c in reversed(checkpoints(checkpoint_dir, job_id)):
            if int(c.name.split("-")[1]) > newer_than:
                return c
        if time.monotonic() > deadline:
            raise FlinkJobError(f"no checkpoint of job {job_id} above {newer_than} in {checkpoint_dir} "
                                f"after {timeout_s} s")
        time.sleep(0.2)
