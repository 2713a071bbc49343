"""A single-node Kafka broker (KRaft: broker and controller in one JVM) from plain Maven Central jars.

The jars are resolved once per Kafka version with `mvn dependency:copy-dependencies` from a generated pom
into `<cache>/kafka-libs/<version>` (shared by every state dir); storage is formatted once per state dir.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import signal
import uuid
from pathlib import Path

from stack.services.base import (
    ServiceError,
    ServiceStatus,
    owned_pid,
    pid_alive,
    port_open,
    run,
    spawn,
    stop_pid,
    wait_until,
)
from stack.settings import StackSettings

NAME = "kafka"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>commodex.stack</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version>
    </dependency>
    <!-- kafka pulls slf4j-api 1.7: the log4j binding for 1.7 is log4j-slf4j-impl (not -slf4j2-) -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

# Console only, warnings and up: the broker's own log4j2.yaml needs a YAML jar we do not ship.
_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
"""


class KafkaService:
    name = NAME

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.dir = settings.state_path / "kafka"
        self.data = self.dir / "data"
        self.pid_file = self.dir / "pid"
        self.log = self.dir / "broker.log"
        self.properties = self.dir / "server.properties"
        self.libs = settings.cache_path / "kafka-libs" / settings.kafka_version

    @property
    def address(self) -> str:
        return f"{self.s.host}:{self.s.kafka_port}"

    # ---- install -----------------------------------------------------------------------------------------

    def ensure_libs(self) -> Path:
        """Resolve the broker's jars once (file lock: concurrent runs wait for the first)."""
        if (self.libs / ".complete").exists():
            return self.libs
        for tool in ("mvn", "java"):
            if shutil.which(tool) is None:
                raise ServiceError(f"kafka: `{tool}` is not on PATH (apt-get install maven openjdk-17-jre-headless)")
        self.libs.parent.mkdir(parents=True, exist_ok=True)
        with open(self.libs.parent / f".{self.s.kafka_version}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (self.libs / ".complete").exists():
                return self.libs
            work = self.libs.parent / f".resolve-{self.s.kafka_version}-{os.getpid()}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            (work / "pom.xml").write_text(_POM.format(kafka=self.s.kafka_version, log4j=self.s.log4j_version))
            run(["mvn", "-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime",
                 f"-DoutputDirectory={work / 'libs'}"], "kafka: resolving jars with mvn", cwd=work, timeout_s=600)
            shutil.rmtree(self.libs, ignore_errors=True)
            (work / "libs").rename(self.libs)
            shutil.rmtree(work, ignore_errors=True)
            (self.libs / ".complete").write_text(self.s.kafka_version + "\n")
        return self.libs

    def _java(self, *args: str, heap: bool = False) -> list[str]:
        java = shutil.which("java") or "java"
        opts = [f"-Xmx{self.s.kafka_heap_mb}m", "-XX:+ExitOnOutOfMemoryError"] if heap else ["-Xmx256m"]
        return [java, *opts, "-cp", f"{self.libs}/*", f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                *args]

    def _write_config(self) -> None:
        h, p, c = self.s.host, self.s.kafka_port, self.s.kafka_controller_port
        one = ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic")
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={h}:{c}",
            f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            f"advertised.listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.data}",
            # one node: every internal topic has one replica; few partitions keep start-up and group joins fast
            *(f"{t}.replication.factor=1" for t in one),
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.min.isr=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.num.partitions=1",
            "share.coordinator.state.topic.num.partitions=1",
            "group.initial.rebalance.delay.ms=0",
            "num.partitions=1",
            # after a crash the restarted broker cannot register until its old session expires (default 9 s)
            "broker.session.timeout.ms=4000",
            "broker.heartbeat.interval.ms=1000",
            "auto.create.topics.enable=false",  # topics come from market/topics.py via stack.kafka_io.ensure_topics
        ]
        self.properties.write_text("\n".join(lines) + "\n")
        (self.dir / "log4j2.properties").write_text(_LOG4J2)

    @staticmethod
    def _cluster_id() -> str:
        # Kafka's Uuid string form: URL-safe base64 of 16 random bytes, no padding, not starting with '-'
        while True:
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            if not cid.startswith("-"):
                return cid

    def _format(self) -> None:
        if (self.data / "meta.properties").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        run(self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", self._cluster_id(),
                       "-c", str(self.properties)), "kafka: formatting KRaft storage", timeout_s=120)

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def pid(self) -> int:
        return owned_pid(self.pid_file, str(self.properties))

    def healthy(self) -> bool:
        if not port_open(self.s.host, self.s.kafka_port):
            return False
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.address, "log_level": 0,
                             "socket.connection.setup.timeout.ms": 2000})
        try:
            md = admin.list_topics(timeout=2)
        except KafkaException:
            return False
        return bool(md.brokers) and md.controller_id >= 0

    def up(self) -> ServiceStatus:
        self.ensure_libs()
        self.dir.mkdir(parents=True, exist_ok=True)
        pid = self.pid()
        if not pid:
            if port_open(self.s.host, self.s.kafka_port) or port_open(self.s.host, self.s.kafka_controller_port):
                raise ServiceError(f"kafka: port {self.s.kafka_port} or {self.s.kafka_controller_port} is in use "
                                   "by a process this stack did not start")
            self._write_config()
            self._format()
            # the spawned pid itself: right after the fork its command line may not show the JVM's yet
            pid = spawn(self._java("kafka.Kafka", str(self.properties), heap=True), self.log, self.pid_file)
        wait_until(self.healthy, self.s.start_timeout_s, f"kafka on {self.address}",
                   alive=lambda: pid_alive(pid), log=self.log)
        return self.status()

    def down(self) -> bool:
        pid = self.pid()
        if not pid:
            return False
        stop_pid(pid, timeout_s=30)
        return True

    def kill(self) -> int:
        """SIGKILL the broker (crash tests): no shutdown hooks, no final flush. Returns the pid killed."""
        pid = self.pid()
        if pid:
            stop_pid(pid, timeout_s=10, sig=signal.SIGKILL)
        return pid

    def version(self) -> str:
        return self.s.kafka_version

    def status(self) -> ServiceStatus:
        pid = self.pid()
        installed = (self.libs / ".complete").exists()
        healthy = bool(pid) and self.healthy()
        return ServiceStatus(NAME, self.address, self.version(), running=bool(pid), healthy=healthy,
                             pid=pid, detail="" if installed else "jars not resolved yet (first `up` runs mvn)")
