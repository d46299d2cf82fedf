#!/usr/bin/env bash
# Load comparison: scangate, nginx (`map`) and HAProxy (map file) doing the same job in front of the
# same nginx backend, measured with oha, interleaved, in one run. See benches/README.md.
#
#   benches/load/compare.sh                                  # every phase, report on stdout
#   benches/load/compare.sh --record benches/RESULTS.md      # … and prepend it to RESULTS.md
#   benches/load/compare.sh --phases load1 --rounds 3        # one phase (see --help)
#
# Installs what is missing (nginx and HAProxy from apt, oha from crates.io), builds scangate with
# --release, then runs compare.py, which starts every server on 127.0.0.1 only and stops them all on
# exit, error or signal. The whole run is bounded by BENCH_TIMEOUT seconds (default 5400).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin:$HOME/.cargo/bin"

have() { command -v "$1" >/dev/null 2>&1; }
sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for tool in nginx haproxy curl taskset openssl python3; do have "$tool" || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "compare.sh: installing from apt for: ${missing[*]}" >&2
  sudo_ apt-get update -qq
  # nginx-light is Debian's smallest nginx that has the WebDAV module the upload sink uses.
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    nginx-light haproxy curl util-linux openssl python3 >/dev/null
fi
if ! have oha; then
  echo "compare.sh: installing oha from crates.io (a few minutes)" >&2
  cargo install oha --locked
fi

cargo build --release --locked --quiet
export PYTHONDONTWRITEBYTECODE=1
export BENCH_COMMAND="benches/load/compare.sh $*"
exec timeout --kill-after=30 "${BENCH_TIMEOUT:-5400}" python3 benches/load/compare.py "$@"
