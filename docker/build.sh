#!/usr/bin/env bash
# Builds the scangate container image: docker/build.sh [TAG]   (default scangate:latest, or $IMAGE)
#
# 1. a statically linked release binary (glibc with crt-static; no musl target needed),
# 2. a build context with that binary stripped, the host's CA bundle, and passwd/group,
# 3. `docker build` of docker/Dockerfile, which is FROM scratch: no base image is pulled.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
image="${1:-${IMAGE:-scangate:latest}}"
triple="x86_64-unknown-linux-gnu"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
ca_bundle="${SCANGATE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

cd "$root"
# Run from a test (tests/container.rs), the environment carries what cargo sets for the test
# process (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...). Build scripts such as ring's track some of
# them, so a build from a test and one from a shell would each find the other's stale and
# rebuild the whole release binary. Clear them, so both see the same environment.
while IFS= read -r var; do
  unset "$var"
done < <(compgen -e | grep -E '^(CARGO_MANIFEST_|CARGO_PKG_|CARGO_CRATE_NAME$|CARGO_PRIMARY_PACKAGE$|CARGO_BIN_|CARGO_TARGET_TMPDIR$|NEXTEST)')
[ -r "$ca_bundle" ] || {
  echo "build.sh: no CA bundle at $ca_bundle (install ca-certificates or set SCANGATE_CA_BUNDLE)" >&2
  exit 1
}

# With --target, RUSTFLAGS reach only the target's crates, not build scripts or proc macros.
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$triple" --bin scangate
bin="$target_dir/$triple/release/scangate"
if readelf -l "$bin" | grep -q "Requesting program interpreter"; then
  echo "build.sh: $bin is dynamically linked; a scratch image cannot run it" >&2
  exit 1
fi

context="$target_dir/docker-context"
rm -rf "$context"
mkdir -p "$context"
strip --strip-all -o "$context/scangate" "$bin"
cp "$ca_bundle" "$context/ca-certificates.crt"
cp docker/passwd docker/group "$context/"
mkdir -p "$context/state"

docker build --quiet --tag "$image" --file docker/Dockerfile "$context" >/dev/null
size="$(docker image inspect --format '{{.Size}}' "$image")"
echo "built $image: $((size / 1000)) kB"
