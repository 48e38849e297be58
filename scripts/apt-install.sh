# shellcheck shell=bash
# Installs Debian packages for the test, validation and benchmark scripts, which source this
# file and call `apt_install PKG...` (nothing to do when no PKG is given). As root only; quiet,
# without recommends, waiting for a held dpkg lock, and without letting the packages start
# their services on install (Prometheus, Alertmanager, nginx would listen on every interface:
# the scripts start their own copies on 127.0.0.1).
apt_install() {
  [ "$#" -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing $*: run as root or install them first (apt-get install --no-install-recommends $*)" >&2
    return 1
  fi
  echo "installing Debian packages: $*"
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "$@" >/dev/null
}
