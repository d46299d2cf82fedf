#!/usr/bin/env python3
"""Request cost of the scan audit (issue 18): user-space instructions per scan request of one
scangate binary with `GatewaySettings/Audit/Enabled` 1 and 0, interleaved, counted by callgrind.

Like `instructions.py` (same nginx backend answering a fixed scan verdict, same 10k-token config,
`serve --threads 1` under callgrind, counters zeroed after a warm-up), but the client is a small
Python keep-alive client when `oha` is not installed: callgrind counts the gateway's instructions
only, so the client's speed does not enter the figure.

    python3 benches/load/audit_cost.py target/release/scangate --requests 5000 --rounds 2
"""

import argparse
import glob
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions  # noqa: E402
import peers  # noqa: E402
import procs  # noqa: E402

TOKENS = instructions.TOKENS


def py_client(port, token, requests, body, connections=8):
    """`requests` POSTs over `connections` keep-alive connections; returns the 2xx count."""
    good = [0] * connections

    def run(i, n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for _ in range(n):
            conn.request("POST", peers.SCAN_PATH, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            if 200 <= r.status < 300:
                good[i] += 1
        conn.close()

    per = [requests // connections + (1 if i < requests % connections else 0) for i in range(connections)]
    threads = [threading.Thread(target=run, args=(i, n)) for i, n in enumerate(per)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(good)


def load(port, token, requests):
    if shutil.which("oha"):
        good, _ = instructions.oha(f"http://127.0.0.1:{port}{peers.SCAN_PATH}", token, requests, peers.SCAN_BODY)
        return good
    return py_client(port, token, requests, peers.SCAN_BODY)


def measure(binary, work, backend_url, token, requests, audit):
    port = procs.free_port()
    cfg = os.path.join(work, f"scangate-{port}.xml")
    xml = peers.scangate_xml(f"http://127.0.0.1:{port}", backend_url,
                             os.path.join(work, f"tokens-{TOKENS}.xml-part"))
    xml = xml.replace("</GatewaySettings>", f"<Audit><Enabled>{audit}</Enabled></Audit></GatewaySettings>")
    with open(cfg, "w") as f:
        f.write(xml)
    out = os.path.join(work, f"callgrind-{port}.out")
    env = dict(os.environ, RUST_LOG="info,scangate::access=off")
    srv = procs.Server(
        os.path.basename(binary),
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         binary, "serve", "--threads", "1", "--config", cfg],
        os.path.join(work, f"scangate-{port}.log"), env=env, cwd=work,
    )
    url = f"http://127.0.0.1:{port}{peers.SCAN_PATH}"
    procs.wait_ready(srv, url, token, timeout=300)
    load(port, token, 500)
    subprocess.run(["callgrind_control", "-z", str(srv.pid)], check=True, capture_output=True)
    good = load(port, token, requests)
    subprocess.run(["callgrind_control", "-d", str(srv.pid)], check=True, capture_output=True)
    time.sleep(1)
    srv.stop()
    dumps = sorted(glob.glob(out + ".*"), key=os.path.getmtime)
    if not dumps or good == 0:
        raise RuntimeError(f"{binary}: no dump or no 2xx\n{srv.tail()}")
    return instructions.total_instructions(dumps[-1]), good


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work folder and its callgrind dumps (for callgrind_annotate)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="scangate-audit-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.chmod(work, 0o755)
    peers.write_key(work)
    peers.write_token_files(work, TOKENS)
    token = peers.tokens(TOKENS)[peers.stable_index(TOKENS)][1]
    bport = procs.free_port()
    dav = os.path.join(work, "dav")
    os.makedirs(os.path.join(dav, ".tmp"), exist_ok=True)
    conf = os.path.join(work, "backend.conf")
    with open(conf, "w") as f:
        f.write(peers.nginx_backend(work, bport, dav))
    procs.Server("backend", ["nginx", "-c", conf, "-p", work, "-e", os.path.join(work, "backend.error.log")],
                 os.path.join(work, "backend.log"))
    backend_url = f"http://127.0.0.1:{bport}"
    client = "oha" if shutil.which("oha") else "python http.client, 8 keep-alive connections"
    print(f"client: {client}; {args.requests} requests per run after 500 warm-up; backend answers {peers.SCAN_JSON}")
    print("| round | audit | 2xx requests | instructions | instructions per request |")
    print("|---|---|---:|---:|---:|")
    per = {0: [], 1: []}
    for rnd in range(1, args.rounds + 1):
        for audit in (0, 1):
            ir, good = measure(os.path.abspath(args.binary), work, backend_url, token, args.requests, audit)
            if args.keep:
                print(f"dumps: {sorted(glob.glob(os.path.join(work, 'callgrind-*.out.*')), key=os.path.getmtime)[-1]}")
            per[audit].append(ir / good)
            print(f"| {rnd} | {'on' if audit else 'off'} | {good} | {ir:,} | {ir // good:,} |", flush=True)
    off, on = min(per[0]), min(per[1])
    print(f"\nbest per request: off {off:,.0f}, on {on:,.0f}; on / off = {on / off:.4f} ({(on / off - 1) * 100:+.2f} %)")
    procs.stop_all()
    if not args.keep:
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
