"""Turning oha runs into the figures the issue asks for: medians over rounds, ratios, and a check of
every target. Nothing here starts a process."""

import statistics


def split(before, after):
    """Each worker's share of the CPU the workers used between two `worker_cpu()` readings,
    largest first, e.g. "52/48"."""
    start = dict(before)
    used = [t - start.get(k, 0) for k, t in after]
    total = sum(used)
    if total <= 0 or len(used) < 2:
        return ""
    return "/".join(f"{u * 100 / total:.0f}" for u in sorted(used, reverse=True))


def summarise(res, cpu):
    """One oha run → good req/s, latencies, the proxy's CPU per good request. `cpu` is the
    proxy's (user, system) CPU seconds during the run."""
    user, system = cpu
    cpu_seconds = user + system
    codes = res.get("statusCodeDistribution") or {}
    good = sum(v for k, v in codes.items() if k.startswith("2"))
    non2xx = sum(v for k, v in codes.items() if not k.startswith("2"))
    errors = res.get("errorDistribution") or {}
    # Requests still in flight when the duration ends are cut off by oha itself, not failures.
    failed = sum(v for k, v in errors.items() if "deadline" not in k)
    secs = res["summary"]["total"]
    pct = res.get("latencyPercentiles") or {}
    return {
        "rps": good / secs,
        "p50_ms": (pct.get("p50") or 0) * 1000,
        "p99_ms": (pct.get("p99") or 0) * 1000,
        "cpu_us": cpu_seconds * 1e6 / good if good else float("nan"),
        "user_us": user * 1e6 / good if good else float("nan"),
        "sys_us": system * 1e6 / good if good else float("nan"),
        "util": cpu_seconds / secs,
        "good": good,
        "bad": non2xx + failed,
        "split": "",
    }


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def table(results, order):
    """Markdown table of medians, one row per target, plus every round's req/s."""
    lines = [
        "| target | good req/s | p50 ms | p99 ms | proxy CPU µs/req | user + sys µs/req "
        "| proxy CPU use | non-2xx+errors | req/s per round | worker CPU split per round, % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name in order:
        runs = results.get(name)
        if not runs:
            continue
        rounds = ", ".join(f"{r['rps']:.0f}" for r in runs)
        lines.append(
            f"| {name} | {median(runs, 'rps'):.0f} | {median(runs, 'p50_ms'):.2f} | "
            f"{median(runs, 'p99_ms'):.2f} | {median(runs, 'cpu_us'):.1f} | "
            f"{median(runs, 'user_us'):.1f} + {median(runs, 'sys_us'):.1f} | "
            f"{median(runs, 'util') * 100:.0f} % | {sum(r['bad'] for r in runs)} | {rounds} | "
            f"{', '.join(r.get('split') or '-' for r in runs)} |"
        )
    return "\n".join(lines)


def ratio(results, a, b, key):
    if not results.get(a) or not results.get(b):
        return None
    return median(results[a], key) / median(results[b], key)


def ratios(results, sg, peers, keys=("rps", "cpu_us", "p99_ms")):
    lines = []
    for peer in peers:
        parts = []
        for key in keys:
            r = ratio(results, sg, peer, key)
            if r is not None:
                parts.append(f"{key} {r:.3f}")
        if parts:
            lines.append(f"- {sg} / {peer}: " + ", ".join(parts))
    return "\n".join(lines)


class Targets:
    """Collects each target's verdict for the summary at the end."""

    def __init__(self):
        self.rows = []

    def check(self, figure, target, measured, ok):
        verdict = "n/a" if ok is None else ("met" if ok else "MISSED")
        self.rows.append((figure, target, measured, verdict))

    def markdown(self):
        lines = ["| figure | target | measured | verdict |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows]
        return "\n".join(lines)
