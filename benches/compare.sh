#!/usr/bin/env bash
# Side-by-side benchmark of authwatch and Prometheus's blackbox_exporter (benches/compare.rs).
# Run by hand, never in CI: it installs Debian's prometheus, prometheus-blackbox-exporter and
# nginx-light when missing, builds the release binary and runs `cargo bench --bench compare`.
#
#   bash benches/compare.sh                                   # 1,000 and 10,000 probes
#   AUTHWATCH_COMPARE_PROBES=200 AUTHWATCH_COMPARE_WINDOW_SECS=20 bash benches/compare.sh
#
# Every AUTHWATCH_COMPARE_* variable (and CARGO_TARGET_DIR) is passed through to the benchmark;
# benches/compare.rs documents them.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
[ -x /usr/bin/prometheus ] || need_pkgs+=(prometheus)
[ -x /usr/bin/prometheus-blackbox-exporter ] || need_pkgs+=(prometheus-blackbox-exporter)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light)
# gzip measures what /metrics would be compressed, and unpacks what was served compressed.
command -v gzip >/dev/null 2>&1 || need_pkgs+=(gzip)
# shellcheck source=scripts/apt-install.sh
. scripts/apt-install.sh
apt_install "${need_pkgs[@]}"

echo "== cargo build --release --locked"
cargo build --release --locked --quiet
echo "== cargo bench --bench compare"
exec cargo bench --locked --bench compare
