"""User-space instructions per request of one or more scangate binaries, counted by callgrind.

Wall-clock figures on a shared machine swing by a third between runs; instruction counts do not.
Each binary runs `serve --threads 1` under `valgrind --tool=callgrind` in front of the nginx
backend (10k tokens, the load bench's config and token), gets a warm-up, has its counters zeroed,
takes `--requests` POSTs from oha at c=64 over keep-alive connections, and is dumped. The figure is
the instructions counted (all threads, user space only) divided by the 2xx responses.

    python3 benches/load/instructions.py target/release/scangate /tmp/scangate-before \
        [--log off --log on] [--credential static --credential access] [--audit off --audit on] \
        [--keep DIR]

`--peers` also counts nginx and HAProxy doing the same job (the load bench's configs, one
worker, access logs off; nginx with `master_process off`, so the one process is the worker),
for a like-for-like figure of how much user-space work each proxy does per request.

`--https` serves every proxy over TLS 1.3 (one EC P-256 certificate, keep-alive connections; oha
connects with `--insecure`). The counted run opens its 64 connections afresh, so it includes 64
full handshakes: at 10,000 requests about 2.5 k instructions a request of scangate's count.

`--log on` runs with the access log on (`RUST_LOG=info`, JSON lines to a file), `off` (the
default) with `info,scangate::access=off`. `--credential access` adds an API connection to the
running gateway, exchanges its refresh token and sends the access token instead of a static
token. `--audit off|on` sets `GatewaySettings/Audit/Enabled`. Every combination of binary, log,
credential and audit is one row. `--keep DIR` keeps each dump
for `callgrind_annotate`.

It is evidence for before/after comparisons of the request path, not a replacement for
compare.sh: it counts no kernel time and no cache misses.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
import procs  # noqa: E402

TOKENS = 10_000


def oha(url, token, requests, body):
    argv = [
        "oha", "--no-tui", "--output-format", "json", "-n", str(requests), "-c", "64",
        "-m", "POST", "-d", body, "-T", "application/json",
        "-H", f"Authorization: Bearer {token}", url,
    ]
    if url.startswith("https://"):
        argv.insert(1, "--insecure")
    out = subprocess.run(argv, capture_output=True, check=True, timeout=1800).stdout
    codes = json.loads(out).get("statusCodeDistribution", {})
    return sum(n for code, n in codes.items() if code.startswith("2")), codes


# Extra valgrind options for every callgrind run (`--cache-sim` adds `--cache-sim=yes`).
GRIND_OPTIONS = []


def totals(path):
    """The dump's event totals by name: `Ir`, and with the cache simulation `I1mr`, `D1mr`,
    `D1mw`, `DLmr`, `DLmw` (first-level and last-level misses, reads and writes), …"""
    names = None
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                names = line.split()[1:]
            if line.startswith("summary:") or line.startswith("totals:"):
                return dict(zip(names or ["Ir"], map(int, line.split()[1:])))
    raise RuntimeError(f"{path}: no totals line")


LOGS = {"off": "info,scangate::access=off", "on": "info"}


def access_token(binary, work, cfg, base_url):
    """Adds an API connection to the running gateway's config and exchanges its refresh token
    (the first exchange waits for the folder watch to apply the edit); returns the access token."""
    import compare  # noqa: E402  (only this option needs it)
    added = json.loads(subprocess.check_output(
        [binary, "connection", "add", "--config", cfg, "--name", "bench", "--role",
         "SecurityOfficer", "--json"], cwd=work, stderr=subprocess.DEVNULL))
    confirm = f"{base_url}/api/v1/{added['client_id']}/session/confirm"
    deadline = time.monotonic() + 300
    while True:
        status, pair = compare.exchange(confirm, added["refresh_token"])
        if status == 200:
            return pair["access_token"]
        if status != 401 or time.monotonic() > deadline:
            raise RuntimeError(f"exchange answered {status}: {pair}")
        time.sleep(0.5)


def count(srv, out, url, token, requests):
    """Warms `srv` (running under callgrind, writing to `out`) up, zeroes its counters, sends
    `requests` POSTs and dumps them. Returns the dump files, newest last, and the 2xx count."""
    oha(url, token, 2000, peers.SCAN_BODY)
    subprocess.run(["callgrind_control", "-z", str(srv.pid)], check=True, capture_output=True)
    good, codes = oha(url, token, requests, peers.SCAN_BODY)
    subprocess.run(["callgrind_control", "-d", str(srv.pid)], check=True, capture_output=True)
    time.sleep(1)
    srv.stop()
    # callgrind writes `out` at exit and `out.N` for each dump; only the dumps count.
    dumps = sorted(glob.glob(out + ".*"), key=os.path.getmtime)
    if not dumps or good == 0:
        raise RuntimeError(f"{srv.name}: no dump or no 2xx ({codes})\n{srv.tail()}")
    return dumps, good


def measure(binary, work, backend_url, token, requests, log="off", credential="static",
            keep=None, audit=None, tls=None):
    port = procs.free_port()
    scheme = "https" if tls else "http"
    cfg = os.path.join(work, f"scangate-{port}.xml")
    xml = peers.scangate_xml(f"{scheme}://127.0.0.1:{port}", backend_url,
                             os.path.join(work, f"tokens-{TOKENS}.xml-part"), tls=tls)
    if audit is not None:
        enabled = 1 if audit == "on" else 0
        xml = xml.replace("</GatewaySettings>",
                          f"<Audit><Enabled>{enabled}</Enabled></Audit></GatewaySettings>")
    with open(cfg, "w") as f:
        f.write(xml)
    out = os.path.join(work, f"callgrind-{port}.out")
    env = dict(os.environ, RUST_LOG=LOGS[log])
    srv = procs.Server(
        os.path.basename(binary),
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *GRIND_OPTIONS,
         binary, "--log-format", "json", "serve", "--threads", "1", "--config", cfg],
        os.path.join(work, f"scangate-{port}.log"), env=env, cwd=work,
    )
    url = f"{scheme}://127.0.0.1:{port}{peers.SCAN_PATH}"
    procs.wait_ready(srv, url, token, timeout=300)
    if credential == "access":
        token = access_token(binary, work, cfg, f"{scheme}://127.0.0.1:{port}")
    dumps, good = count(srv, out, url, token, requests)
    if keep:
        os.makedirs(keep, exist_ok=True)
        name = f"{os.path.basename(binary)}-{scheme}-log-{log}-{credential}-audit-{audit}.callgrind"
        shutil.copy(dumps[-1], os.path.join(keep, name))
    return totals(dumps[-1]), good


def measure_peer(kind, work, backend_url, token, requests, tls=None):
    """Instructions per request of nginx or HAProxy doing scangate's job, under callgrind."""
    port = procs.free_port()
    scheme = "https" if tls else "http"
    bport = int(backend_url.rsplit(":", 1)[1])
    files = peers.write_token_files(work, TOKENS)
    out = os.path.join(work, f"callgrind-{kind}-{port}.out")
    grind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *GRIND_OPTIONS]
    if kind == "nginx":
        conf = os.path.join(work, f"nginx-{port}.conf")
        text = peers.nginx_proxy(work, f"nginx-{port}", port, bport, files["nginx"], TOKENS,
                                 tls=tls)
        with open(conf, "w") as f:
            f.write("master_process off;\n" + text)
        argv = grind + ["nginx", "-c", conf, "-p", work, "-e", os.path.join(work, "ngx.err")]
    else:
        conf = os.path.join(work, f"haproxy-{port}.cfg")
        with open(conf, "w") as f:
            f.write(peers.haproxy(work, f"haproxy-{port}", port, bport, files["haproxy"],
                                  tls=tls))
        argv = grind + ["haproxy", "-f", conf, "-db"]
    srv = procs.Server(kind, argv, os.path.join(work, f"{kind}-{port}.log"), cwd=work)
    url = f"{scheme}://127.0.0.1:{port}{peers.SCAN_PATH}"
    procs.wait_ready(srv, url, token, timeout=300)
    dumps, good = count(srv, out, url, token, requests)
    return totals(dumps[-1]), good


