#!/usr/bin/env python3
"""scangate against nginx and HAProxy doing the same job, on one machine, in one run.

Run it through `compare.sh`, which installs the peers and builds scangate first. Every figure is a
median over interleaved rounds (A B C A B C …), and every comparison is a ratio within this run.
See benches/README.md.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402

PHASES = ["load1", "load2", "tokens", "upload", "https", "reload", "connections", "engines"]
GIB = 1 << 30


class Bench:
    def __init__(self, args):
        self.args = args
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.work = tempfile.mkdtemp(prefix="scangate-bench-", dir=base)
        os.chmod(self.work, 0o755)
        self.token_files = {}
        self.targets = report.Targets()
        self.sections = []
        peers.write_key(self.work)

    # ---- peers -------------------------------------------------------------------------------

    def tokens(self, n):
        if n not in self.token_files:
            self.token_files[n] = peers.write_token_files(self.work, n)
        return self.token_files[n]

    def path(self, name):
        return os.path.join(self.work, name)

    def start_backend(self, workers, cpus):
        port = procs.free_port()
        dav = self.path("dav")
        os.makedirs(os.path.join(dav, ".tmp"), exist_ok=True)
        conf = self.path("backend.conf")
        with open(conf, "w") as f:
            f.write(peers.nginx_backend(self.work, port, dav, workers))
        srv = procs.Server(
            "backend", ["nginx", "-c", conf, "-p", self.work, "-e", self.path("backend.error.log")],
            self.path("backend.log"), cpus,
        )
        return srv, f"http://127.0.0.1:{port}"

    def start_scangate(self, name, backend_url, n, workers, cpus, auth=True, tls=None, config=None,
                       token_part=None, binary=None, engines=None):
        port = procs.free_port()
        scheme = "https" if tls else "http"
        cfg = config or self.path(f"{name}.xml")
        with open(cfg, "w") as f:
            f.write(
                peers.scangate_xml(
                    f"{scheme}://127.0.0.1:{port}", backend_url,
                    token_part or self.tokens(n)["scangate"],
                    auth=auth, tls=tls, admin_port=procs.free_port(), engines=engines,
                )
            )
        env = dict(os.environ, RUST_LOG=self.args.scangate_log)
        extra = self.args.baseline_env if binary and binary == self.args.baseline else \
            self.args.scangate_env
        env.update(kv.split("=", 1) for kv in extra)
        argv = [binary or self.args.scangate, "--log-format", "json", "serve", "--config", cfg,
                "--threads", str(workers)]
        srv = procs.Server(name, argv, self.path(f"{name}.log"), cpus, env=env, cwd=self.work)
        return srv, f"{scheme}://127.0.0.1:{port}"

    def start_nginx(self, name, backend_url, n, workers, cpus, tls=None):
        port = procs.free_port()
        conf = self.path(f"{name}.conf")
        backend_port = int(backend_url.rsplit(":", 1)[1])
        with open(conf, "w") as f:
            f.write(peers.nginx_proxy(self.work, name, port, backend_port, self.tokens(n)["nginx"],
                                      n, workers, tls))
        srv = procs.Server(
            name, ["nginx", "-c", conf, "-p", self.work, "-e", self.path(f"{name}.error.log")],
            self.path(f"{name}.log"), cpus,
        )
        return srv, f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    def start_haproxy(self, name, backend_url, n, workers, cpus, tls=None):
        port = procs.free_port()
        conf = self.path(f"{name}.cfg")
        backend_port = int(backend_url.rsplit(":", 1)[1])
        with open(conf, "w") as f:
            f.write(peers.haproxy(self.work, name, port, backend_port, self.tokens(n)["haproxy"],
                                  workers, tls))
        srv = procs.Server(name, ["haproxy", "-f", conf, "-db"], self.path(f"{name}.log"), cpus)
        return srv, f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    def stable_token(self, n):
        return peers.token(peers.stable_index(n))

    def cpus(self, workers):
        """(proxy CPUs, load generator + backend CPUs). One-worker runs give the proxy core 1 and
        oha plus the backend core 0; two-worker runs leave scheduling to the kernel."""
        if self.args.no_pin or workers != 1 or (os.cpu_count() or 1) < 2:
            return None, None
        return "1", "0"

    # ---- measuring ---------------------------------------------------------------------------

    def run_rounds(self, targets, token, load_cpus, tls=False, seconds=None, keepalive=True):
        """Warms every target up, then runs oha on each in turn, round after round. `token` is
        one token for all, or a dict of target name → token. Without `keepalive`, each request
        is a new connection."""
        seconds = seconds or self.args.seconds
        tok = token.get if isinstance(token, dict) else (lambda _name: token)
        results = {name: [] for name, _, _ in targets}
        for name, srv, url in targets:
            procs.oha(url + peers.SCAN_PATH, tok(name), 2, self.args.conns, load_cpus,
                      peers.SCAN_BODY, tls, keepalive)
        for rnd in range(self.args.rounds):
            for name, srv, url in targets:
                time.sleep(0.5)
                u0, s0 = srv.cpu_times()
                w0 = srv.worker_cpu()
                res = procs.oha(url + peers.SCAN_PATH, tok(name), seconds, self.args.conns,
                                load_cpus, peers.SCAN_BODY, tls, keepalive)
                u1, s1 = srv.cpu_times()
                run = report.summarise(res, (u1 - u0, s1 - s0))
                run["split"] = report.split(w0, srv.worker_cpu())
                results[name].append(run)
                log(f"  round {rnd + 1} {name}: {run['rps']:.0f} req/s, p99 {run['p99_ms']:.2f} ms, "
                    f"{run['cpu_us']:.1f} µs/req, non-2xx {run['bad']}"
                    + (f", worker CPU split {run['split']} %" if run["split"] else ""))
        return results

    def section(self, title, text):
        self.sections.append(f"### {title}\n\n{text}\n")
        log(f"\n### {title}\n{text}\n")

    def stop(self, *servers):
        for s in servers:
            s.stop()

    # ---- phases ------------------------------------------------------------------------------

    def engines(self):
        """scangate against HAProxy (`maxconn` per server + backend queue + `timeout queue`,
        `balance leastconn`, the same checks) in front of three `scangate emulator` processes, one
        of them slow, with the same session cap and queue timeout."""
        n = self.args.tokens
        cap, queue_ms = self.args.engine_sessions, 5000
        proxy_cpus, load_cpus = self.cpus(1)
        fast, slow = self.args.engine_delay_ms, self.args.slow_engine_delay_ms
        ports, emulators = [], []
        for i, delay in enumerate([fast, fast, slow], 1):
            port = procs.free_port()
            argv = [self.args.scangate, "emulator", "--listen", f"127.0.0.1:{port}",
                    "--scan-delay-ms", str(delay)]
            emulators.append(procs.Server(f"emulator{i}", argv, self.path(f"emulator{i}.log"),
                                          load_cpus))
            ports.append(port)
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for srv, url in zip(emulators, urls):
            procs.wait_ready(srv, url + "/api/v3.0/version", None, 30)
        sg, sg_url = self.start_scangate("scangate-engines", None, n, 1, proxy_cpus,
                                         engines=(urls, cap, queue_ms))
        hp_port = procs.free_port()
        conf = self.path("haproxy-engines.cfg")
        with open(conf, "w") as f:
            f.write(peers.haproxy_engines(self.work, "haproxy-engines", hp_port, ports,
                                          self.tokens(n)["haproxy"], cap, queue_ms))
        hp = procs.Server("haproxy-engines", ["haproxy", "-f", conf, "-db"],
                          self.path("haproxy-engines.log"), proxy_cpus)
        started = [("scangate", sg, sg_url), ("haproxy", hp, f"http://127.0.0.1:{hp_port}")]
        token = self.stable_token(n)
        for name, srv, url in started:
            procs.wait_ready(srv, url + "/api/v3.0/version", token, 120)
        log(f"\n== engines: 3 emulators ({fast}, {fast}, {slow} ms), MaxSessions/maxconn {cap}")
        results = self.run_rounds(started, token, load_cpus)
        shares = []
        for name, srv, url in started:
            before = [scans_seen(u) for u in urls]
            procs.oha(url + peers.SCAN_PATH, token, 5, self.args.conns, load_cpus,
                      peers.SCAN_BODY)
            seen = [scans_seen(u) - b for u, b in zip(urls, before)]
            fast_avg = (seen[0] + seen[1]) / 2 or 1
            shares.append(f"- {name}: scans per engine in a 5 s run {seen}, slow / fast "
                          f"{seen[2] / fast_avg:.3f}")
        self.stop(sg, hp, *emulators)
        text = (f"Three `scangate emulator` processes with `--scan-delay-ms` {fast}, {fast} and "
                f"{slow}; scangate (`MaxSessions` {cap}, `QueueTimeoutMs` {queue_ms}) and HAProxy "
                f"(`maxconn {cap}` per server, `timeout queue {queue_ms}ms`, `balance leastconn`, "
                f"`option httpchk`, `retries 1`), 1 thread each, {n} tokens, c={self.args.conns}, "
                f"{self.args.seconds} s per run, {self.args.rounds} rounds. "
                f"Pinning: {pin_text(proxy_cpus, load_cpus)}.\n\n"
                + report.table(results, [t[0] for t in started]) + "\n\n"
                + report.ratios(results, "scangate", ["haproxy"]) + "\n\n"
                + "\n".join(shares))
        self.section("Engine pool: three emulators, one slow", text)
        sg99, hp99 = (report.median(results[k], "p99_ms") for k in ("scangate", "haproxy"))
        r_rps = report.ratio(results, "scangate", "haproxy", "rps")
        self.targets.check("engine pool p99 at equal good req/s", "p99 ≤ HAProxy",
                           f"{sg99:.2f} ms vs {hp99:.2f} ms at {r_rps:.3f} × HAProxy's req/s",
                           sg99 <= hp99 and r_rps >= 0.97)

    def load(self, workers):
        n = self.args.tokens
        proxy_cpus, load_cpus = self.cpus(workers)
        backend, burl = self.start_backend(workers, load_cpus)
        token = self.stable_token(n)
        started = [
            ("scangate", *self.start_scangate("scangate", burl, n, workers, proxy_cpus)),
            ("scangate-noauth",
             *self.start_scangate("scangate-noauth", burl, n, workers, proxy_cpus, auth=False)),
            ("nginx", *self.start_nginx("nginx", burl, n, workers, proxy_cpus)),
            ("haproxy", *self.start_haproxy("haproxy", burl, n, workers, proxy_cpus)),
        ]
        if self.args.baseline:
            started.append(("scangate-baseline", *self.start_scangate(
                "scangate-baseline", burl, n, workers, proxy_cpus, binary=self.args.baseline)))
        procs.wait_ready(backend, burl, None, 30)
        for name, srv, url in started:
            procs.wait_ready(srv, url, token, 120)
        targets = [("direct (backend)", backend, burl)] + started
        if self.args.only:
            targets = [t for t in targets if t[0] in self.args.only.split(",")]
        log(f"\n== load: {workers} worker(s), {n} tokens")
        results = self.run_rounds(targets, token, load_cpus)
        self.stop(*[s for _, s, _ in started], backend)

        order = [t[0] for t in targets]
        text = (f"{n} tokens, {workers} worker(s) each, c={self.args.conns}, "
                f"{self.args.seconds} s per run, {self.args.rounds} rounds. "
                f"Pinning: {pin_text(proxy_cpus, load_cpus)}.\n\n"
                + report.table(results, order) + "\n\n"
                + report.ratios(results, "scangate", ["nginx", "haproxy"]) + "\n"
                + report.ratios(results, "scangate", ["scangate-noauth"], ("rps",)) + "\n"
                + report.ratios(results, "scangate", ["scangate-baseline"]))
        self.section(f"Load, {workers} worker(s), {n} tokens", text)
        if workers == 1 and not self.args.only:
            r_ng = report.ratio(results, "scangate", "nginx", "rps")
            r_hp = report.ratio(results, "scangate", "haproxy", "rps")
            self.targets.check("good req/s, 10k tokens, 1 worker", "≥ 1.2 × nginx",
                               f"{r_ng:.3f} × nginx", r_ng >= 1.2)
            self.targets.check("good req/s, 10k tokens, 1 worker", "≥ 1.2 × HAProxy",
                               f"{r_hp:.3f} × HAProxy", r_hp >= 1.2)
            r_cpu = report.ratio(results, "scangate", "nginx", "cpu_us")
            self.targets.check("proxy CPU µs per request", "≤ 0.8 × nginx",
                               f"{r_cpu:.3f} × nginx", r_cpu <= 0.8)
            sg99, ng99 = (report.median(results[k], "p99_ms") for k in ("scangate", "nginx"))
            self.targets.check("p99 latency at c=64", "≤ nginx",
                               f"{sg99:.2f} ms vs {ng99:.2f} ms", sg99 <= ng99)
            r_auth = report.ratio(results, "scangate", "scangate-noauth", "rps")
            self.targets.check("auth on vs off", "≤ 3 % req/s difference",
                               f"on/off {r_auth:.3f} ({(r_auth - 1) * 100:+.1f} %)",
                               abs(1 - r_auth) <= 0.03)

    def connections(self):
        """An API connection's access token against a static token on one gateway, interleaved;
        then exchanges per second, one client rotating its refresh token, end to end."""
        n = self.args.tokens
        proxy_cpus, load_cpus = self.cpus(1)
        backend, burl = self.start_backend(1, load_cpus)
        cfg = self.path("scangate-conn.xml")
        srv, url = self.start_scangate("scangate-conn", burl, n, 1, proxy_cpus, config=cfg)
        static = self.stable_token(n)
        procs.wait_ready(backend, burl, None, 30)
        procs.wait_ready(srv, url, static, 120)
        added = json.loads(subprocess.check_output(
            [self.args.scangate, "connection", "add", "--config", cfg, "--name", "bench",
             "--role", "SecurityOfficer", "--json"], cwd=self.work, stderr=subprocess.DEVNULL))
        confirm = f"{url}/api/v1/{added['client_id']}/session/confirm"
        # The folder watch applies the edit within a second; until then the path is not an
        # exchange and gets 401 without consuming anything.
        deadline = time.monotonic() + 30
        while True:
            status, pair = exchange(confirm, added["refresh_token"])
            if status == 200:
                break
            if status != 401 or time.monotonic() > deadline:
                raise RuntimeError(f"exchange answered {status}: {pair}")
            time.sleep(0.1)
        access = pair["access_token"]
        # A SecurityOfficer may not GET "/" (403): wait on the scan path.
        procs.wait_ready(srv, url + peers.SCAN_PATH, access, 10)
        targets = [("static token", srv, url), ("access token", srv, url)]
        log(f"\n== connections: access token against static token, {n} tokens, 1 worker")
        results = self.run_rounds(targets, {"static token": static, "access token": access},
                                  load_cpus)
        count, refresh = self.args.exchanges, pair["refresh_token"]
        started = time.monotonic()
        for _ in range(count):
            status, pair = exchange(confirm, refresh)
            if status != 200:
                raise RuntimeError(f"exchange answered {status}: {pair}")
            refresh = pair["refresh_token"]
        per_second = count / (time.monotonic() - started)
        self.stop(srv, backend)
        text = (f"One scangate (1 worker) with {n} static tokens and one API connection; the same "
                f"server measured with each credential, interleaved. Pinning: "
                f"{pin_text(proxy_cpus, load_cpus)}.\n\n"
                + report.table(results, ["static token", "access token"]) + "\n\n"
                + report.ratios(results, "access token", ["static token"]) + "\n\n"
                + f"Exchanges: {count} in a row, each presenting the refresh token the last one "
                f"returned (SQLite store, Python http.client client): {per_second:.0f} per second.\n")
        self.section("API connections: access token against static token", text)
        r = report.ratio(results, "access token", "static token", "rps")
        self.targets.check("access token vs static token", "within 3 % req/s",
                           f"{r:.3f} ({(r - 1) * 100:+.1f} %)", abs(1 - r) <= 0.03)

    def token_counts(self):
        counts = [1, self.args.tokens, self.args.max_tokens]
        proxy_cpus, load_cpus = self.cpus(1)
        backend, burl = self.start_backend(1, load_cpus)
        procs.wait_ready(backend, burl, None, 30)
        targets, ready, tokens = [], {}, {}
        for n in counts:
            name = f"scangate-{n}"
            srv, url = self.start_scangate(name, burl, n, 1, proxy_cpus)
            tokens[name] = self.stable_token(n)
            ready[name] = procs.wait_ready(srv, url, tokens[name], 600)
            targets.append((name, srv, url))
        if self.args.baseline:
            for n in (counts[0], counts[-1]):
                name = f"scangate-baseline-{n}"
                srv, url = self.start_scangate(name, burl, n, 1, proxy_cpus,
                                               binary=self.args.baseline)
                tokens[name] = self.stable_token(n)
                ready[name] = procs.wait_ready(srv, url, tokens[name], 600)
                targets.append((name, srv, url))
        log(f"\n== token counts {counts}")
        results = self.run_rounds(targets, tokens, load_cpus)
        rss = {name: srv.rss_kib() for name, srv, _ in targets}
        self.stop(*[s for _, s, _ in targets], backend)

        order = [t[0] for t in targets]
        lo, hi = order[0], order[len(counts) - 1]
        change = report.ratio(results, hi, lo, "rps") - 1
        per_token = (rss[hi] - rss[lo]) * 1024 / (counts[-1] - counts[0])
        baseline = ""
        if self.args.baseline:
            b_lo, b_hi = order[len(counts)], order[-1]
            b_per = (rss[b_hi] - rss[b_lo]) * 1024 / (counts[-1] - counts[0])
            baseline = f"\n- baseline RSS per token: ({b_hi} − {b_lo}) = {b_per:.0f} bytes"
        mem = "\n".join(f"| {k} | {rss[k] / 1024:.1f} MiB | {ready[k]:.1f} s |" for k in order)
        text = (f"scangate alone at {', '.join(map(str, counts))} tokens, 1 worker, interleaved "
                f"rounds; each instance is asked for a token of its own set. "
                f"Pinning: {pin_text(proxy_cpus, load_cpus)}.\n\n"
                + report.table(results, order)
                + f"\n\n- req/s change {lo} → {hi}: {change * 100:+.1f} %\n\n"
                + "| target | RSS after the runs | start-up until ready |\n|---|---:|---:|\n" + mem
                + f"\n\n- RSS per token: ({hi} − {lo}) / {counts[-1] - counts[0]} = "
                f"{per_token:.0f} bytes" + baseline)
        self.section("Token count", text)
        self.targets.check(f"1 → {counts[-1]:,} tokens", "req/s changes by ≤ 5 %",
                           f"{change * 100:+.1f} %", abs(change) <= 0.05)
        self.targets.check("memory per token", f"≤ 300 B RSS per token at {counts[-1]:,}",
                           f"{per_token:.0f} B", per_token <= 300)

    def upload(self):
        proxy_cpus, load_cpus = self.cpus(1)
        n = self.args.tokens
        token = self.stable_token(n)
        backend, burl = self.start_backend(1, load_cpus)
        started = [
            ("scangate", *self.start_scangate("scangate-up", burl, n, 1, proxy_cpus)),
            ("nginx", *self.start_nginx("nginx-up", burl, n, 1, proxy_cpus)),
            ("haproxy", *self.start_haproxy("haproxy-up", burl, n, 1, proxy_cpus)),
        ]
        procs.wait_ready(backend, burl, None, 30)
        for _, srv, url in started:
            procs.wait_ready(srv, url, token, 120)
        blob = self.path("upload.bin")
        with open(blob, "wb") as f:
            f.truncate(self.args.upload_bytes)
        targets = [("direct (backend)", backend, burl)] + started
        results = {name: [] for name, _, _ in targets}
        log(f"\n== upload {self.args.upload_bytes} bytes")
        for rnd in range(self.args.rounds):
            for name, srv, url in targets:
                # Several PUTs in a row per target and round: one PUT's figure swings with
                # whatever else the machine does in those seconds; the round keeps their median.
                puts = []
                for put in range(self.args.puts):
                    srv.reset_peak()
                    rss0 = srv.rss_kib()
                    argv = ["curl", "-sS", "-o", "/dev/null", "-T", blob,
                            "-H", f"Authorization: Bearer {token}",
                            "-w", "%{http_code} %{time_total} %{size_upload}",
                            f"{url}/upload/blob-{rnd}-{put}"]
                    out = subprocess.run(procs.pinned(argv, load_cpus), capture_output=True,
                                         text=True, timeout=600).stdout.split()
                    code, secs, size = int(out[0]), float(out[1]), int(out[2])
                    growth = max(0, srv.peak_kib() - rss0)
                    dav_file = os.path.join(self.path("dav"), "upload", f"blob-{rnd}-{put}")
                    if os.path.exists(dav_file):
                        os.remove(dav_file)
                    puts.append({"mib_s": size / secs / (1 << 20), "growth_kib": growth,
                                 "code": code})
                run = {"mib_s": report.median(puts, "mib_s"),
                       "growth_kib": max(p["growth_kib"] for p in puts),
                       "code": next((p["code"] for p in puts if not 200 <= p["code"] < 300),
                                    puts[0]["code"])}
                results[name].append(run)
                each = ", ".join(f"{p['mib_s']:.0f}" for p in puts)
                log(f"  round {rnd + 1} {name}: {run['code']}, {each} MiB/s "
                    f"(median {run['mib_s']:.0f}), peak RSS growth {run['growth_kib'] / 1024:.1f} MiB")
        self.stop(*[s for _, s, _ in started], backend)

        lines = ["| target | MiB/s (median) | peak RSS growth (max) | statuses | MiB/s per round |",
                 "|---|---:|---:|---|---|"]
        for name, runs in results.items():
            rounds = ", ".join(f"{r['mib_s']:.0f}" for r in runs)
            codes = ",".join(str(r["code"]) for r in runs)
            lines.append(
                f"| {name} | {report.median(runs, 'mib_s'):.0f} | "
                f"{max(r['growth_kib'] for r in runs) / 1024:.1f} MiB | {codes} | {rounds} |")
        sg_tp = report.median(results["scangate"], "mib_s")
        ng_tp = report.median(results["nginx"], "mib_s")
        sg_growth = max(r["growth_kib"] for r in results["scangate"]) / 1024
        ok_codes = all(200 <= r["code"] < 300 for runs in results.values() for r in runs)
        text = (f"{self.args.puts} PUTs of {self.args.upload_bytes / GIB:.2f} GiB in a row per "
                f"target and round (the round's figure is their median) with curl `-T`, "
                f"to a backend that reads the whole body (WebDAV PUT to tmpfs), 1 worker each. "
                f"Peak RSS growth = VmHWM after the upload − VmRSS before it (VmHWM reset with "
                f"clear_refs).\n\n" + "\n".join(lines))
        self.section("Streaming upload", text)
        self.targets.check("1 GiB upload", "RSS growth ≤ 32 MiB", f"{sg_growth:.1f} MiB",
                           sg_growth <= 32 and ok_codes)
        self.targets.check("1 GiB upload", "throughput ≥ 1.0 × nginx",
                           f"{sg_tp / ng_tp:.3f} × nginx", sg_tp >= ng_tp and ok_codes)

    def https(self):
        """The three proxies on one certificate, all on TLS 1.3: keep-alive, then a new
        connection per request twice, once with each server's default resumption settings (oha's
        rustls client resumes whenever a server gave it a ticket) and once with resumption off on
        every server, so that every handshake is a full one. After each handshake run a short
        probe through `tlspeek.py` counts which handshakes each server actually resumed."""
        proxy_cpus, load_cpus = self.cpus(1)
        n = self.args.tokens
        token = self.stable_token(n)
        certificate = peers.write_certificate(self.work)
        backend, burl = self.start_backend(1, load_cpus)
        procs.wait_ready(backend, burl, None, 30)
        note = []
        order = None
        runs = {}
        for resumption in (True, False):
            tls = dict(certificate, resumption=resumption)
            tag = "" if resumption else "-full"
            started = self.start_tls_targets(burl, n, proxy_cpus, tls, tag, token, note)
            targets = started
            if self.args.only:
                targets = [t for t in started if t[0] in self.args.only.split(",")]
            order = [t[0] for t in targets]
            if resumption:
                log("\n== https, keep-alive")
                runs["keepalive"] = self.run_rounds(targets, token, load_cpus, tls=True)
            log(f"\n== https, a handshake per request, resumption {'on' if resumption else 'off'}")
            phase = "default" if resumption else "full"
            runs[phase] = self.run_rounds(targets, token, load_cpus, tls=True, keepalive=False)
            runs[phase + "-kinds"] = {name: handshake_kinds(url, token, load_cpus)
                                      for name, _, url in targets}
            self.stop(*[s for _, s, _ in started])
        self.stop(backend)
        others = [t for t in ["scangate-baseline", "nginx", "haproxy"] if t in order]
        text = ("".join(note) + f"Same EC P-256 self-signed certificate for all, TLS 1.3 for all, "
                f"{n} tokens, 1 worker each. Keep-alive: oha keeps its {self.args.conns} "
                f"connections.\n\n"
                + report.table(runs["keepalive"], order) + "\n\n"
                + report.ratios(runs["keepalive"], "scangate", others) + "\n\n"
                + f"A new connection per request (oha `--disable-keepalive`, "
                f"c={self.args.conns}), every server with its default resumption settings; "
                f"oha's rustls client resumes whenever a server gave it a ticket.\n\n"
                + report.table(runs["default"], order) + "\n\n"
                + report.ratios(runs["default"], "scangate", others) + "\n\n"
                + kinds_text(runs["default-kinds"], order) + "\n\n"
                + "The same with resumption off on every server (scangate `TlsSessionTickets` "
                "0; nginx `ssl_session_tickets off`, `ssl_session_cache off`, `ssl_conf_command "
                "NumTickets 0`; HAProxy `no-tls-tickets`, `tune.ssl.cachesize 0`, which still "
                "sends two tickets that resume nothing), so that every handshake is a full "
                "one:\n\n"
                + report.table(runs["full"], order) + "\n\n"
                + report.ratios(runs["full"], "scangate", others) + "\n\n"
                + kinds_text(runs["full-kinds"], order))
        self.section("HTTPS", text)
        r = report.ratio(runs["keepalive"], "scangate", "nginx", "rps")
        self.targets.check("HTTPS good req/s", "≥ 1.0 × nginx",
                           "skipped: scangate refused https" if r is None else f"{r:.3f} × nginx",
                           None if r is None else r >= 1.0)
        for phase, what in (("default", "each server's default resumption"),
                            ("full", "full handshakes on all")):
            r = report.ratio(runs[phase], "scangate", "nginx", "rps")
            self.targets.check(f"new TLS 1.3 handshakes per second, {what}", "≥ 1.0 × nginx",
                               "not measured" if r is None else f"{r:.3f} × nginx",
                               None if r is None else r >= 1.0)

    def start_tls_targets(self, burl, n, proxy_cpus, tls, tag, token, note):
        """scangate (and the baseline) and the peers on `tls`, ready."""
        started = []
        srv, url = self.start_scangate(f"scangate-tls{tag}", burl, n, 1, proxy_cpus, tls=tls)
        try:
            procs.wait_ready(srv, url, token, 120)
            started.append(("scangate", srv, url))
        except RuntimeError as e:
            srv.stop()
            note.append("**scangate skipped: it did not serve `https://`** (TLS termination not "
                        "in this build?). Its log:\n\n```\n" + str(e)[-1500:] + "\n```\n\n")
            log(note[-1])
        if self.args.baseline:
            srv, url = self.start_scangate(f"scangate-baseline-tls{tag}", burl, n, 1, proxy_cpus,
                                           tls=tls, binary=self.args.baseline)
            started.append(("scangate-baseline", srv, url))
        started.append(("nginx", *self.start_nginx(f"nginx-tls{tag}", burl, n, 1, proxy_cpus,
                                                   tls)))
        started.append(("haproxy", *self.start_haproxy(f"haproxy-tls{tag}", burl, n, 1,
                                                       proxy_cpus, tls)))
        for name, s, u in started:
            if name != "scangate":  # already up
                procs.wait_ready(s, u, token, 120)
        return started

    def reload(self):
        proxy_cpus, load_cpus = self.cpus(1)
        backend, burl = self.start_backend(1, load_cpus)
        procs.wait_ready(backend, burl, None, 30)
        lines = []
        for n, count, under_load in [(self.args.reload_tokens, self.args.reloads, True),
                                     (self.args.max_tokens, self.args.reloads_1m, False)]:
            lines.append(self.reload_one(burl, n, count, under_load, proxy_cpus, load_cpus))
        backend.stop()
        self.section("Reload", "\n\n".join(lines))

    def reload_one(self, burl, n, count, under_load, proxy_cpus, load_cpus):
        """Alternates two n-token files (1 % of the tokens rotated) by rename, `count` times."""
        name = f"scangate-reload-{n}"
        stable = ("stable", self.stable_token(n))
        a = peers.write_token_files(self.work, n, "", stable)["scangate"]
        b = peers.write_token_files(self.work, n, "-b", stable)["scangate"]
        cfg = self.path(f"{name}.xml")
        srv, url = self.start_scangate(name, burl, n, 1, proxy_cpus, config=cfg, token_part=a)
        procs.wait_ready(srv, url, stable[1], 600)
        variants = []
        text = open(cfg).read()
        for i, part in enumerate([a, b]):
            start = text.index("      <AccessTokens>\n") + len("      <AccessTokens>\n")
            end = text.index("      </AccessTokens>")
            src = self.path(f"{name}-{i}.src")
            with open(src, "w") as f:
                f.write(text[:start] + mix(open(part).read(), open(a).read(), n) + text[end:])
            variants.append(src)

        current = [0]

        def swap():
            """Renames the other variant over the config, so every rename changes it."""
            current[0] ^= 1
            shutil.copyfile(variants[current[0]], cfg + ".tmp")
            os.rename(cfg + ".tmp", cfg)
            return time.time()

        def wait_applied(seen, limit):
            deadline = time.monotonic() + limit
            while time.monotonic() < deadline:
                lines = reload_lines(srv.log)
                if len(lines) > seen:
                    return lines[-1]
                time.sleep(0.01)
            return None

        out = [f"**{n:,} tokens** (each reload rotates 1 % of the tokens; `stable` stays)."]
        log(f"\n== reload {n}")
        # Latency, without load: rename → the "config reloaded" line's timestamp.
        lat, work_ms = [], []
        samples = self.args.latency_samples if under_load else count
        for _ in range(samples):
            seen = len(reload_lines(srv.log))
            t = swap()
            line = wait_applied(seen, 60)
            if line is None:
                out.append("- a reload did not apply within 60 s")
                break
            lat.append((log_time(line) - t) * 1000)
            work_ms.append(line.get("ms", 0))
            time.sleep(0.5)
        if lat:
            med = sorted(lat)[len(lat) // 2]
            out.append(f"- rename → applied (log timestamp), {len(lat)} samples: median "
                       f"{med:.0f} ms, max {max(lat):.0f} ms; of which parse + apply (`ms=`): "
                       f"median {sorted(work_ms)[len(work_ms) // 2]:.0f} ms")
            limit = 300 if n <= 100_000 else 3000
            self.targets.check("reload latency", f"{n:,} tokens applied ≤ {limit} ms after rename",
                               f"median {med:.0f} ms, max {max(lat):.0f} ms", max(lat) <= limit)
        if under_load and lat:
            # Back to back: rename, wait for its reload line, rename again. Faster renames would
            # only be coalesced by the watch's debounce and test fewer reloads.
            per = sorted(lat)[len(lat) // 2] / 1000
            seconds = max(self.args.reload_seconds, int(count * (per + 0.1) * 1.5) + 5)
            oha = subprocess.Popen(
                procs.pinned(["oha", "--no-tui", "--output-format", "json", "-z", f"{seconds}s",
                              "-c", str(self.args.conns), "-m", "POST", "-d", peers.SCAN_BODY,
                              "-T", "application/json", "-H", f"Authorization: Bearer {stable[1]}",
                              url + peers.SCAN_PATH], load_cpus),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(1)
            t0, applied = time.monotonic(), 0
            for _ in range(count):
                if oha.poll() is not None:
                    break
                seen = len(reload_lines(srv.log))
                swap()
                if wait_applied(seen, 30) is None:
                    break
                applied += 1
            took = time.monotonic() - t0
            stdout, _ = oha.communicate(timeout=seconds + 60)
            run = report.summarise(json.loads(stdout), (0, 0))
            out.append(f"- under load: {applied} reloads applied back to back in {took:.0f} s "
                       f"of a {seconds} s oha run; stable token: {run['good']} 2xx, "
                       f"**{run['bad']} non-2xx or failed**, {run['rps']:.0f} req/s")
            self.targets.check("reload under load",
                               f"{count} reloads of {n:,} tokens in {self.args.reload_seconds} s: "
                               f"0 non-2xx",
                               f"{run['bad']} non-2xx over {applied} reloads in {took:.0f} s",
                               run["bad"] == 0 and applied == count)
        srv.stop()
        return "\n".join(out)


def handshake_kinds(url, token, load_cpus, requests=2000, conns=16):
    """`requests` new connections through the `tlspeek.py` relay: how many handshakes the server
    resumed and how many were full, as oha drives it."""
    port = procs.free_port()
    target = int(url.rsplit(":", 1)[1])
    relay = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tlspeek.py"),
         str(port), str(target)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        relay.stderr.readline()  # "ready"
        subprocess.run(procs.pinned(
            ["oha", "--no-tui", "--output-format", "json", "-n", str(requests), "-c", str(conns),
             "--insecure", "--disable-keepalive", "-m", "POST", "-d", peers.SCAN_BODY,
             "-T", "application/json", "-H", f"Authorization: Bearer {token}",
             f"https://127.0.0.1:{port}{peers.SCAN_PATH}"], load_cpus),
            capture_output=True, check=True, timeout=120)
    finally:
        relay.terminate()
        out, _ = relay.communicate(timeout=30)
    return json.loads(out)


def kinds_text(kinds, order):
    """One line per target: the handshakes the probe saw, by kind."""
    lines = []
    for name in order:
        k = kinds.get(name) or {}
        total = sum(k.values()) or 1
        resumed = k.get("tls13-resumed", 0) + k.get("tls12-resumed", 0)
        seen = ", ".join(f"{kind} {count}" for kind, count in k.items() if count)
        lines.append(f"- {name}: {resumed / total * 100:.0f} % resumed ({seen})")
    return ("Handshakes by kind, counted from each ServerHello by `tlspeek.py` in a probe of "
            "2,000 new connections at c=16 after the rounds:\n\n" + "\n".join(lines))


def scans_seen(engine_url):
    """An emulator's own count of scans (`getstatistics`)."""
    import urllib.request
    with urllib.request.urlopen(engine_url + "/api/v3.0/getstatistics", timeout=10) as r:
        return json.load(r)["statistics"]["total_requests"]


