#!/usr/bin/env python3
"""ringsip vs Kamailio, side by side, on one core each.

What this owns: starting each proxy under test pinned to one CPU, driving it with a load
generator pinned to another CPU, and turning the runs into medians and ratios (markdown
and JSON under bench/results/). It does not own the proxies' scripts (bench/compare/
ringsip/ and bench/compare/kamailio/) nor the generator (bench/, `ringsip-load`, whose
command line and JSON report are fixed by the load generator contract).

Per scenario, per round, per proxy (proxies alternate A B A B ...), on a fresh proxy:
  (a) max_rate: the highest offered call rate with zero failed calls, found by doubling
      then bisecting over short runs;
  (b) cpu_us_per_call: proxy CPU time (utime+stime of the proxy and every process it
      forked, from /proc/PID/stat) over a run at a fixed rate, divided by completed calls;
  (c) p99 (and p50) INVITE->200 latency at 50% of this round's max_rate;
  (d) memory after (c): VmRSS and VmHWM summed over the proxy's processes, and PSS
      (/proc/PID/smaps_rollup), which counts shared memory once. Kamailio is several
      processes sharing one shm segment, so summed VmRSS over-counts it; PSS does not.
Medians over rounds, and the ratio ringsip/kamailio of each median, are reported.

With --sweep, for each proxy the latency is measured at a series of offered rates
instead (given by --sweep-rates, or as fractions of a max_rate found first); the JSON
is what bench/plot/plot_latency.py plots.

Scenario async-http also owns its HTTP server (class HttpServer): nginx, or
bench/compare/http_delay.py with --http-delay-ms, started once per invocation on a free
127.0.0.1 port pinned to the generator's CPU and stopped at the end; each run records the
server's CPU and the requests and connections it served. With --db-max-connections the
harness raises MariaDB's max_connections for the run (class MaxConnections) and restores
the old value at the end, on every exit path (SIGTERM is turned into KeyboardInterrupt).

Invariants: every target is 127.0.0.1; every child process and every loop has a
deadline; a missing binary, a proxy that does not come up or a generator set-up error
stops the run with a message and exit status 2, never a partial "result".

Generators: `ringsip-load` (default; the contract in the bench crate), or `sipp` (for
measuring Kamailio before ringsip-load exists, and for comparing the generators' own
cost). sipp reports latency in whole milliseconds; ringsip-load in microseconds.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SIPP_DIR = REPO / "bench" / "sipp"
LOCALHOST = "127.0.0.1"
SCENARIOS = ("stateless", "stateful-rr", "async-db", "async-http")
PROXIES = ("ringsip", "kamailio")
CLK_TCK = os.sysconf("SC_CLK_TCK")
DB_URL = "mysql://root@127.0.0.1:3306/test"
# A probe or measurement run may take this long past its nominal duration before it is
# killed: enough for the generator to see its last calls time out (64*T1 = 32 s).
RUN_GRACE_S = 60.0


class SetupError(Exception):
    """A condition that makes the whole comparison meaningless: stop, exit status 2."""


def log(msg: str) -> None:
    print(f"[{dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and /proc


def wait_child(proc: subprocess.Popen, deadline: float) -> tuple[int, float]:
    """Wait for `proc` until `deadline` (time.monotonic()); kill it past that.

    Returns (exit status, CPU seconds user+sys of the child from wait4's rusage).
    A killed child's status is negative (the signal), as subprocess reports it.
    On Ctrl-C the child is killed too: no generator is left running behind a run.
    """
    try:
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGTERM)
                end = time.monotonic() + 5
                while time.monotonic() < end:
                    pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                    if pid == proc.pid:
                        break
                    time.sleep(0.05)
                else:
                    proc.kill()
                    pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        proc.kill()
        os.wait4(proc.pid, 0)
        raise
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    return code, ru.ru_utime + ru.ru_stime


def process_tree(root: int) -> list[int]:
    """`root` and every live process descending from it (from /proc/*/stat ppid)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        parent[int(entry)] = int(fields[1])
    tree, frontier = [root], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        tree.extend(kids)
        frontier.extend(kids)
    return tree


def pid_cpu_split_s(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of `pid` (all its threads), in seconds; None once it has exited."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    # After the comm field: state(0) ppid(1) ... utime(11) stime(12).
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def tree_cpu_split_s(root: int) -> tuple[float, float]:
    """(utime, stime) (all threads) summed over the process tree of `root`, in seconds."""
    user = system = 0.0
    for pid in process_tree(root):
        split = pid_cpu_split_s(pid)
        if split is not None:
            user += split[0]
            system += split[1]
    return user, system


def tree_cpu_s(root: int) -> float:
    """utime+stime (all threads) summed over the process tree of `root`, in seconds."""
    return sum(tree_cpu_split_s(root))


def tree_ctx_switches(root: int) -> int:
    """Involuntary context switches, summed over every thread of the process tree of
    `root`: each is a time another task took the CPU from the proxy while it could run."""
    total = 0
    for pid in process_tree(root):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            m = re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M)
            total += int(m.group(1)) if m else 0
    return total


def cpu_steal_s(cpus: str) -> float:
    """Steal time (the hypervisor ran something else) of the CPUs in `cpus` ("0", "0,1",
    "2-3"), from /proc/stat, in seconds; 0 on bare metal."""
    want: set[int] = set()
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            want.update(range(int(lo), int(hi or lo) + 1))
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f and f[0].startswith("cpu") and f[0][3:].isdigit() and int(f[0][3:]) in want and len(f) > 8:
            total += int(f[8])
    return total / CLK_TCK


def tree_memory_kib(root: int) -> dict:
    """VmRSS, VmHWM (from status) and Pss (from smaps_rollup) summed over the tree."""
    out = {"processes": 0, "vmrss_kib": 0, "vmhwm_kib": 0, "pss_kib": 0}
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        out["processes"] += 1
        for key, name in (("vmrss_kib", "VmRSS"), ("vmhwm_kib", "VmHWM")):
            m = re.search(rf"^{name}:\s+(\d+) kB", status, re.M)
            out[key] += int(m.group(1)) if m else 0
        m = re.search(r"^Pss:\s+(\d+) kB", rollup, re.M)
        out["pss_kib"] += int(m.group(1)) if m else 0
    return out


def cmdline(pid: int) -> bytes:
    """The command line of `pid`, empty once it has exited (guards against pid reuse)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def loadavg() -> str:
    """/proc/loadavg: the machine's load, recorded with every run (other work skews figures)."""
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "?"


def udp_port_bound(port: int) -> bool:
    want = f":{port:04X} "
    try:
        return any(want in line for line in Path("/proc/net/udp").read_text().splitlines()[1:])
    except OSError:
        return False


def tcp_port_listening(port: int) -> bool:
    """A socket in state LISTEN (0A) on local port `port` (/proc/net/tcp)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        f = line.split()  # sl local_address rem_address st ...
        if len(f) > 3 and f[3] == "0A" and f[1].endswith(f":{port:04X}"):
            return True
    return False


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def wait_port_free(port: int, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while udp_port_bound(port):
        if time.monotonic() > end:
            raise SetupError(f"UDP port {port} on this host is still in use; pick other ports (--proxy-port/--uas-port)")
        time.sleep(0.1)


# ---------------------------------------------------------------- database (async-db)


class RouteTable:
    """The per-run table the async-db scenario queries, created and dropped here."""

    def __init__(self, mysql_bin: str, uas_port: int) -> None:
        self.mysql = mysql_bin
        self.name = f"ringsip_bench_route_{os.getpid()}_{int(time.time())}"
        dst = f"sip:{LOCALHOST}:{uas_port}"
        # R-URI users: "uas" (ringsip-load), "service" (sipp's default [service]).
        self._sql(
            f"CREATE TABLE {self.name} (username VARCHAR(64) PRIMARY KEY, dst VARCHAR(255) NOT NULL);"
            f"INSERT INTO {self.name} VALUES ('uas', '{dst}'), ('service', '{dst}');"
        )

    def _sql(self, sql: str) -> None:
        r = subprocess.run(
            [self.mysql, "-h", LOCALHOST, "-P", "3306", "-u", "root", "test", "-e", sql],
            capture_output=True, text=True, timeout=30,
        )
        if r.returncode != 0:
            raise SetupError(f"MariaDB at {LOCALHOST}:3306 (database test): {r.stderr.strip()}")

    def drop(self) -> None:
        self._sql(f"DROP TABLE IF EXISTS {self.name};")

    def query_from(self, delay_ms: int) -> str:
        """What the configs' queries select FROM: the table, joined with a one-row derived
        table that sleeps `delay_ms` on the server (evaluated once per query) if asked."""
        if delay_ms <= 0:
            return self.name
        return f"{self.name} JOIN (SELECT SLEEP({delay_ms / 1000:g}) AS ringsip_delay) AS ringsip_delay_t"


class DbServer:
    """The local MariaDB server process (async-db): its CPU time, read from /proc like the
    proxies', so that each run records what the DB spent per call; and, with --db-cpu, its
    threads pinned to those CPUs for the whole invocation, the old affinity restored by
    restore() (main calls it in a finally). MariaDB is one process with a thread per
    connection; threads it starts later inherit the process's affinity."""

    NAMES = ("mariadbd", "mysqld")

    def __init__(self, pin: str) -> None:
        self.pid = self._find()
        if self.pid is None:
            raise SetupError("async-db: no mariadbd/mysqld process found on this host")
        self.old_affinity: set[int] | None = None
        if pin:
            self.old_affinity = os.sched_getaffinity(self.pid)
            self._set_all(pin)
            log(f"MariaDB (pid {self.pid}) pinned to CPU {pin} for this run")

    @classmethod
    def _find(cls) -> int | None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if comm in cls.NAMES:
                return int(entry)
        return None

    def _set_all(self, cpus: str) -> None:
        r = subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(self.pid)],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise SetupError(f"taskset -a -p -c {cpus} {self.pid} (MariaDB): {r.stderr.strip()}")

    def cpu_s(self) -> float | None:
        split = pid_cpu_split_s(self.pid)
        return sum(split) if split is not None else None

    def restore(self) -> None:
        if self.old_affinity is not None:
            cpus = ",".join(str(c) for c in sorted(self.old_affinity))
            self._set_all(cpus)
            log(f"MariaDB affinity restored to CPU {cpus}")
            self.old_affinity = None


class MaxConnections:
    """MariaDB's max_connections raised with SET GLOBAL for the run (--db-max-connections),
    and the value found before restored by restore() (main calls it in a finally)."""

    def __init__(self, mysql_bin: str, want: int) -> None:
        self.mysql = mysql_bin
        self.old = int(self._sql("SELECT @@GLOBAL.max_connections;"))
        self.want = want
        self._sql(f"SET GLOBAL max_connections = {want};")
        now = int(self._sql("SELECT @@GLOBAL.max_connections;"))
        log(f"MariaDB max_connections {self.old} -> {now} for this run")
        if now != want:
            self.restore()
            raise SetupError(f"MariaDB did not take max_connections = {want} (it reports {now})")

    def _sql(self, sql: str) -> str:
        r = subprocess.run(
            [self.mysql, "-h", LOCALHOST, "-P", "3306", "-u", "root", "-N", "-B", "-e", sql],
            capture_output=True, text=True, timeout=30,
        )
        if r.returncode != 0:
            raise SetupError(f"MariaDB at {LOCALHOST}:3306: {r.stderr.strip()}")
        return r.stdout.strip()

    def restore(self) -> None:
        self._sql(f"SET GLOBAL max_connections = {self.old};")
        log(f"MariaDB max_connections restored to {self.old}")


# ---------------------------------------------------------------- HTTP server (async-http)


class HttpServer:
    """The HTTP server the async-http scenario asks for the next hop, on 127.0.0.1.

    nginx (delay 0): one worker, answers `GET /route/...` at once with 200 and the body
    `sip:127.0.0.1:UAS_PORT`; keep-alive for 75 s and up to 10^6 requests a connection
    (nginx's default, 1000, would close every connection after 1000 requests).
    http_delay.py (delay > 0): the same answer after the delay, without blocking.
    Either is pinned to the generator's CPU; its config and logs go in the run's log
    directory. --http-fault replaces the answer, to show that the calls depend on it:
    404 (status 404), wrong-hop (a sip: URI where nothing listens), down (no server).
    """

    def __init__(self, args, run_dir: Path) -> None:
        self.port = free_tcp_port()
        self.proc: subprocess.Popen | None = None
        self.fault = args.http_fault
        hop_port = args.uas_port if self.fault != "wrong-hop" else args.uas_port + 1
        body = f"sip:{LOCALHOST}:{hop_port}"
        status = 404 if self.fault == "404" else 200
        self.kind = "none" if self.fault == "down" else ("http_delay.py" if args.http_delay_ms > 0 else "nginx")
        self.log_path = run_dir / f"http-{self.kind}.log"
        if self.kind == "none":
            log(f"HTTP server: none (--http-fault down), requests go to the closed port {self.port}")
            return
        if self.kind == "nginx":
            conf = run_dir / "nginx.conf"
            for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (run_dir / "nginx-tmp" / d).mkdir(parents=True, exist_ok=True)
            tmp = run_dir / "nginx-tmp"
            conf.write_text(f"""# written by bench/compare/compare.py for the async-http scenario
worker_processes 1;
daemon off;
pid {run_dir}/nginx.pid;
error_log {run_dir}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {LOCALHOST}:{self.port};
        location /route/ {{
            default_type text/plain;
            return {status} "{body}";
        }}
        location = /stats {{ stub_status; }}
        location / {{ return 404; }}
    }}
}}
""")
            argv = ["taskset", "-c", args.load_cpu, args.nginx, "-e", str(run_dir / "nginx-error.log"),
                    "-p", str(run_dir), "-c", str(conf)]
        else:
            if self.fault == "404":
                raise SetupError("--http-fault 404 is only implemented with nginx (--http-delay-ms 0)")
            argv = ["taskset", "-c", args.load_cpu, sys.executable, str(HERE / "http_delay.py"),
                    "--port", str(self.port), "--delay-ms", str(args.http_delay_ms), "--body", body]
        self.argv = argv
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        end = time.monotonic() + 10
        while not tcp_port_listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise SetupError(f"{self.kind} did not listen on {LOCALHOST}:{self.port}; see {self.log_path}")
            time.sleep(0.05)
        log(f"HTTP server: {self.kind} on {LOCALHOST}:{self.port} (pid {self.proc.pid}), answer {status} {body}"
            + (f" after {args.http_delay_ms} ms" if self.kind == "http_delay.py" else ""))

    def counts(self) -> dict:
        """Connections accepted and requests served so far (nginx stub_status, or
        http_delay.py's /stats); {} when unreachable. The /stats request itself is
        excluded from both counts."""
        import urllib.request
        if self.proc is None:
            return {}
        try:
            with urllib.request.urlopen(f"http://{LOCALHOST}:{self.port}/stats", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        if self.kind == "nginx":
            # "Active connections: N \nserver accepts handled requests\n A H R \n..."
            m = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.M)
            return {"connections": int(m.group(1)) - 1, "requests": int(m.group(3)) - 1} if m else {}
        m = re.match(r"connections (\d+) requests (\d+)", text)
        return {"connections": int(m.group(1)) - 1, "requests": int(m.group(2))} if m else {}

    def cpu_s(self) -> float | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        return tree_cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # nginx: fast shutdown; http_delay.py: exit
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


# ---------------------------------------------------------------- proxies under test


class Proxy:
    """One proxy process (and its children) pinned with taskset, logs to a file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, port: int, ready_line: str | None):
        self.name, self.argv, self.log_path, self.port, self.ready_line = name, argv, log_path, port, ready_line
        self.proc: subprocess.Popen | None = None
        self.mgmt_port: int | None = None  # ringsip's --mgmt port
        self.sample_suspended = False  # poll the suspended count during runs (delay scenarios)
        self.uses_http = False  # async-http: the HTTP server's CPU is recorded per run
        self.uses_db = False  # async-db: MariaDB's CPU is recorded per run

    def metrics(self) -> dict[str, float]:
        """ringsip's /metrics, summed over label sets ({} if not sampled or unreachable)."""
        if self.mgmt_port is None:
            return {}
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://{LOCALHOST}:{self.mgmt_port}/metrics", timeout=1) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#") or " " not in line:
                continue
            key, value = line.rsplit(" ", 1)
            try:
                out[key.split("{")[0]] = out.get(key.split("{")[0], 0.0) + float(value)
            except ValueError:
                pass
        return out

    def start(self, timeout_s: float = 20.0) -> None:
        wait_port_free(self.port)
        logf = open(self.log_path, "ab")
        logf.write(f"\n=== {' '.join(self.argv)}\n".encode())
        logf.flush()
        self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        ready = threading.Event()

        def pump() -> None:  # copy stderr to the log, note the ready line
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                logf.write(line)
                logf.flush()
                if self.ready_line and self.ready_line.encode() in line:
                    ready.set()
            logf.close()

        threading.Thread(target=pump, daemon=True).start()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SetupError(f"{self.name} exited with status {self.proc.returncode} at start; see {self.log_path}")
            up = ready.is_set() if self.ready_line else udp_port_bound(self.port)
            if up:
                # Kamailio binds before forking its workers; give them time to start.
                time.sleep(1.0)
                if self.proc.poll() is not None:
                    raise SetupError(f"{self.name} exited with status {self.proc.returncode} at start; see {self.log_path}")
                return
            time.sleep(0.05)
        self.stop()
        what = f"print '{self.ready_line}'" if self.ready_line else f"bind UDP {LOCALHOST}:{self.port}"
        raise SetupError(f"{self.name} did not {what} within {timeout_s:.0f} s; see {self.log_path}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_s(self) -> float:
        assert self.proc is not None
        return tree_cpu_s(self.proc.pid)

    def cpu_split_s(self) -> tuple[float, float]:
        assert self.proc is not None
        return tree_cpu_split_s(self.proc.pid)

    def preemptions(self) -> int:
        assert self.proc is not None
        return tree_ctx_switches(self.proc.pid)

    def memory(self) -> dict:
        assert self.proc is not None
        return tree_memory_kib(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM the proxy; then end, by pid, any of its processes still alive.

        With -DD the process started is Kamailio's "creator", which forks the main
        process and, signalled, can exit while main and the workers go on. So the tree
        is noted before the signal; members still running the same command line get
        SIGTERM, and SIGKILL if still there 10 s later.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        members = {pid: cmdline(pid) for pid in process_tree(self.proc.pid)}
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        end = time.monotonic() + 10
        termed = False
        while True:
            left = [pid for pid, cmd in members.items() if cmd and cmdline(pid) == cmd]
            if not left:
                return
            if not termed:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                termed = True
            if time.monotonic() > end:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return
            time.sleep(0.1)


def render_ringsip_script(src: Path, dst: Path, port: int, table: str | None, db_pool: int = 0,
                          http_port: int | None = None, db_max_queued: int = -1) -> None:
    text = src.read_text()
    subs = [("socket=udp:127.0.0.1:5060", f"socket=udp:{LOCALHOST}:{port}")]
    if table is not None:
        subs += [("FROM ringsip_bench_route", f"FROM {table}"), (DB_URL, DB_URL)]
        if db_pool > 0:
            subs += [('modparam("avpops", "pool_size", 4)', f'modparam("avpops", "pool_size", {db_pool})')]
        if db_max_queued >= 0:
            subs += [('modparam("avpops", "max_queued_queries", 64)',
                      f'modparam("avpops", "max_queued_queries", {db_max_queued})')]
    if http_port is not None:
        subs += [("http://127.0.0.1:8080", f"http://{LOCALHOST}:{http_port}")]
    for old, new in subs:
        if old not in text:
            raise SetupError(f"{src}: expected the text '{old}' to substitute")
        text = text.replace(old, new)
    dst.write_text(text)


def make_proxy(name: str, scenario: str, args, workdir: Path, table: str | None,
               http_port: int | None = None) -> Proxy:
    port = args.proxy_port
    logp = args.out_dir_run / f"{name}-{scenario}.log"
    if name == "kamailio":
        cfg = HERE / "kamailio" / f"{scenario}.cfg"
        argv = ["taskset", "-c", args.proxy_cpu, args.kamailio, "-f", str(cfg), "-DD", "-E",
                "-m", str(args.kamailio_shm), "-M", "32", "-x", args.kamailio_mem, "-w", str(workdir), "-A", f"PORT={port}"]
        if table is not None:
            argv += [f"--substdef=!DB_TABLE!{table}!"]
        if http_port is not None:
            argv += [f"--substdef=!HTTP_PORT!{http_port}!"]
            if not args.kamailio_http_query:
                argv += ["-A", "WITH_KEEPALIVE"]
        argv += args.kamailio_arg
        proxy = Proxy(name, argv, logp, port, None)
        proxy.uses_http = http_port is not None
        proxy.uses_db = table is not None
        return proxy
    script = workdir / f"ringsip-{scenario}.cfg"
    render_ringsip_script(HERE / "ringsip" / f"{scenario}.cfg", script, port, table, args.db_pool,
                          http_port, args.db_max_queued)
    argv = ["taskset", "-c", args.proxy_cpu, args.ringsip, "-f", str(script), "--cpus", args.proxy_cpu]
    # The management endpoint: the suspended-transaction sampler (delay scenarios) and
    # the loop's long-turn counters read before and after every run.
    mgmt = port + 1000
    argv += ["--mgmt", f"{LOCALHOST}:{mgmt}"]
    sample = (table is not None and args.db_delay_ms > 0) or (http_port is not None and args.http_delay_ms > 0)
    argv += args.ringsip_arg
    proxy = Proxy(name, argv, logp, port, "ringsip ready")
    proxy.mgmt_port = mgmt
    proxy.sample_suspended = sample
    proxy.uses_http = http_port is not None
    proxy.uses_db = table is not None
    return proxy


# ---------------------------------------------------------------- load generators


def pct(sorted_vals: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def run_ringsip_load(args, rate: float, duration: float, workdir: Path) -> dict:
    """One `ringsip-load run` (UAC and in-process UAS), pinned to the generator CPU."""
    out = workdir / f"load-{time.monotonic_ns()}.json"
    argv = ["taskset", "-c", args.load_cpu, args.load, "run",
            "--target", f"{LOCALHOST}:{args.proxy_port}", "--scenario", "call",
            "--rate", f"{rate:g}", "--duration", f"{duration:g}",
            "--uas", f"{LOCALHOST}:{args.uas_port}", "--local-ip", LOCALHOST,
            "--cpus", args.load_cpu, "--json", str(out), "--quiet"]
    with open(workdir / "ringsip-load.log", "ab") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        code, _ = wait_child(proc, time.monotonic() + duration + RUN_GRACE_S)
    if code != 0:
        raise SetupError(f"ringsip-load exited with status {code} ({' '.join(argv)}); see {workdir}/ringsip-load.log")
    try:
        rep = json.loads(out.read_text())
    except (OSError, ValueError) as e:
        raise SetupError(f"ringsip-load wrote no readable report {out}: {e}") from e
    inv = rep.get("latency_us", {}).get("invite_200", {})
    cpu = rep.get("cpu", {})
    return {
        "offered_rate": rate,
        "achieved_rate": rep["achieved_rate"],
        "calls_started": rep["calls_started"],
        "calls_ok": rep["calls_ok"],
        "calls_failed": rep["calls_failed"],
        "retransmissions": rep.get("retransmissions"),
        "invite_200_p50_us": inv.get("p50"),
        "invite_200_p99_us": inv.get("p99"),
        "latency_resolution_us": 1,
        "generator_cpu_s": cpu.get("user_s", 0.0) + cpu.get("sys_s", 0.0),
        # the final responses that failed calls, e.g. {"INVITE 408": 12}
        "failures_by_status": rep.get("failures", {}).get("by_status", {}),
        "generator_report": rep,
    }


def run_sipp(args, rate: float, duration: float, workdir: Path) -> dict:
    """One sipp run: a UAS and a UAC (bench/sipp/*.xml), both pinned to the generator CPU."""
    calls = max(1, int(round(rate * duration)))
    run = workdir / f"sipp-{time.monotonic_ns()}"
    run.mkdir()
    deadline = time.monotonic() + duration + RUN_GRACE_S
    uas_argv = ["taskset", "-c", args.load_cpu, args.sipp, "-sf", str(SIPP_DIR / "uas.xml"),
                "-i", LOCALHOST, "-p", str(args.uas_port), "-m", str(calls), "-nostdin", "-trace_err"]
    wait_port_free(args.uas_port)
    uas = subprocess.Popen(uas_argv, cwd=run, stdout=subprocess.DEVNULL, stderr=open(run / "uas.err", "wb"),
                           stdin=subprocess.DEVNULL)
    end = time.monotonic() + 5
    while not udp_port_bound(args.uas_port):
        if uas.poll() is not None or time.monotonic() > end:
            wait_child(uas, time.monotonic())
            raise SetupError(f"sipp UAS did not bind {LOCALHOST}:{args.uas_port}; see {run}")
        time.sleep(0.05)
    uac_argv = ["taskset", "-c", args.load_cpu, args.sipp, "-sf", str(SIPP_DIR / "uac.xml"),
                f"{LOCALHOST}:{args.uas_port}", "-i", LOCALHOST, "-p", str(args.uac_port),
                "-rsa", f"{LOCALHOST}:{args.proxy_port}", "-m", str(calls), "-r", f"{rate:g}",
                "-l", str(int(rate * 4) + 1000), "-d", "0", "-nostdin",
                "-trace_stat", "-fd", "3600", "-trace_err", "-trace_rtt", "-rtt_freq", "1"]
    t0 = time.monotonic()
    uac = subprocess.Popen(uac_argv, cwd=run, stdout=open(run / "uac.out", "wb"), stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
    try:
        uac_code, uac_cpu = wait_child(uac, deadline)
    except KeyboardInterrupt:
        uas.kill()
        os.wait4(uas.pid, 0)
        raise
    elapsed = time.monotonic() - t0
    # The UAS ends by itself 0.5 s after its last call (uas.xml timewait); when calls
    # failed it waits for calls that never come, so give it 5 s past the UAC, no more.
    uas_code, uas_cpu = wait_child(uas, time.monotonic() + 5)
    # 0: all calls succeeded, 1: some failed; negative: killed at its deadline (it could
    # not place or finish its calls in time: an overload, counted as failed calls).
    killed = uac_code < 0
    if uac_code not in (0, 1) and not killed:
        raise SetupError(f"sipp UAC exited with status {uac_code}; see {run}")
    stats = sorted(run.glob("uac_*_.csv"))
    rows = []
    if stats:
        with open(stats[-1], newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
    if rows:
        last = rows[-1]
    elif killed:
        last = {"SuccessfulCall(C)": "0", "FailedCall(C)": "0", "TotalCallCreated": "0", "Retransmissions(C)": "0"}
    else:
        raise SetupError(f"sipp wrote no -trace_stat file in {run}")
    ok, failed = int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"])
    rtts: list[float] = []
    stamps: list[float] = []  # ms since sipp's start at which each 200 to an INVITE came
    for rtt in run.glob("uac_*_rtt.csv"):
        with open(rtt, newline="") as f:
            for row in csv.DictReader(f, delimiter=";"):
                if row.get("rtd_no") == "1":
                    rtts.append(float(row["response_time_ms"]) * 1000.0)
                    stamps.append(float(row["Date_ms"]))
    rtts.sort()
    # Achieved rate over the span of the answered INVITEs (plus one call interval): the
    # process's wall time would also count sipp's start-up and the last calls' tail,
    # about 0.1-0.3 s, enough to fail a 5 s run at the 95 % criterion.
    if len(stamps) >= 2 and rate > 0:
        span_s = (max(stamps) - min(stamps)) / 1000.0 + 1.0 / rate
    else:
        span_s = elapsed
    if not args.keep_runs:
        shutil.rmtree(run, ignore_errors=True)
    return {
        "offered_rate": rate,
        "achieved_rate": (ok + failed) / span_s if span_s > 0 else 0.0,
        "calls_started": int(last["TotalCallCreated"]),
        "calls_ok": ok,
        "calls_failed": failed + max(0, calls - ok - failed),  # never started = not a success
        "retransmissions": int(last["Retransmissions(C)"]),
        "invite_200_p50_us": pct(rtts, 50),
        "invite_200_p99_us": pct(rtts, 99),
        "latency_resolution_us": 1000,
        "generator_cpu_s": uac_cpu + uas_cpu,
        "generator_exit": {"uac": uac_code, "uas": uas_code, "uac_killed_at_deadline": killed},
    }


def run_load(args, proxy: Proxy, rate: float, duration: float, workdir: Path) -> dict:
    """One run at `rate` for `duration`; adds the proxy's CPU time over the run."""
    if not proxy.alive():
        raise SetupError(f"{proxy.name} is no longer running; see {proxy.log_path}")
    user0, sys0 = proxy.cpu_split_s()
    cpu0 = user0 + sys0
    pre0, steal0 = proxy.preemptions(), cpu_steal_s(args.proxy_cpu)
    turns0 = proxy.metrics()
    http = getattr(args, "http_server", None) if proxy.uses_http else None
    http0 = http.cpu_s() if http is not None else None
    count0 = http.counts() if http is not None else {}
    db = getattr(args, "db_server", None) if proxy.uses_db else None
    db0 = db.cpu_s() if db is not None else None
    gen = run_sipp if args.generator == "sipp" else run_ringsip_load
    sampled: dict = {}
    stop = threading.Event()
    sampler = None
    if proxy.mgmt_port is not None and proxy.sample_suspended:
        base = proxy.metrics()
        sampled = {"rss_before_bytes": base.get("ringsip_resident_bytes"), "suspended_peak": 0.0,
                   "transactions_at_peak": None, "rss_at_peak_bytes": None}

        def sample() -> None:  # the peak of suspended transactions and the RSS then
            while not stop.wait(0.1):
                m = proxy.metrics()
                n = m.get("ringsip_suspended_transactions", 0.0)
                if n >= sampled["suspended_peak"]:
                    sampled.update(suspended_peak=n, rss_at_peak_bytes=m.get("ringsip_resident_bytes"),
                                   transactions_at_peak=m.get("ringsip_transactions"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    t0 = time.monotonic()
    try:
        res = gen(args, rate, duration, workdir)
    finally:
        stop.set()
        if sampler is not None:
            sampler.join(timeout=5)
    res["wall_s"] = time.monotonic() - t0
    if sampled:
        res["ringsip_metrics"] = sampled
    user1, sys1 = proxy.cpu_split_s()
    res["proxy_cpu_s"] = user1 + sys1 - cpu0
    # User vs kernel as /proc charges them: whole scheduler ticks, so for a proxy that
    # sleeps between packets the split is rough (bench/compare/perf-split.sh measures it
    # with perf); the sum is what the other figures use.
    res["proxy_user_s"], res["proxy_sys_s"] = user1 - user0, sys1 - sys0
    # Time the proxy could not run: preempted by another task on its CPU, or its vCPU
    # not run by the hypervisor (steal); and, for ringsip, its loop turns over 1 ms.
    res["proxy_preemptions"] = proxy.preemptions() - pre0
    res["proxy_cpu_steal_s"] = cpu_steal_s(args.proxy_cpu) - steal0
    turns1 = proxy.metrics()
    if turns0 and turns1:
        res["proxy_turns_over_1ms"] = (turns1.get("ringsip_runtime_turns_over_1ms", 0)
                                       - turns0.get("ringsip_runtime_turns_over_1ms", 0))
        res["proxy_longest_turn_us"] = turns1.get("ringsip_runtime_longest_turn_us")
    if http0 is not None:
        http1 = http.cpu_s()
        # The HTTP server shares the generator's CPU; one request per call.
        res["http_server"] = http.kind
        count1 = http.counts()
        if count0 and count1:
            # Keep-alive at work: HTTP requests and TCP connections over this run (+1
            # each: the first of the two /stats requests).
            res["http_requests"] = count1["requests"] - count0["requests"]
            res["http_connections"] = count1["connections"] - count0["connections"]
        res["http_server_cpu_s"] = http1 - http0 if http1 is not None else None
        res["http_server_cpu_us_per_call"] = (res["http_server_cpu_s"] * 1e6 / res["calls_ok"]
                                              if res["calls_ok"] and http1 is not None else None)
    if db0 is not None:
        db1 = db.cpu_s()
        # MariaDB runs where --db-cpu put it (default: anywhere, sharing both CPUs).
        res["db_server_cpu_s"] = db1 - db0 if db1 is not None else None
        res["db_server_cpu_us_per_call"] = (res["db_server_cpu_s"] * 1e6 / res["calls_ok"]
                                            if res["calls_ok"] and db1 is not None else None)
        res["db_server_cpu_share"] = (res["db_server_cpu_s"] / res["wall_s"]
                                      if db1 is not None and res["wall_s"] > 0 else None)
    # CPU seconds per wall second: near 1.0 the generator (or the proxy) had its whole
    # core, and a failed run may be the generator's limit rather than the proxy's.
    res["generator_cpu_share"] = res["generator_cpu_s"] / res["wall_s"] if res["wall_s"] > 0 else None
    res["proxy_cpu_share"] = res["proxy_cpu_s"] / res["wall_s"] if res["wall_s"] > 0 else None
    res["loadavg"] = loadavg()
    done = res["calls_ok"]
    res["proxy_cpu_us_per_call"] = res["proxy_cpu_s"] * 1e6 / done if done else None
    res["proxy_user_us_per_call"] = res["proxy_user_s"] * 1e6 / done if done else None
    res["proxy_sys_us_per_call"] = res["proxy_sys_s"] * 1e6 / done if done else None
    res["generator_cpu_us_per_call"] = res["generator_cpu_s"] * 1e6 / done if done else None
    if not proxy.alive():
        raise SetupError(f"{proxy.name} died during a run at {rate:g} cps; see {proxy.log_path}")
    return res


def passed(res: dict) -> bool:
    return res["calls_failed"] == 0 and res["calls_ok"] > 0 and res["achieved_rate"] >= 0.95 * res["offered_rate"]


def search_max_rate(args, proxy: Proxy, workdir: Path, budget_end: float) -> dict:
    """Highest rate with zero failures: double from --start-rate, then bisect.

    Bounded: at most --max-probes probes, never above --max-rate, stops when the
    bracket is narrower than --precision (relative) or the time budget is spent.
    """
    probes, lo, hi = [], 0.0, None
    rate = float(args.start_rate)
    while len(probes) < args.max_probes:
        if time.monotonic() > budget_end:
            raise SetupError("time limit reached during the rate search (--time-limit)")
        res = run_load(args, proxy, rate, args.search_duration, workdir)
        ok = passed(res)
        probes.append({k: res[k] for k in ("offered_rate", "achieved_rate", "calls_ok", "calls_failed",
                                            "retransmissions", "proxy_cpu_us_per_call", "proxy_cpu_s",
                                            "generator_cpu_s", "wall_s", "loadavg")}
                      | {k: res[k] for k in ("failures_by_status", "db_server_cpu_share", "proxy_preemptions",
                                             "proxy_turns_over_1ms") if k in res}
                      | {"passed": ok})
        log(f"  {proxy.name}: probe {rate:>8.0f} cps -> {'ok' if ok else 'FAIL'} "
            f"(achieved {res['achieved_rate']:.0f}, failed {res['calls_failed']})")
        if ok:
            lo = rate
            time.sleep(args.cooldown)
        else:
            hi = rate
            # An overloaded probe leaves transactions behind in both proxies (they wait for
            # wt_timer, 5 s in both); let them end before the next probe.
            time.sleep(max(args.cooldown, args.overload_cooldown))
        if hi is None:
            if rate >= args.max_rate:
                break
            rate = min(rate * 2, float(args.max_rate))
        else:
            if lo == 0.0 and hi <= args.start_rate / 8:
                break  # fails even at a tiny rate: something is wrong, report 0
            if lo > 0 and (hi - lo) / lo <= args.precision:
                break
            rate = (lo + hi) / 2 if lo > 0 else hi / 2
            rate = float(round(rate))
    return {"max_rate": lo, "ceiling_hit": hi is None, "probes": probes}


# ---------------------------------------------------------------- the comparison


def median_or_none(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def passed_get(rec: dict, part: str, key: str):
    """A figure from a run that had no failed call; None (shown as "–") otherwise."""
    res = rec.get(part)
    return res.get(key) if res and res.get("passed") else None


def summarize(runs: list[dict], scenarios, proxies) -> dict:
    metrics = {
        "max_rate_cps": lambda r: r.get("search", {}).get("max_rate"),
        "cpu_us_per_call": lambda r: passed_get(r, "cpu", "proxy_cpu_us_per_call"),
        "user_us_per_call": lambda r: passed_get(r, "cpu", "proxy_user_us_per_call"),
        "sys_us_per_call": lambda r: passed_get(r, "cpu", "proxy_sys_us_per_call"),
        "p50_invite_200_us_at_half_max": lambda r: passed_get(r, "latency", "invite_200_p50_us"),
        "p99_invite_200_us_at_half_max": lambda r: passed_get(r, "latency", "invite_200_p99_us"),
        "pss_kib": lambda r: r.get("memory", {}).get("pss_kib"),
        "vmrss_sum_kib": lambda r: r.get("memory", {}).get("vmrss_kib"),
        "generator_cpu_us_per_call": lambda r: passed_get(r, "cpu", "generator_cpu_us_per_call"),
        # async-http only: the HTTP server's CPU (on the generator's core), one request a call
        "http_server_cpu_us_per_call": lambda r: passed_get(r, "cpu", "http_server_cpu_us_per_call"),
        # async-db only: MariaDB's CPU (all its threads), one query a call
        "db_server_cpu_us_per_call": lambda r: passed_get(r, "cpu", "db_server_cpu_us_per_call"),
    }
    out: dict = {}
    for sc in scenarios:
        out[sc] = {}
        for m, get in metrics.items():
            row = {p: median_or_none([get(r) for r in runs if r["scenario"] == sc and r["proxy"] == p])
                   for p in proxies}
            if row.get("ringsip") and row.get("kamailio"):
                row["ratio_ringsip_over_kamailio"] = row["ringsip"] / row["kamailio"]
            out[sc][m] = row
    return out


def markdown(summary: dict, proxies, meta: dict) -> str:
    lines = [f"# ringsip vs Kamailio — {meta['started_utc']}", "",
             f"Generator: {meta['generator']}; rounds: {meta['rounds']}; proxy CPU {meta['proxy_cpu']}, "
             f"generator CPU {meta['load_cpu']}; fixed CPU rate: {meta['cpu_rate']} cps. Medians over rounds.",
             f"Load average at start / end: {meta['loadavg_start']} / {meta.get('loadavg_end', '?')}.",
             "A \"–\" is a figure whose run had failed calls (or no run)."]
    if meta["generator"] == "sipp":
        lines.append("sipp measures latency in whole milliseconds: 0 us means under 1 ms.")
    lines.append("")
    cols = list(proxies) + (["ringsip/kamailio"] if len(proxies) == 2 else [])
    for sc, metrics in summary.items():
        lines += [f"## {sc}", "", "| metric | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for m, row in metrics.items():
            cells = [fmt(row.get(p)) for p in proxies]
            if len(proxies) == 2:
                r = row.get("ratio_ringsip_over_kamailio")
                cells.append(f"{r:.2f}" if r is not None else "–")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def sweep_markdown(runs: list[dict], meta: dict) -> str:
    """The points of a sweep, one row each: rate, failures, latency, and (when sampled)
    ringsip's suspended peak and RSS growth, and the HTTP server's CPU per call."""
    lines = [f"# latency sweep — {meta['started_utc']}", "",
             f"Load average at start / end: {meta['loadavg_start']} / {meta.get('loadavg_end', '?')}. "
             f"db_delay_ms {meta.get('db_delay_ms')}, db_pool {meta.get('db_pool')}, "
             f"http_delay_ms {meta.get('http_delay_ms')}.", "",
             "| scenario | proxy | round | offered | achieved | failed | p50 ms | p99 ms | suspended peak "
             "| transactions then | RSS before → at peak (MB) | RSS growth / suspended (KB) "
             "| RSS growth / transaction (KB) | HTTP server µs/call | DB server µs/call (CPU share) "
             "| proxy CPU share | proxy preempted | steal ms | turns > 1 ms | load avg |",
             "|---" * 20 + "|"]
    for r in runs:
        for pt in r.get("points", []):
            m = pt.get("ringsip_metrics") or {}
            peak, before, at = m.get("suspended_peak"), m.get("rss_before_bytes"), m.get("rss_at_peak_bytes")
            txns = m.get("transactions_at_peak")
            per = f"{(at - before) / peak / 1000:.1f}" if peak and before is not None and at is not None else "–"
            per_t = f"{(at - before) / txns / 1000:.1f}" if txns and before is not None and at is not None else "–"
            rss = f"{before / 1e6:.0f} → {at / 1e6:.0f}" if before is not None and at is not None else "–"
            p50, p99 = pt.get("invite_200_p50_us"), pt.get("invite_200_p99_us")
            lines.append(
                f"| {r['scenario']} | {r['proxy']} | {r['round']} | {pt['offered_rate']:.0f} | {pt['achieved_rate']:.0f} "
                f"| {pt['calls_failed']} | {p50 / 1000 if p50 is not None else float('nan'):.2f} "
                f"| {p99 / 1000 if p99 is not None else float('nan'):.2f} | {fmt(peak)} | {fmt(txns)} | {rss} | {per} | {per_t} "
                f"| {fmt(pt.get('http_server_cpu_us_per_call'))} "
                f"| {fmt(pt.get('db_server_cpu_us_per_call'))} ({fmt(pt.get('db_server_cpu_share'))}) "
                f"| {fmt(pt.get('proxy_cpu_share'))} | {fmt(pt.get('proxy_preemptions'))} "
                f"| {fmt(pt['proxy_cpu_steal_s'] * 1000 if pt.get('proxy_cpu_steal_s') is not None else None)} "
                f"| {fmt(pt.get('proxy_turns_over_1ms'))} | {pt.get('loadavg', '?').split(' ')[0]} |")
    return "\n".join(lines)


def fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}"


def machine_info(args) -> dict:
    info = {"uname": " ".join(platform.uname()), "nproc": os.cpu_count()}
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        info["mem_total_kib"] = int(m.group(1)) if m else None
        cpu = re.search(r"model name\s+: (.*)", Path("/proc/cpuinfo").read_text())
        info["cpu_model"] = cpu.group(1) if cpu else None
    except OSError:
        pass
    if "kamailio" in args.proxies:
        r = subprocess.run([args.kamailio, "-v"], capture_output=True, text=True, timeout=10)
        info["kamailio_version"] = r.stdout.splitlines()[0] if r.stdout else None
    if args.generator == "sipp":
        r = subprocess.run([args.sipp, "-v"], capture_output=True, text=True, timeout=10)
        info["sipp_version"] = next((line.strip() for line in r.stdout.splitlines() if "SIPp" in line), None)
    return info


def resolve_bin(path: str, what: str, hint: str) -> str:
    found = shutil.which(path) if os.sep not in path else (path if os.access(path, os.X_OK) else None)
    if not found:
        raise SetupError(f"{what} not found or not executable: '{path}'. {hint}")
    return os.path.abspath(found)


def parse_args(argv=None):
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Environment: RINGSIP_BIN, KAMAILIO_BIN, RINGSIP_LOAD_BIN, SIPP_BIN, "
                                       "COMPARE_ROUNDS, COMPARE_SCENARIOS, COMPARE_PROXIES, COMPARE_GENERATOR.")
    p.add_argument("--proxies", default=env("COMPARE_PROXIES", "ringsip,kamailio"),
                   help="comma list, run in this order every round (default ringsip,kamailio)")
    p.add_argument("--scenarios", default=env("COMPARE_SCENARIOS", ",".join(SCENARIOS)))
    p.add_argument("--rounds", type=int, default=int(env("COMPARE_ROUNDS", "3")))
    p.add_argument("--generator", choices=("ringsip-load", "sipp"), default=env("COMPARE_GENERATOR", "ringsip-load"))
    p.add_argument("--ringsip", default=env("RINGSIP_BIN", str(REPO / "target/release/ringsip")))
    p.add_argument("--ringsip-arg", action="append", default=[], help="extra argument for ringsip (repeatable)")
    p.add_argument("--kamailio", default=env("KAMAILIO_BIN", "kamailio"))
    p.add_argument("--kamailio-arg", action="append", default=[],
                   help="extra argument for kamailio (repeatable), e.g. -A CHILDREN=4 as two")
    p.add_argument("--kamailio-mem", default=env("KAMAILIO_MEM", "tlsf"), choices=("tlsf", "fm", "qm"),
                   help="Kamailio memory manager (-x; -X follows it). Default tlsf: the Debian build's default, qm, "
                        "spends >90%% of a stateless call's instructions in qm_malloc (docs/PERFORMANCE.md)")
    p.add_argument("--kamailio-shm", type=int, default=int(env("KAMAILIO_SHM", "1024")),
                   help="Kamailio shared memory, MiB (-m). Default 1024: with 64 (Kamailio's default) tm runs out "
                        "of shared memory near 500 calls/s and answers 500 (docs/PERFORMANCE.md)")
    p.add_argument("--load", default=env("RINGSIP_LOAD_BIN", str(REPO / "target/release/ringsip-load")))
    p.add_argument("--sipp", default=env("SIPP_BIN", "sipp"))
    p.add_argument("--mysql", default=env("MYSQL_BIN", "mysql"))
    p.add_argument("--proxy-cpu", default="0")
    p.add_argument("--load-cpu", default="1")
    p.add_argument("--proxy-port", type=int, default=5060)
    p.add_argument("--uas-port", type=int, default=5070)
    p.add_argument("--uac-port", type=int, default=5080, help="sipp UAC port (sipp generator only)")
    p.add_argument("--search-duration", type=float, default=5.0, help="seconds per probe of the rate search")
    p.add_argument("--measure-duration", type=float, default=10.0, help="seconds of the CPU and latency runs")
    p.add_argument("--start-rate", type=float, default=500.0)
    p.add_argument("--max-rate", type=float, default=100000.0)
    p.add_argument("--max-probes", type=int, default=12)
    p.add_argument("--precision", type=float, default=0.05, help="relative width at which bisection stops")
    p.add_argument("--cooldown", type=float, default=2.0, help="seconds idle after each run")
    p.add_argument("--overload-cooldown", type=float, default=8.0,
                   help="seconds idle after a failed probe, so that the overload's transactions end "
                        "(tm wt_timer is 5 s in ringsip and Kamailio)")
    p.add_argument("--cpu-rate", type=float, default=1000.0, help="fixed call rate of the CPU-per-call run")
    p.add_argument("--db-delay-ms", type=int, default=0,
                   help="async-db: make every query take this long on the server (a derived table with "
                        "SELECT SLEEP()); ringsip then also runs with --mgmt so the peak of suspended "
                        "transactions and the memory growth are recorded")
    p.add_argument("--db-pool", type=int, default=0,
                   help="async-db: ringsip's avpops pool_size (connections per shard); 0 keeps the config's")
    p.add_argument("--db-max-queued", type=int, default=-1,
                   help="async-db: ringsip's avpops max_queued_queries (calls waiting for a busy connection, "
                        "per shard); -1 keeps the config's (64)")
    p.add_argument("--db-max-connections", type=int, default=0,
                   help="async-db: SET GLOBAL max_connections on MariaDB to this for the run and restore the "
                        "old value afterwards (also on error or Ctrl-C); 0 leaves it (MariaDB's default is 151, "
                        "which caps --db-pool)")
    p.add_argument("--db-cpu", default="",
                   help="async-db: pin MariaDB's threads (taskset -a) to these CPUs for the run, e.g. the "
                        "generator's, and restore the old affinity afterwards; default: leave it (it then "
                        "shares the proxy's CPU)")
    p.add_argument("--http-delay-ms", type=int, default=0,
                   help="async-http: answer every HTTP request after this delay (bench/compare/http_delay.py, "
                        "asyncio) instead of nginx; ringsip then also runs with --mgmt (suspended peak, RSS)")
    p.add_argument("--http-fault", choices=("none", "404", "wrong-hop", "down"), default="none",
                   help="async-http: a wrong HTTP answer, to check that calls depend on it: 404, a next hop where "
                        "nothing listens, or no HTTP server at all")
    p.add_argument("--kamailio-http-query", action="store_true",
                   help="async-http: Kamailio uses http_client_query (a new TCP connection per request) instead "
                        "of http_connect over a keep-alive connection (-A WITH_KEEPALIVE, the default)")
    p.add_argument("--nginx", default=env("NGINX_BIN", "nginx"))
    p.add_argument("--alternate-scenarios", action="store_true",
                   help="rounds outermost: round 1 of every scenario, then round 2 ... (default: all rounds "
                        "of one scenario, then the next)")
    p.add_argument("--sweep", action="store_true", help="latency sweep mode (see --sweep-rates/--sweep-fractions)")
    p.add_argument("--sweep-rates", default="", help="comma list of offered rates; else fractions of a searched max")
    p.add_argument("--sweep-fractions", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    p.add_argument("--time-limit", type=float, default=4 * 3600.0, help="seconds; the run stops with an error past it")
    p.add_argument("--out-dir", default=str(REPO / "bench" / "results"))
    p.add_argument("--keep-runs", action="store_true", help="keep each generator run's files")
    a = p.parse_args(argv)
    a.proxies = [x for x in a.proxies.split(",") if x]
    a.scenarios = [x for x in a.scenarios.split(",") if x]
    for x in a.proxies:
        if x not in PROXIES:
            p.error(f"unknown proxy '{x}' (known: {', '.join(PROXIES)})")
    for x in a.scenarios:
        if x not in SCENARIOS:
            p.error(f"unknown scenario '{x}' (known: {', '.join(SCENARIOS)})")
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    return a


def check_setup(a) -> None:
    build = "Build it with: cargo build --release -p ringsip-bench (ringsip-load) / cargo build --release (ringsip)."
    if "ringsip" in a.proxies:
        a.ringsip = resolve_bin(a.ringsip, "ringsip", build + " Or set RINGSIP_BIN / --ringsip.")
    if "kamailio" in a.proxies:
        a.kamailio = resolve_bin(a.kamailio, "kamailio",
                                 "Install it: apt-get install -y kamailio kamailio-mysql-modules; or set KAMAILIO_BIN.")
    if a.generator == "ringsip-load":
        a.load = resolve_bin(a.load, "ringsip-load", build + " Or set RINGSIP_LOAD_BIN / --load.")
    else:
        a.sipp = resolve_bin(a.sipp, "sipp", "Install it: apt-get install -y sip-tester; or set SIPP_BIN.")
    resolve_bin("taskset", "taskset", "Install util-linux.")
    if "async-db" in a.scenarios or a.db_max_connections > 0:
        a.mysql = resolve_bin(a.mysql, "mysql client", "Install mariadb-client; or set MYSQL_BIN.")
    if "async-http" in a.scenarios and a.http_delay_ms <= 0 and a.http_fault != "down":
        a.nginx = resolve_bin(a.nginx, "nginx", "Install it: apt-get install -y nginx; or set NGINX_BIN / --nginx.")
    cpus = os.sched_getaffinity(0)
    for c in (a.proxy_cpu, a.load_cpu):
        if not c.isdigit() or int(c) not in cpus:
            raise SetupError(f"CPU {c} is not available to this process (allowed: {sorted(cpus)})")
    if a.proxy_cpu == a.load_cpu:
        raise SetupError("--proxy-cpu and --load-cpu must differ")


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        check_setup(a)
    except SetupError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    kind = "latency-sweep" if a.sweep else "compare"
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    a.out_dir_run = out_dir / f"{kind}-{stamp}.logs"
    a.out_dir_run.mkdir()
    budget_end = time.monotonic() + a.time_limit
    meta = {"kind": kind, "started_utc": started.isoformat(timespec="seconds"), "generator": a.generator,
            "rounds": a.rounds, "proxies": a.proxies, "scenarios": a.scenarios,
            "proxy_cpu": a.proxy_cpu, "load_cpu": a.load_cpu, "cpu_rate": a.cpu_rate,
            "search_duration_s": a.search_duration, "measure_duration_s": a.measure_duration,
            "precision": a.precision, "command": sys.argv, "machine": machine_info(a),
            "loadavg_start": loadavg()}
    for key in ("db_delay_ms", "db_cpu", "db_pool", "db_max_queued", "db_max_connections", "http_delay_ms", "http_fault",
                "kamailio_http_query", "alternate_scenarios"):
        meta[key] = getattr(a, key)
    runs: list[dict] = []
    table: RouteTable | None = None
    maxconn: MaxConnections | None = None
    a.http_server = None
    a.db_server = None
    status = 0

    def on_sigterm(signum, frame):  # restore MariaDB, stop the HTTP server: as on Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    if a.alternate_scenarios:
        order = [(sc, rnd) for rnd in range(1, a.rounds + 1) for sc in a.scenarios]
    else:
        order = [(sc, rnd) for sc in a.scenarios for rnd in range(1, a.rounds + 1)]
    try:
        if a.db_max_connections > 0:
            maxconn = MaxConnections(a.mysql, a.db_max_connections)
            meta["db_max_connections_before"] = maxconn.old
        if "async-db" in a.scenarios:
            table = RouteTable(a.mysql, a.uas_port)
            a.db_server = DbServer(a.db_cpu)
            meta["db_server_pid"] = a.db_server.pid
        if "async-http" in a.scenarios:
            a.http_server = HttpServer(a, a.out_dir_run)
            meta["http_server"] = {"kind": a.http_server.kind, "port": a.http_server.port,
                                   "argv": getattr(a.http_server, "argv", None)}
        with tempfile.TemporaryDirectory(prefix="ringsip-compare.") as tmp:
            work = Path(tmp)
            for sc, rnd in order:
                for name in a.proxies:
                    log(f"{sc} round {rnd}/{a.rounds}: {name}")
                    proxy = make_proxy(name, sc, a, work,
                                       table.query_from(a.db_delay_ms) if (table and sc == "async-db") else None,
                                       a.http_server.port if (a.http_server and sc == "async-http") else None)
                    proxy.start()
                    try:
                        runs.append(one_round(a, proxy, sc, rnd, work, budget_end))
                    finally:
                        proxy.stop()
                    time.sleep(a.cooldown)
    except SetupError as e:
        print(f"compare: {e}", file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print("compare: interrupted", file=sys.stderr)
        status = 130
    finally:
        if a.http_server is not None:
            a.http_server.stop()
        if a.db_server is not None:
            try:
                a.db_server.restore()
            except SetupError as e:
                print(f"compare: could not restore MariaDB's CPU affinity: {e}", file=sys.stderr)
        if table is not None:
            try:
                table.drop()
            except SetupError as e:
                print(f"compare: {e}", file=sys.stderr)
        if maxconn is not None:
            try:
                maxconn.restore()
            except SetupError as e:
                print(f"compare: could not restore MariaDB max_connections to {maxconn.old}: {e}", file=sys.stderr)
    meta["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta["complete"] = status == 0
    meta["loadavg_end"] = loadavg()
    doc = {"meta": meta, "runs": runs}
    if not a.sweep:
        doc["summary"] = summarize(runs, a.scenarios, a.proxies)
    json_path = out_dir / f"{kind}-{stamp}.json"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    md = sweep_markdown(runs, meta) if a.sweep else markdown(doc["summary"], a.proxies, meta)
    if status != 0:
        md = "**INCOMPLETE RUN — stopped by an error; do not quote these figures.**\n\n" + md
    (out_dir / f"{kind}-{stamp}.md").write_text(md + "\n")
    print(md)
    log(f"wrote {json_path}" + ("" if status == 0 else " (incomplete)"))
    return status


def one_round(a, proxy: Proxy, sc: str, rnd: int, work: Path, budget_end: float) -> dict:
    rec: dict = {"scenario": sc, "proxy": proxy.name, "round": rnd, "proxy_argv": proxy.argv}
    # Warm-up: a short run at a low rate (first-use costs, DB connections).
    run_load(a, proxy, min(100.0, a.start_rate), 2.0, work)
    time.sleep(a.cooldown)
    if a.sweep:
        if a.sweep_rates:
            rates = [float(x) for x in a.sweep_rates.split(",") if x]
        else:
            rec["search"] = search_max_rate(a, proxy, work, budget_end)
            top = rec["search"]["max_rate"]
            rates = [round(top * float(f)) for f in a.sweep_fractions.split(",") if f and top > 0]
        points = []
        for r in rates:
            if time.monotonic() > budget_end:
                raise SetupError("time limit reached during the latency sweep (--time-limit)")
            res = run_load(a, proxy, r, a.measure_duration, work)
            res.pop("generator_report", None)
            points.append(res)
            log(f"  {proxy.name}: {r:.0f} cps p50 {res['invite_200_p50_us']} us p99 {res['invite_200_p99_us']} us"
                f" failed {res['calls_failed']}")
            time.sleep(a.cooldown)
        rec["points"] = points
        rec["memory"] = proxy.memory()
        return rec
    rec["search"] = search_max_rate(a, proxy, work, budget_end)
    res = run_load(a, proxy, a.cpu_rate, a.measure_duration, work)
    res["passed"] = passed(res)
    rec["cpu"] = res
    log(f"  {proxy.name}: {a.cpu_rate:.0f} cps: proxy {res['proxy_cpu_us_per_call']} us/call, "
        f"generator {res['generator_cpu_us_per_call']} us/call, failed {res['calls_failed']}")
    if "http_server" in res:
        log(f"  {proxy.name}: HTTP server ({res['http_server']}) {res.get('http_server_cpu_us_per_call')} us/call, "
            f"{res.get('http_requests')} requests over {res.get('http_connections')} connections")
    time.sleep(a.cooldown)
    half = round(rec["search"]["max_rate"] / 2)
    if half > 0:
        res = run_load(a, proxy, half, a.measure_duration, work)
        res["passed"] = passed(res)
        rec["latency"] = res
        log(f"  {proxy.name}: {half} cps: p50 {res['invite_200_p50_us']} us, p99 {res['invite_200_p99_us']} us")
    rec["memory"] = proxy.memory()
    return rec


if __name__ == "__main__":
    sys.exit(main())
