#!/bin/bash
# Container health check for authwatch (the image's HEALTHCHECK).
#
# Uses bash's /dev/tcp, so the image needs nothing beyond debian:bookworm-slim (whose bash is
# an Essential package): no curl, wget or busybox to install, patch and scan just to fetch one
# URL. It sends one plain HTTP/1.0 `GET /-/healthy` to AUTHWATCH_HEALTHCHECK_ADDR (default
# 127.0.0.1:19868, which must match --web.listen-address) and is healthy when authwatch answers:
#
#   - 200: the default, without --web.config.file;
#   - 401 with authwatch's `Basic realm="authwatch"`: basic auth is on, and this script holds no
#     credentials. The reply still comes from authwatch's HTTP server, which is all /-/healthy
#     proves (it answers 200 whenever the process serves);
#   - a TLS alert record: TLS is on and authwatch's TLS layer rejected the plain-text request.
#     bash cannot speak TLS; the alert shows the server accepting and handling connections.
#
# Anything else (connection refused, no answer within 4 s, another reply) is unhealthy.
set -u
export LC_ALL=C
addr="${AUTHWATCH_HEALTHCHECK_ADDR:-127.0.0.1:19868}"
host="${addr%:*}"
port="${addr##*:}"
if ! { exec 3<>"/dev/tcp/${host}/${port}"; } 2>/dev/null; then
  echo "unhealthy: cannot connect to ${addr}" >&2
  exit 1
fi
printf 'GET /-/healthy HTTP/1.0\r\nHost: %s\r\nUser-Agent: authwatch-healthcheck\r\n\r\n' "$addr" >&3
status=""
# A TLS alert has no newline: read then fails at end of input but keeps what it read.
IFS= read -r -t 4 status <&3 2>/dev/null
status="${status%$'\r'}"
case "$status" in
  "HTTP/1."?" 200 "*)
    exit 0
    ;;
  "HTTP/1."?" 401 "*)
    shopt -s nocasematch
    while IFS= read -r -t 4 line <&3; do
      line="${line%$'\r'}"
      [ -n "$line" ] || break
      if [[ $line == 'www-authenticate: Basic realm="authwatch"' ]]; then
        echo "healthy: authwatch answers (basic auth on: 401 without credentials)"
        exit 0
      fi
    done
    ;;
  $'\x15\x03'*)
    echo "healthy: authwatch answers (TLS on: alert to a plain-text request)"
    exit 0
    ;;
esac
if [ -z "$status" ]; then
  echo "unhealthy: no answer from ${addr}" >&2
else
  echo "unhealthy: ${addr} answered: ${status}" >&2
fi
exit 1
