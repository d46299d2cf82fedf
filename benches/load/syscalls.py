#!/usr/bin/env python3
"""System calls per request of scangate, nginx and HAProxy doing the same job, from `perf trace`.

The CPU time per request splits into user and system time, and the system half is most of the
gap to nginx on loopback. This counts whether scangate makes more system calls per request than
the peers, or slower ones. Each proxy runs with one worker in front of the nginx backend (10k
tokens, the load bench's config and token, access logs off; nginx with `master_process off` so
the one process is the worker), gets a warm-up, then `perf trace -s -p PID` watches it while oha
sends `--requests` POSTs at c=64 over keep-alive connections. Each system call's count and
failures are divided by the 2xx responses.

    python3 benches/load/syscalls.py target/release/scangate [--requests 20000]
        [--stat] [--record DIR]

Tracing adds a fixed cost to every call, so the microseconds per call are for comparing the
proxies with each other, not absolute figures.

`--stat` counts instead, with `perf stat` and no tracing cost: the proxy's task-clock, its user
and system time (`/proc`), context switches, CPU migrations and page faults per request.
`--rate N` sends at N requests a second for 12 s (oha `-q`) instead of as fast as the proxy
answers: at a rate every proxy can keep up with, the peers (oha, the backend) sleep as often
whichever proxy is measured, so the CPU per request compares like with like. `--record DIR` samples each proxy's stacks
(`perf record -g`, kernel and user) into `DIR/NAME.data`, for `perf report --sort symbol` to say
where the system time goes.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions  # noqa: E402
import peers  # noqa: E402
import procs  # noqa: E402

TOKENS = instructions.TOKENS


def summary(path):
    """{syscall: (calls, errors, total ms)} summed over the threads of a `perf trace -s` file."""
    calls = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 8 and p[1].isdigit() and p[2].isdigit():
                c, e, ms = calls.get(p[0], (0, 0, 0.0))
                calls[p[0]] = (c + int(p[1]), e + int(p[2]), ms + float(p[3]))
    return calls


STAT_EVENTS = ["task-clock", "context-switches", "cpu-migrations", "page-faults",
               "raw_syscalls:sys_enter"]


def stat_counts(path):
    """{event: value} from a `perf stat -x,` file."""
    counts = {}
    with open(path) as f:
        for line in f:
            p = line.strip().split(",")
            if len(p) >= 3 and p[2] in STAT_EVENTS:
                try:
                    counts[p[2]] = float(p[0])
                except ValueError:
                    pass
    return counts


def load(url, token, requests, rate):
    """Sends the counted load: `requests` POSTs as fast as they are answered, or `rate` a second
    for 12 s. Returns the 2xx count and the status codes."""
    if not rate:
        return instructions.oha(url, token, requests, peers.SCAN_BODY)
    argv = ["oha", "--no-tui", "--output-format", "json", "-z", "12s", "-q", str(rate),
            "-c", "64", "-m", "POST", "-d", peers.SCAN_BODY, "-T", "application/json",
            "-H", f"Authorization: Bearer {token}", url]
    out = subprocess.run(argv, capture_output=True, check=True, timeout=120).stdout
    codes = json.loads(out).get("statusCodeDistribution", {})
    return sum(n for code, n in codes.items() if code.startswith("2")), codes


def trace(name, argv, port, work, token, requests, env=None, mode="trace", record=None,
          rate=0):
    srv = procs.Server(name, argv, os.path.join(work, f"{name}.log"), env=env, cwd=work)
    url = f"http://127.0.0.1:{port}{peers.SCAN_PATH}"
    procs.wait_ready(srv, url, token, timeout=60)
    instructions.oha(url, token, 2000, peers.SCAN_BODY)
    out = os.path.join(work, f"{name}.trace")
    if mode == "stat":
        cmd = ["perf", "stat", "-x,", "-o", out, "-e", ",".join(STAT_EVENTS), "-p", str(srv.pid)]
    elif mode == "record":
        out = os.path.join(record, f"{name}.data")
        cmd = ["perf", "record", "-g", "-o", out, "-p", str(srv.pid)]
    else:
        cmd = ["perf", "trace", "-s", "-o", out, "-p", str(srv.pid)]
    perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    user, system = srv.cpu_times()
    good, codes = load(url, token, requests, rate)
    user, system = (a - b for a, b in zip(srv.cpu_times(), (user, system)))
    perf.send_signal(signal.SIGINT)
    perf.wait()
    srv.stop()
    if good == 0:
        raise RuntimeError(f"{name}: no 2xx ({codes})")
    if mode == "record":
        print(f"{name}: {good} 2xx, samples in {out}")
        return
    if mode == "stat":
        c = stat_counts(out)
        per = {k: v / good for k, v in c.items()}
        print(f"| {name} | {1000 * per.get('task-clock', 0):.1f} "
              f"| {1e6 * user / good:.1f} + {1e6 * system / good:.1f} "
              f"| {per.get('raw_syscalls:sys_enter', 0):.3f} "
              f"| {per.get('context-switches', 0):.4f} | {per.get('cpu-migrations', 0):.4f} "
              f"| {per.get('page-faults', 0):.4f} |")
        return
    calls = summary(out)
    total = sum(c for c, _, _ in calls.values())
    print(f"\n{name}: {good} 2xx, **{total / good:.3f} system calls per request**\n")
    print("| system call | per request | failing per request | µs per call (traced) |")
    print("|---|---:|---:|---:|")
    for call, (c, e, ms) in sorted(calls.items(), key=lambda kv: -kv[1][0]):
        if c / good >= 0.001:
            print(f"| {call} | {c / good:.3f} | {e / good:.3f} | {1000 * ms / c:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--stat", action="store_true")
    ap.add_argument("--record", metavar="DIR")
    ap.add_argument("--rate", type=int, default=0, help="requests a second (default: flat out)")
    args = ap.parse_args()
    mode = "stat" if args.stat else "record" if args.record else "trace"
    if args.record:
        os.makedirs(args.record, exist_ok=True)
    if args.stat:
        print("| proxy | task-clock µs per request | user + system µs (/proc) | system calls "
              "| context switches | CPU migrations | page faults |")
        print("|---|---:|---:|---:|---:|---:|---:|")
    work, token, bport, files = instructions.setup("scangate-sys-")
    backend = f"127.0.0.1:{bport}"

    port = procs.free_port()
    cfg = os.path.join(work, "scangate.xml")
    with open(cfg, "w") as f:
        f.write(peers.scangate_xml(f"http://127.0.0.1:{port}", f"http://{backend}",
                                   os.path.join(work, f"tokens-{TOKENS}.xml-part")))
    env = dict(os.environ, RUST_LOG="info,scangate::access=off")
    trace("scangate", [os.path.abspath(args.binary), "--log-format", "json", "serve",
                       "--threads", "1", "--config", cfg], port, work, token, args.requests, env,
          mode, args.record, args.rate)

    port = procs.free_port()
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write("master_process off;\n"
                + peers.nginx_proxy(work, "nginx", port, bport, files["nginx"], TOKENS))
    trace("nginx", ["nginx", "-c", conf, "-p", work, "-e", os.path.join(work, "nginx.err")],
          port, work, token, args.requests, None, mode, args.record, args.rate)

    port = procs.free_port()
    conf = os.path.join(work, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(peers.haproxy(work, "haproxy", port, bport, files["haproxy"]))
    trace("haproxy", ["haproxy", "-f", conf, "-db"], port, work, token, args.requests, None,
          mode, args.record, args.rate)
    procs.stop_all()
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
