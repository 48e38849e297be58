#!/usr/bin/env bash
# Runs the daemon on its embedded default configuration inside a fresh network namespace that
# has only a loopback interface, scrapes it, and prints what it exports: how authwatch behaves
# on a machine without internet. The namespace guarantees no packet leaves this machine, so
# use this (never a bare `cargo run`) to look at the default config from a build machine.
# Needs root and iproute2.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-8}"
bin=target/release/authwatch
[ -x "$bin" ] || cargo build --release --quiet
ns="authwatch-offline-$$"
ip netns add "$ns"
trap 'ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; ip netns delete "$ns"' EXIT
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" "$bin" --web.listen-address 127.0.0.1:19868 >"target/offline-default.log" 2>&1 &
sleep "$seconds"
# Scrape from inside the namespace with the daemon's own HTTP stack absent: bash /dev/tcp.
ip netns exec "$ns" bash -c 'exec 3<>/dev/tcp/127.0.0.1/19868; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' \
  | sed '1,/^\r$/d' >target/offline-default.metrics
grep -E '^authwatch_(probe_success|probe_failure\{.*\} 1$|probe_duration_seconds_sum|auth_healthy|tls_trust_store_certificates)' \
  target/offline-default.metrics
echo "--- log"
cat target/offline-default.log