def exchange(url, refresh):
    """One session/confirm; returns the status and the JSON body (or the text)."""
    import http.client
    host, _, port = url.split("://", 1)[1].split("/", 1)[0].rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]
        conn.request("POST", path, body=json.dumps({"refresh_token": refresh}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, body.decode(errors="replace")
    finally:
        conn.close()


def mix(part, base, n):
    """Variant text: `base` with its first 1 % of tokens taken from `part`."""
    k = max(1, n // 100)
    p, b = part.splitlines(keepends=True), base.splitlines(keepends=True)
    return "".join(p[:k] + b[k:])


def reload_lines(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            if "config reloaded" in line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def log_time(entry):
    ts = re.sub(r"(\.\d{6})\d+", r"\1", entry["timestamp"]).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(ts).timestamp()


def pin_text(proxy_cpus, load_cpus):
    if proxy_cpus is None:
        return "none (the kernel schedules proxy, backend and oha over all cores)"
    return f"proxy on CPU {proxy_cpus}, oha and the backend on CPU {load_cpus} (taskset)"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def versions(scangate):
    def first(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return {
        "scangate": first([scangate, "--version"]) + " @ " + first(["git", "rev-parse", "--short", "HEAD"]),
        "nginx": first(["nginx", "-v"]),
        "haproxy": first(["haproxy", "-v"]),
        "oha": first(["oha", "--version"]),
        "rustc": first(["rustc", "--version"]),
        "kernel": first(["uname", "-sr"]),
        "cpu": first(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated: {PHASES}")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10, help="per oha run")
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--tokens", type=int, default=10_000)
    p.add_argument("--max-tokens", type=int, default=1_000_000)
    p.add_argument("--reload-tokens", type=int, default=100_000)
    p.add_argument("--reloads", type=int, default=100)
    p.add_argument("--reloads-1m", type=int, default=3)
    p.add_argument("--reload-seconds", type=int, default=20)
    p.add_argument("--latency-samples", type=int, default=10)
    p.add_argument("--upload-bytes", type=int, default=GIB)
    p.add_argument("--puts", type=int, default=3, help="upload: PUTs per target and round")
    p.add_argument("--exchanges", type=int, default=500, help="connections: exchanges in a row")
    p.add_argument("--engine-sessions", type=int, default=10,
                   help="engines: MaxSessions / maxconn per engine (Scan Engine's default)")
    p.add_argument("--engine-delay-ms", type=int, default=2, help="engines: the fast ones' scan")
    p.add_argument("--slow-engine-delay-ms", type=int, default=50, help="engines: the slow one's")
    p.add_argument("--scangate", default="target/release/scangate")
    p.add_argument("--scangate-log", default="info,scangate::access=off",
                   help="RUST_LOG for scangate (access log off, like the peers)")
    p.add_argument("--no-pin", action="store_true", help="never pin with taskset")
    p.add_argument("--baseline", help="another scangate binary to run beside it (before/after)")
    p.add_argument("--scangate-env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable for scangate (repeatable)")
    p.add_argument("--baseline-env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable for the baseline (repeatable)")
    p.add_argument("--only", help="load phases: measure only these targets (comma-separated)")
    p.add_argument("--record", help="insert the report at the top of this RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()
    args.scangate = os.path.abspath(args.scangate)
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
    phases = [x for x in args.phases.split(",") if x]
    v = versions(args.scangate)
    bench = Bench(args)
    log(f"work folder: {bench.work}")
    # A private copy, so a rebuild during the run cannot change the binary under test.
    for attr in ("scangate", "baseline"):
        if getattr(args, attr):
            copy = os.path.join(bench.work, f"{attr}-bin")
            shutil.copy2(getattr(args, attr), copy)
            setattr(args, attr + "_source", getattr(args, attr))
            setattr(args, attr, copy)
    try:
        for phase in phases:
            {"load1": lambda: bench.load(1), "load2": lambda: bench.load(2),
             "tokens": bench.token_counts, "upload": bench.upload, "https": bench.https,
             "reload": bench.reload, "connections": bench.connections,
             "engines": bench.engines}[phase]()
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = os.environ.get("BENCH_COMMAND") or " ".join(sys.argv)
    head = (f"## {now}: load comparison\n\n"
            f"- command: `{command}`\n- nproc: {os.cpu_count()}, CPU:{v.pop('cpu')}\n"
            + "".join(f"- {k}: {val}\n" for k, val in v.items())
            + f"- phases: {', '.join(phases)}; oha c={args.conns}, {args.seconds} s per run, "
            f"{args.rounds} rounds, POST {peers.SCAN_PATH} with a {len(peers.SCAN_BODY)}-byte "
            f"body; only 2xx counted; CPU from /proc/PID/stat (utime+stime, all threads and "
            f"worker processes) before and after each run\n")
    text = head + "\n### Targets\n\n" + bench.targets.markdown() + "\n\n" + "\n".join(bench.sections)
    print(text)
    if args.record:
        record(args.record, text)


def record(path, text):
    """Newest first: the new report goes right after the file's title block."""
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
    marker = old.find("\n## ")
    if marker < 0:
        new = old.rstrip() + "\n\n" + text
    else:
        new = old[:marker + 1] + text + "\n" + old[marker + 1:]
    with open(path, "w") as f:
        f.write(new)


if __name__ == "__main__":
    main()
