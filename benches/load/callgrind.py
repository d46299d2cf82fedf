#!/usr/bin/env python3
"""Instructions per request of scangate builds, counted by callgrind: a before/after figure that
the noise of a shared 2-core machine does not move.

Each binary serves the load bench's config (nginx backend, N tokens, one worker) under
`valgrind --tool=callgrind`, twice: once for `--requests` requests and once for four times as
many, sent by oha with keep-alive. The difference of the two totals divided by the difference of
the request counts is the marginal cost of one request, with start-up, config parsing and exit
cancelled out. It counts user-space instructions only (no system calls, no cache misses), so it
ranks code changes, not wall-clock speed.

    python3 benches/load/callgrind.py --binary before=/path/a --binary after=/path/b \
        [--log on --log off] [--credential static --credential access] [--tokens 10000] \
        [--requests 500]
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
import json  # noqa: E402
import peers  # noqa: E402
import procs  # noqa: E402

LOGS = {"on": "info", "off": "info,scangate::access=off"}


def instructions(out_file):
    """The total `Ir` of a callgrind output file."""
    with open(out_file) as f:
        for line in f:
            m = re.match(r"^(?:summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError(f"no totals in {out_file}")


def access_token(work, binary, cfg, url):
    """Adds an API connection to the running gateway's config and exchanges its refresh token
    (the first exchange waits for the folder watch to apply the edit); returns the access token."""
    added = json.loads(subprocess.check_output(
        [binary, "connection", "add", "--config", cfg, "--name", "bench", "--role",
         "SecurityOfficer", "--json"], cwd=work, stderr=subprocess.DEVNULL))
    confirm = f"{url}/api/v1/{added['client_id']}/session/confirm"
    deadline = time.monotonic() + 300
    while True:
        status, pair = compare.exchange(confirm, added["refresh_token"])
        if status == 200:
            return pair["access_token"]
        if status != 401 or time.monotonic() > deadline:
            raise RuntimeError(f"exchange answered {status}: {pair}")
        time.sleep(0.5)


def one_run(work, binary, log, credential, tokens_part, backend, requests, conns):
    port = procs.free_port()
    cfg = os.path.join(work, f"callgrind-{port}.xml")
    with open(cfg, "w") as f:
        f.write(peers.scangate_xml(f"http://127.0.0.1:{port}", backend, tokens_part,
                                   admin_port=procs.free_port()))
    out = os.path.join(work, f"callgrind-{port}.out")
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            binary, "--log-format", "json", "serve", "--config", cfg, "--threads", "1"]
    env = dict(os.environ, RUST_LOG=LOGS[log])
    srv = procs.Server(f"callgrind-{port}", argv, os.path.join(work, f"callgrind-{port}.log"),
                       env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    token = peers.tokens(args.tokens)[peers.stable_index(args.tokens)][1]
    procs.wait_ready(srv, url + peers.SCAN_PATH, token, 300)
    if credential == "access":
        token = access_token(work, binary, cfg, url)
    subprocess.run(
        ["oha", "--no-tui", "--output-format", "json", "-n", str(requests), "-c", str(conns),
         "-m", "POST", "-d", peers.SCAN_BODY, "-T", "application/json",
         "-H", f"Authorization: Bearer {token}", url + peers.SCAN_PATH],
        capture_output=True, check=True, timeout=1800,
    )
    srv.signal(signal.SIGTERM)
    srv.proc.wait(timeout=300)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        name = os.path.basename(binary)
        shutil.copy(out, os.path.join(
            args.keep, f"{name}-log-{log}-{credential}-{requests}.callgrind"))
    return instructions(out)


def main():
    work = tempfile.mkdtemp(prefix="scangate-callgrind-",
                            dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.chmod(work, 0o755)
    try:
        peers.write_key(work)
        tokens_part = peers.write_token_files(work, args.tokens)["scangate"]
        conf = os.path.join(work, "backend.conf")
        dav = os.path.join(work, "dav")
        os.makedirs(os.path.join(dav, ".tmp"), exist_ok=True)
        port = procs.free_port()
        with open(conf, "w") as f:
            f.write(peers.nginx_backend(work, port, dav, 1))
        procs.Server("backend", ["nginx", "-c", conf, "-p", work, "-e",
                                 os.path.join(work, "backend.error.log")],
                     os.path.join(work, "backend.log"))
        backend = f"http://127.0.0.1:{port}"
        time.sleep(0.5)
        small, large = args.requests, 4 * args.requests
        rows = []
        for credential in args.credential:
            for log in args.log:
                for name, binary in args.binary:
                    a = one_run(work, binary, log, credential, tokens_part, backend, small,
                                args.conns)
                    b = one_run(work, binary, log, credential, tokens_part, backend, large,
                                args.conns)
                    per = (b - a) / (large - small)
                    rows.append((name, log, credential, per))
                    print(f"{name} log {log} {credential} token: {a} Ir at {small}, {b} Ir at "
                          f"{large}: {per:,.0f} Ir per request", flush=True)
        first = rows[0][3]
        print("\n| binary | access log | credential | instructions per request | vs first |")
        print("|---|---|---|---:|---:|")
        for name, log, credential, per in rows:
            print(f"| {name} | {log} | {credential} | {per:,.0f} | {per / first:.3f} × |")
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def binary_arg(text):
    name, _, path = text.partition("=")
    if not path:
        raise argparse.ArgumentTypeError("NAME=PATH")
    return name, os.path.abspath(path)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", type=binary_arg, action="append", required=True)
    p.add_argument("--log", choices=sorted(LOGS), action="append")
    p.add_argument("--credential", choices=["static", "access"], action="append",
                   help="a static token, or an API connection's access token (default: static)")
    p.add_argument("--tokens", type=int, default=10000)
    p.add_argument("--requests", type=int, default=500, help="the small run; the large is 4 ×")
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--keep", metavar="DIR",
                   help="copy each callgrind output here, for callgrind_annotate")
    args = p.parse_args()
    args.log = args.log or ["on", "off"]
    args.credential = args.credential or ["static"]
    main()
