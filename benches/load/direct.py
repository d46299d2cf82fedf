#!/usr/bin/env python3
"""Memory per token and reload latency of one scangate binary, without peers, load or rounds.

For a quick before/after of the token store and the reload path (issue 7) on a busy machine,
where `compare.sh` takes long. Same configs as `compare.sh` (peers.py), in /dev/shm.

    benches/load/direct.py BINARY rss               # RSS at 1 and 1,000,000 tokens, 2 s after start
    benches/load/direct.py BINARY reload N SAMPLES  # rename → applied, like compare.sh's reload phase

`rss` reads VmRSS and VmHWM (peak) from /proc. `reload` alternates two N-token files (1 % of the
tokens rotated) by rename, 0.5 s apart, and reads the "config reloaded" log line's timestamp and
`ms` (read + parse + validate + apply), the process's CPU time per reload from /proc, and the
RSS right after the last reload and 12 s later.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
import peers  # noqa: E402
import procs  # noqa: E402

WORK = "/dev/shm/scangate-direct"


def token_part(n, salt=""):
    path = os.path.join(WORK, f"tokens-{n}{salt}.xml-part")
    if not os.path.exists(path):
        peers.write_token_files(WORK, n, salt, ("stable", peers.token(n // 2)))
    return path


def start(binary, n, name):
    """Starts scangate with n tokens; returns once its listener accepts."""
    port = procs.free_port()
    cfg = os.path.join(WORK, f"{name}.xml")
    with open(cfg, "w") as f:
        f.write(peers.scangate_xml(f"http://127.0.0.1:{port}", "http://127.0.0.1:9", token_part(n),
                                   admin_port=procs.free_port()))
    log = os.path.join(WORK, f"{name}.log")
    env = dict(os.environ, RUST_LOG="info,scangate::access=off")
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen([binary, "--log-format", "json", "serve", "--config", cfg,
                                 "--threads", "1"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=WORK)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                sys.exit(open(log).read())
            time.sleep(0.05)
    return proc, cfg, log, time.monotonic() - started


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_ms(pid):
    """User + system CPU time of the whole process so far, from /proc (on a shared machine a
    reload's wall time includes waiting for a core; its CPU time does not)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait()


def rss(binary):
    out = {}
    for n in (1, 1_000_000):
        proc, _, _, took = start(binary, n, f"rss-{n}")
        time.sleep(2)
        out[n] = (status_kib(proc.pid, "VmRSS"), status_kib(proc.pid, "VmHWM"), took)
        stop(proc)
    per = (out[1_000_000][0] - out[1][0]) * 1024 / (1_000_000 - 1)
    print(f"RSS at 1 token {out[1][0] / 1024:.1f} MiB, at 1M {out[1_000_000][0] / 1024:.1f} MiB "
          f"(peak {out[1_000_000][1] / 1024:.0f} MiB, listening after {out[1_000_000][2]:.1f} s): "
          f"{per:.0f} B per token")


def reload(binary, n, samples):
    a, b = token_part(n), token_part(n, "-b")
    proc, cfg, log, _ = start(binary, n, f"reload-{n}")
    text = open(cfg).read()
    begin = text.index("      <AccessTokens>\n") + len("      <AccessTokens>\n")
    end = text.index("      </AccessTokens>")
    variants = []
    for i, part in enumerate([b, a]):
        path = os.path.join(WORK, f"reload-{n}-{i}.src")
        with open(path, "w") as f:
            f.write(text[:begin] + compare.mix(open(part).read(), open(a).read(), n) + text[end:])
        variants.append(path)
    latency, work, cpu = [], [], []
    for i in range(samples):
        seen = len(compare.reload_lines(log))
        cpu_before = cpu_ms(proc.pid)
        shutil.copyfile(variants[i % 2], cfg + ".tmp")
        renamed = time.time()
        os.rename(cfg + ".tmp", cfg)
        deadline = time.monotonic() + 60
        while len(lines := compare.reload_lines(log)) <= seen:
            if time.monotonic() > deadline:
                sys.exit("a reload did not apply within 60 s")
            time.sleep(0.005)
        latency.append((compare.log_time(lines[-1]) - renamed) * 1000)
        work.append(lines[-1].get("ms", 0))
        cpu.append(cpu_ms(proc.pid) - cpu_before)
        time.sleep(0.5)
    med = sorted(latency)[len(latency) // 2]
    print(f"{n:,} tokens, {samples} reloads: rename → applied median {med:.0f} ms, max "
          f"{max(latency):.0f} ms; ms= median {sorted(work)[len(work) // 2]:.0f} "
          f"({', '.join(f'{w:.0f}' for w in work)}); CPU median {sorted(cpu)[len(cpu) // 2]:.0f} ms "
          f"({', '.join(f'{c:.0f}' for c in cpu)}); RSS after {status_kib(proc.pid, 'VmRSS') / 1024:.0f} MiB")
    # A reload keeps its large buffers for the next one until 10 s pass without one
    # (`config::watch::KEEP_BUFFERS`); the memory between reloads is what is left after that.
    time.sleep(12)
    print(f"RSS 12 s after the last reload {status_kib(proc.pid, 'VmRSS') / 1024:.0f} MiB")
    stop(proc)


def main():
    os.makedirs(WORK, exist_ok=True)
    peers.write_key(WORK)
    binary, what = os.path.abspath(sys.argv[1]), sys.argv[2]
    if what == "rss":
        rss(binary)
    else:
        reload(binary, int(sys.argv[3]), int(sys.argv[4]))


if __name__ == "__main__":
    main()
