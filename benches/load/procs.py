"""Processes the load bench starts: start pinned, wait until ready, read CPU and memory from /proc,
and stop every one of them on exit, whatever happens."""

import atexit
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
_started = []


_given_ports = set()


def free_port():
    """A port that was free a moment ago and that this run has not handed out before: the kernel
    may give a released port to the next bind, and a proxy's listen and admin ports must differ."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


def pinned(argv, cpus):
    """`argv` under `taskset -c cpus`, or as is when cpus is None."""
    return (["taskset", "-c", cpus] + argv) if cpus else argv


class Server:
    """One started server process (and, for nginx, its worker processes)."""

    def __init__(self, name, argv, log, cpus=None, env=None, cwd=None):
        self.name = name
        self.log = log
        self.logfile = open(log, "ab")
        self.proc = subprocess.Popen(
            pinned(argv, cpus),
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        _started.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def pids(self):
        """The process and its descendants (nginx workers)."""
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
        return out

    def worker_cpu(self):
        """CPU seconds (user + system) of each worker: nginx's worker processes, scangate's
        `scangate-worker-N` threads, HAProxy's threads; in a stable order."""
        out = []
        for pid in self.pids():
            try:
                tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/comm") as f:
                        comm = f.read().strip()
                    with open(f"/proc/{pid}/task/{tid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                worker = (comm.startswith("scangate-worke") or comm == "nginx" and pid != self.pid
                          or comm == "haproxy")
                if worker:
                    out.append(((pid, tid), (int(fields[11]) + int(fields[12])) / CLK_TCK))
        return out

    def cpu_times(self):
        """(user, system) CPU seconds of the process and its descendants, all threads."""
        user = system = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                user += int(fields[11])
                system += int(fields[12])
            except OSError:
                pass
        return user / CLK_TCK, system / CLK_TCK

    def cpu_seconds(self):
        return sum(self.cpu_times())

    def status_kib(self, field):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith(field + ":"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def rss_kib(self):
        return self.status_kib("VmRSS")

    def reset_peak(self):
        """Resets VmHWM to the current RSS (Linux `clear_refs` 5)."""
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass

    def peak_kib(self):
        return self.status_kib("VmHWM")

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.logfile.close()
        if self in _started:
            _started.remove(self)

    def tail(self, lines=20):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def stop_all():
    for s in list(reversed(_started)):
        try:
            s.stop()
        except Exception:  # noqa: BLE001 - cleanup must go on
            pass


def _on_signal(signum, _frame):
    stop_all()
    raise SystemExit(128 + signum)


atexit.register(stop_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def request(url, token=None, method="GET", body=None, timeout=5):
    """One request; returns the status, or None when the connection fails."""
    scheme, rest = url.split("://", 1)
    hostport, _, path = rest.partition("/")
    host, port = hostport.rsplit(":", 1)
    if scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request(method, "/" + path, body=body, headers=headers)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def wait_ready(server, url, token, timeout):
    """Polls until `url` answers 2xx with `token`. Returns the seconds it took, or raises."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited:\n{server.tail()}")
        status = request(url, token)
        if status is not None and 200 <= status < 300:
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} not ready after {timeout}s:\n{server.tail()}")


def oha(url, token, seconds, conns, cpus, body, insecure=False, keepalive=True):
    """One oha run. Returns oha's JSON summary. Without `keepalive`, every request opens a new
    connection (and, over TLS, makes a full handshake)."""
    argv = [
        "oha", "--no-tui", "--output-format", "json",
        "-z", f"{seconds}s", "-c", str(conns),
        "-m", "POST", "-d", body, "-T", "application/json",
        "-H", f"Authorization: Bearer {token}",
    ]
    if insecure:
        argv.append("--insecure")
    if not keepalive:
        argv.append("--disable-keepalive")
    argv.append(url)
    out = subprocess.run(
        pinned(argv, cpus), capture_output=True, check=True, timeout=seconds + 60
    ).stdout
    return json.loads(out)
