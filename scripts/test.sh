#!/usr/bin/env bash
# Runs every test of authwatch. Installs what the tests need on a fresh Debian machine first
# (Prometheus and promtool, Chromium for the status page, iproute2 for network namespaces),
# then checks formatting and lints
# and runs every test suite (the deployment validators run from tests/deploy_validate.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need_pkgs+=(prometheus-alertmanager)
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || need_pkgs+=(prometheus-blackbox-exporter)
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
# The no-route diagnosis test runs the daemon in a network namespace (ip netns).
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
# The descriptor-exhaustion test lowers a running daemon's limit with prlimit.
command -v prlimit >/dev/null 2>&1 || need_pkgs+=(util-linux)
# shellcheck source=scripts/apt-install.sh
. scripts/apt-install.sh
apt_install "${need_pkgs[@]}"

# --locked everywhere: the Dockerfile builds with --locked, so a Cargo.lock out of step with
# Cargo.toml fails here first (and cargo only resolves what this platform builds, so no
# Windows-only crate has to be downloadable).
# The real Clerk Python SDK (clerk-backend-api, FastAPI, uvicorn) for tests/python_sdk.rs,
# pinned in tests/sdk/requirements.txt, in a venv rebuilt when the pins change.
venv=target/sdk-venv
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/sdk/requirements.txt "$venv/requirements.txt"; then
  echo "== installing the Clerk Python SDK into $venv"
  mkdir -p target
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
  cp tests/sdk/requirements.txt "$venv/requirements.txt"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets --quiet -- -D warnings
echo "== cargo test"
# Benchmarks are not tests: they run with `cargo bench` and print figures.
cargo test --locked --no-fail-fast --lib --bins --tests 2>&1 | tee target/test-output.log