def setup(prefix):
    """A work folder under /dev/shm with the key and the 10k-token files, and the nginx backend
    started in it. Returns the folder, the token the load sends, the backend's port and the token
    files' paths (`peers.write_token_files`)."""
    work = tempfile.mkdtemp(prefix=prefix, dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.chmod(work, 0o755)
    peers.write_key(work)
    files = peers.write_token_files(work, TOKENS)
    token = peers.tokens(TOKENS)[peers.stable_index(TOKENS)][1]
    bport = procs.free_port()
    dav = os.path.join(work, "dav")
    os.makedirs(os.path.join(dav, ".tmp"), exist_ok=True)
    conf = os.path.join(work, "backend.conf")
    with open(conf, "w") as f:
        f.write(peers.nginx_backend(work, bport, dav))
    procs.Server("backend", ["nginx", "-c", conf, "-p", work, "-e", os.path.join(work, "backend.error.log")],
                 os.path.join(work, "backend.log"))
    return work, token, bport, files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--log", choices=sorted(LOGS), action="append")
    ap.add_argument("--credential", choices=["static", "access"], action="append")
    ap.add_argument("--audit", choices=["on", "off"], action="append",
                    help="GatewaySettings/Audit/Enabled (default: the config's default, on)")
    ap.add_argument("--peers", action="store_true",
                    help="also count nginx and HAProxy doing the same job")
    ap.add_argument("--keep", metavar="DIR", help="copy each dump here, for callgrind_annotate")
    ap.add_argument("--https", action="store_true",
                    help="every proxy over TLS 1.3 with keep-alive (the counted run's 64 handshakes "
                    "included)")
    ap.add_argument("--cache-sim", action="store_true",
                    help="also simulate the caches (valgrind's model of this CPU's L1 and last "
                    "level): misses per request")
    args = ap.parse_args()
    if args.cache_sim:
        GRIND_OPTIONS.append("--cache-sim=yes")
    work, token, bport, _ = setup("scangate-instr-")
    tls = peers.write_certificate(work) if args.https else None
    backend_url = f"http://127.0.0.1:{bport}"
    extra = (" L1 data misses per request | last-level misses per request | "
             "L1 instruction misses per request |") if args.cache_sim else ""
    print("| binary | access log | credential | audit | 2xx requests | instructions | "
          "instructions per request |" + extra)
    print("|---|---|---|---|---:|---:|---:|" + ("---:|---:|---:|" if args.cache_sim else ""))

    def figures(ev, good):
        text = f"{ev['Ir']:,} | {ev['Ir'] // good:,} |"
        if args.cache_sim:
            d1 = ev["D1mr"] + ev["D1mw"]
            ll = ev["DLmr"] + ev["DLmw"] + ev["ILmr"]
            text += f" {d1 / good:,.0f} | {ll / good:,.1f} | {ev['I1mr'] / good:,.0f} |"
        return text

    for credential in args.credential or ["static"]:
        for log in args.log or ["off"]:
            for audit in args.audit or [None]:
                for binary in args.binaries:
                    ev, good = measure(os.path.abspath(binary), work, backend_url, token,
                                       args.requests, log, credential, args.keep, audit,
                                       tls)
                    print(f"| `{binary}` | {log} | {credential} | {audit or 'default'} | {good} | "
                          + figures(ev, good), flush=True)
    if args.peers:
        for kind in ("nginx", "haproxy"):
            ev, good = measure_peer(kind, work, backend_url, token, args.requests, tls)
            print(f"| {kind} | off | static | - | {good} | " + figures(ev, good), flush=True)
    procs.stop_all()
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
