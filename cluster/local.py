"""``make cluster``: N supervised replicas behind nginx and HAProxy, with Prometheus, in the foreground.

Each replica is ``python -m serving`` on its own loopback ports, in its own process group (its
supervisor, tritonserver and stubs: one ``kill`` of the group stops the whole replica). A replica
that exits, however it died, is cleaned up (its shared memory) and started again on the same ports;
one that exits because another process took one of its ports is started on new ones, which HAProxy
(through its runtime API) and Prometheus (through its targets file) follow.
Clients use nginx on 127.0.0.1:8001 (gRPC) and :8000 (HTTP); see ``cluster.config`` for
what each process does. ``.cache/cluster/replicas.json`` lists each replica's ports and pgid.
Ctrl-C (or SIGTERM) stops everything: the replicas drain first, then the balancers and Prometheus.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cluster.config import (
    CHECK_INTERVAL_MS,
    FrontPorts,
    ReplicaPorts,
    haproxy_config,
    nginx_config,
    prometheus_config,
    prometheus_rules,
    prometheus_targets,
)
from cluster.haproxy_runtime import balancer_states, move_replica
from python_backends.paths import DEFAULT_REPOSITORY, PROJECT_ROOT
from serving.processes import free_port, port_taken_lines, shm_regions, taken_port
from serving.server import http_ok
from serving.server_dirs import GATE_PREFIX, remove_server_dirs
from serving.supervisor import RestartBudget

STATE_DIR = PROJECT_ROOT / ".cache" / "cluster"
DRAIN_DELAY_S = 3 * CHECK_INTERVAL_MS / 1000  # agent check read at least twice before the replica refuses work
REPLICA_EXIT_TIMEOUT_S = 10
MAX_RESTARTS, RESTART_WINDOW_S = 5, 600.0  # per replica: more means it cannot serve, restarting only hides that
TOOLS = ("nginx", "haproxy", "prometheus")
SYSTEM_TOOL_DIRS = ("/usr/sbin", "/sbin")  # where Debian installs nginx and haproxy; a non-root PATH lacks them
log = logging.getLogger("cluster")


class ClusterError(RuntimeError):
    """The cluster cannot start: the message names the cause."""


def find_tool(name: str, search_path: str | None = None, system_dirs: tuple[str, ...] = SYSTEM_TOOL_DIRS) -> str | None:
    """The executable ``name`` on ``search_path`` (default: PATH), else in ``system_dirs``; None if neither has it."""
    found = shutil.which(name, path=search_path)
    if found is None and system_dirs:
        found = shutil.which(name, path=os.pathsep.join(system_dirs))
    return found


def group_pids(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
    return pids


def new_replica_ports() -> ReplicaPorts:
    return ReplicaPorts(free_port(), free_port(), free_port(), free_port())


class Replica:
    """One ``python -m serving`` in a process group of its own; ``pgid`` is its supervisor's pid."""

    def __init__(
        self,
        index: int,
        ports: ReplicaPorts,
        repository: Path,
        state_dir: Path,
        admin_key: str,
        restarts: RestartBudget,
    ):
        self.index, self.ports, self.repository, self.admin_key = index, ports, repository, admin_key
        self.log_dir = state_dir / self.name
        self.process: subprocess.Popen | None = None
        self.shm: set[Path] = set()
        self.restarts = restarts
        self.log_starts: dict[Path, int] = {}  # each log's size when this replica was last started

    @property
    def name(self) -> str:
        return f"replica-{self.index}"

    @property
    def pgid(self) -> int:
        return self.process.pid

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logs = (self.log_dir / "supervisor.log", self.log_dir / "tritonserver.log")
        self.log_starts = {log: log.stat().st_size if log.exists() else 0 for log in logs}
        p = self.ports
        command = [
            sys.executable,
            "-m",
            "serving",
            f"--repository={self.repository}",
            f"--grpc-port={p.grpc_port}",
            f"--http-port={p.http_port}",
            f"--metrics-port={p.metrics_port}",
            f"--lb-agent-port={p.agent_port}",
            f"--drain-delay={DRAIN_DELAY_S}",
            f"--exit-timeout={REPLICA_EXIT_TIMEOUT_S}",
            f"--admin-key={self.admin_key}",
            f"--log-file={self.log_dir / 'tritonserver.log'}",
            "--one-process-group",
        ]
        with open(self.log_dir / "supervisor.log", "ab") as out:
            self.process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.shm = set()

    def is_ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.ports.http_port}/v2/health/ready")

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def lost_a_port(self) -> bool:
        """Its logs since it was last started say a port was taken: by its supervisor's check, Triton's bind or
        the agent's."""
        return any(port_taken_lines(log, start) for log, start in self.log_starts.items())

    def record_resources(self) -> None:
        """Remember the shared-memory files its processes map, to remove them if it dies without cleaning up."""
        if not self.exited():
            self.shm |= shm_regions(group_pids(self.pgid))

    def clean_up(self) -> None:
        """After the supervisor exited: kill whatever is left in its group, remove its shared memory and its server's
        folders (serving.server_dirs)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while group_pids(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        for path in self.shm:
            path.unlink(missing_ok=True)
        for gate_dir in self.log_dir.glob(f"{GATE_PREFIX}*"):  # beside its server's log
            remove_server_dirs(gate_dir)

    def describe(self) -> dict:
        return {"name": self.name, **vars(self.ports), "pgid": self.pgid}


class Helper:
    """A balancer or Prometheus: a foreground process in its own group, its output in ``log_path``."""

    def __init__(self, name: str, command: list[str], log_path: Path):
        self.name, self.command, self.log_path = name, command, log_path
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, timeout_s: float = 10.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self, lines: int = 5) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Cluster:
    """Start, supervise and stop the replicas, the balancers and Prometheus."""

    def __init__(
        self,
        replicas: int,
        front: FrontPorts,
        repository: Path,
        state_dir: Path,
        find: Callable[[str], str | None] = find_tool,
        max_restarts: int = MAX_RESTARTS,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``find``: looks a tool up (an executable path or None); ``max_restarts``: exits of one replica within
        RESTART_WINDOW_S that it is started again after; ``clock``: the time in seconds for that window."""
        self.front, self.state_dir, self.find = front, state_dir, find
        self.tools: dict[str, str] = {}  # name → executable, found by preflight
        admin_key = secrets.token_urlsafe(24)
        ports = [new_replica_ports() for _ in range(replicas)]
        self.replicas = [
            Replica(i, p, repository, state_dir, admin_key, RestartBudget(max_restarts, RESTART_WINDOW_S, clock))
            for i, p in enumerate(ports)
        ]
        self.helpers: list[Helper] = []
        self.stopping = threading.Event()
        self.admin_key = admin_key

    def preflight(self) -> None:
        """Refuse to start, before starting anything, when a tool is missing or a public port is taken."""
        for tool in TOOLS:
            found = self.find(tool)
            if found is None:
                raise ClusterError(f"{tool} is not installed: run `make setup` (it installs Debian's {tool})")
            self.tools[tool] = found
        taken = taken_port(
            {"gRPC": self.front.grpc_port, "HTTP": self.front.http_port, "Prometheus": self.front.prometheus_port}
        )
        if taken:
            raise ClusterError(taken)

    def start(self, timeout_s: float = 300.0) -> None:
        self.preflight()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "nginx").mkdir(exist_ok=True)
        self._write_private(self.state_dir / "admin_key", self.admin_key + "\n")
        configs = self._write_configs()
        for replica in self.replicas:
            replica.start()
        self.write_replicas_json()
        haproxy = self.tools["haproxy"]
        check = subprocess.run([haproxy, "-c", "-q", "-f", str(configs["haproxy"])], capture_output=True, text=True)
        if check.returncode != 0:
            raise ClusterError(f"haproxy refused its configuration: {check.stdout}{check.stderr}")
        self._helper("haproxy", [haproxy, "-db", "-f", str(configs["haproxy"])])
        nginx_prefix = str(self.state_dir / "nginx")
        self._helper("nginx", [self.tools["nginx"], "-e", "stderr", "-p", nginx_prefix, "-c", str(configs["nginx"])])
        self._helper(
            "prometheus",
            [
                self.tools["prometheus"],
                f"--config.file={configs['prometheus']}",
                f"--storage.tsdb.path={self.state_dir / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{self.front.prometheus_port}",
                "--storage.tsdb.retention.time=6h",
            ],
        )
        self._wait_serving(timeout_s)

    def _write_configs(self) -> dict[str, Path]:
        ports = [r.ports for r in self.replicas]
        rules, targets = self.state_dir / "prometheus-rules.yml", self.state_dir / "prometheus-targets.json"
        files = {
            "haproxy": (self.state_dir / "haproxy.cfg", haproxy_config(ports, self.front, self.state_dir)),
            "nginx": (self.state_dir / "nginx.conf", nginx_config(self.front, self.state_dir)),
            "prometheus": (self.state_dir / "prometheus.yml", prometheus_config(targets, rules)),
            "rules": (rules, prometheus_rules()),
            "targets": (targets, prometheus_targets(ports)),
        }
        for path, text in files.values():  # whole files only: Prometheus reads the targets again as they change
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        return {name: path for name, (path, _) in files.items()}

    @staticmethod
    def _write_private(path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)

    def _helper(self, name: str, command: list[str]) -> None:
        self.helpers.append(Helper(name, command, self.state_dir / f"{name}.log"))

    def _wait_serving(self, timeout_s: float) -> None:
        """Until every replica is ready, HAProxy has them all up, and nginx and Prometheus answer."""
        deadline = time.monotonic() + timeout_s
        prometheus = f"http://127.0.0.1:{self.front.prometheus_port}/-/ready"
        while time.monotonic() < deadline and not self.stopping.is_set():
            self._check_helpers()
            for replica in self.replicas:
                if replica.exited() and replica.lost_a_port():
                    self._restart(replica)
                elif replica.exited():
                    raise ClusterError(f"{replica.name} exited: see {replica.log_dir / 'supervisor.log'}")
            if all(r.is_ready() for r in self.replicas) and http_ok(prometheus):
                states = balancer_states(self.state_dir)
                if states and all(state == "UP" for state in states.values()):
                    for replica in self.replicas:
                        replica.record_resources()
                    return
            time.sleep(0.25)
        if not self.stopping.is_set():
            raise ClusterError(f"not serving after {timeout_s:.0f} s: see the logs in {self.state_dir}")

    def _check_helpers(self) -> None:
        for helper in self.helpers:
            if helper.process.poll() is not None:
                raise ClusterError(f"{helper.name} exited with {helper.process.returncode}: {helper.log_tail()}")

    def write_replicas_json(self) -> None:
        path = self.state_dir / "replicas.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([r.describe() for r in self.replicas], indent=2) + "\n")
        tmp.replace(path)

    def supervise(self, interval_s: float = 0.5) -> None:
        """Until stopped: restart a replica that exited; keep track of its shared memory."""
        tick = 0
        while not self.stopping.wait(interval_s):
            self._check_helpers()
            tick += 1
            for replica in self.replicas:
                if replica.exited():
                    self._restart(replica)
                elif tick % 4 == 0:
                    replica.record_resources()

    def _restart(self, replica: Replica) -> None:
        status = replica.process.returncode
        if not replica.restarts.record():
            raise ClusterError(
                f"{replica.name} exited {len(replica.restarts.times)} times in {RESTART_WINDOW_S:.0f} s, "
                f"last with {status}: see {replica.log_dir}"
            )
        replica.clean_up()
        if replica.lost_a_port():
            replica.ports = new_replica_ports()
            ports = ", ".join(f"{name} {port}" for name, port in vars(replica.ports).items())
            log.warning(
                "%s exited with %s, another process took a port of its: starting it on %s", replica.name, status, ports
            )
            self._write_configs()
            self._move_in_balancer(replica)
        else:
            log.warning("%s exited with %s: cleaning up, starting it again", replica.name, status)
        replica.start()
        self.write_replicas_json()

    def _move_in_balancer(self, replica: Replica, timeout_s: float = 10.0) -> None:
        """Point HAProxy at the replica's new ports (it may still be starting: its socket comes up after it has
        read its config, which may be the old one)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_helpers()
            try:
                move_replica(self.state_dir, replica.name, replica.ports)
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(f"HAProxy's runtime API does not answer: {exc}") from exc
            except RuntimeError as exc:
                raise ClusterError(str(exc)) from exc
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM every replica (each drains: out of rotation first), wait; then the balancers and Prometheus."""
        self.stopping.set()
        running = [r for r in self.replicas if r.process is not None]
        for replica in running:
            replica.record_resources()
            with contextlib.suppress(ProcessLookupError):
                os.kill(replica.pgid, signal.SIGTERM)
        for replica in running:
            try:
                replica.process.wait(REPLICA_EXIT_TIMEOUT_S + DRAIN_DELAY_S + 30)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time: killing its process group", replica.name)
            replica.clean_up()
        for helper in reversed(self.helpers):
            helper.stop()
        if running or self.helpers:
            log.info("stopped: replicas, nginx, haproxy and prometheus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--grpc-port", type=int, default=8001, help="the balancer's gRPC port")
    parser.add_argument("--http-port", type=int, default=8000, help="the balancer's HTTP port")
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="configs, logs, replicas.json")
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=MAX_RESTARTS,
        help=f"exits of one replica within {RESTART_WINDOW_S / 60:.0f} minutes that it is started again after; "
        "one more stops the cluster",
    )
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    front = FrontPorts(args.grpc_port, args.http_port, free_port(), free_port(), args.prometheus_port, free_port())
    cluster = Cluster(
        args.replicas, front, args.repository.resolve(), args.state_dir.resolve(), max_restarts=args.max_restarts
    )

    def on_signal(signum, _frame) -> None:
        log.info("%s received: stopping the cluster (replicas drain first)", signal.Signals(signum).name)
        cluster.stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        log.info("starting %d replicas", args.replicas)
        cluster.start()
        if not cluster.stopping.is_set():
            log.info(
                "serving: gRPC 127.0.0.1:%d, HTTP 127.0.0.1:%d, Prometheus http://127.0.0.1:%d; replicas in %s",
                front.grpc_port,
                front.http_port,
                front.prometheus_port,
                cluster.state_dir / "replicas.json",
            )
            cluster.supervise()
        return 0
    except ClusterError as exc:
        log.error("cannot run the cluster: %s", exc)
        return 1
    finally:
        cluster.stop()
