#!/usr/bin/env bash
# Runs the whole benchmark suite (release build) and prints every figure with
# its goal and the side-by-side baselines. See BENCHMARKS.md.
#
#   scripts/bench.sh            full run (~8 minutes on 2 cores, after the build)
#   scripts/bench.sh --quick    short smoke run (what CI runs, debug build)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

if [ "$quick" = 1 ]; then
  cargo build -q -p outpost-bench -p outpost-probe -p outpost-controller
  exec ./target/debug/outpost-bench all --quick
fi

# The blackbox_exporter baseline comes from Debian; install it when we can.
if ! command -v prometheus-blackbox-exporter >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing prometheus-blackbox-exporter for the baseline..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-blackbox-exporter) >/dev/null 2>&1 \
      || echo "could not install prometheus-blackbox-exporter: its baseline is skipped"
    # The package starts a service on :9115; the bench runs its own instance.
    (systemctl stop prometheus-blackbox-exporter 2>/dev/null || pkill -f '^/usr/bin/prometheus-blackbox-exporter' ) || true
  else
    echo "prometheus-blackbox-exporter not installed and not root: its baseline is skipped"
  fi
fi

cargo build --release -q -p outpost-bench -p outpost-probe -p outpost-controller
./target/release/outpost-bench all --json target/bench.json
echo "figures also written to target/bench.json"
