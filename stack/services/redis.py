"""A private Redis (Debian's redis-server) on 127.0.0.1: no persistence, it only holds live views."""

from __future__ import annotations

import shutil
import subprocess

from stack.services.base import (
    ServiceError,
    ServiceStatus,
    owned_pid,
    pid_alive,
    port_open,
    spawn,
    stop_pid,
    wait_until,
)
from stack.settings import StackSettings

NAME = "redis"


class RedisService:
    name = NAME

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.dir = settings.state_path / "redis"
        self.conf = self.dir / "redis.conf"
        self.pid_file = self.dir / "pid"
        self.log = self.dir / "redis.log"

    @property
    def address(self) -> str:
        return f"{self.s.host}:{self.s.redis_port}"

    def _binary(self) -> str:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ServiceError("redis: `redis-server` is not on PATH (apt-get install redis-server)")
        return exe

    def pid(self) -> int:
        return owned_pid(self.pid_file, f"{self.s.host}:{self.s.redis_port}")

    def healthy(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=self.s.host, port=self.s.redis_port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def up(self) -> ServiceStatus:
        exe = self._binary()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.pid():
            if port_open(self.s.host, self.s.redis_port):
                raise ServiceError(f"redis: port {self.s.redis_port} is in use by a process this stack did not start")
            self.conf.write_text(
                f"bind {self.s.host}\nport {self.s.redis_port}\nprotected-mode yes\ndaemonize no\nsave \"\"\n"
                f"appendonly no\ndir {self.dir}\nloglevel warning\n"
            )
            spawn([exe, str(self.conf)], self.log, self.pid_file)
        pid = self.pid()
        wait_until(self.healthy, self.s.start_timeout_s, f"redis on {self.address}", alive=lambda: pid_alive(pid),
                   log=self.log)
        return self.status()

    def down(self) -> bool:
        pid = self.pid()
        if not pid:
            return False
        stop_pid(pid, timeout_s=10)
        return True

    def version(self) -> str:
        try:
            out = subprocess.run([self._binary(), "--version"], capture_output=True, text=True, check=True).stdout
        except (ServiceError, OSError, subprocess.CalledProcessError):
            return "not installed"
        # "Redis server v=7.0.15 sha=... malloc=... bits=64 build=..."
        for part in out.split():
            if part.startswith("v="):
                return part[2:]
        return out.strip()

    def status(self) -> ServiceStatus:
        pid = self.pid()
        healthy = bool(pid) and self.healthy()
        return ServiceStatus(NAME, self.address, self.version(), running=bool(pid), healthy=healthy,
                             pid=pid)
