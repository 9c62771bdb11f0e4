#!/bin/bash
# Docker HEALTHCHECK for an ias service without curl in the image: GET /health on
# the service's own port over bash's /dev/tcp; healthy on an HTTP 200 status line.
# The port is IAS_PORT, else the service's default port (by IAS_SERVICE).
set -u
case "${IAS_SERVICE:-}" in
ingress) def=8080 ;; router) def=8081 ;; pdp) def=8082 ;; accounting) def=8083 ;;
audit) def=8084 ;; users) def=8085 ;; mockllm) def=8090 ;; *) def=8080 ;;
esac
port=${IAS_PORT:-$def}
exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: ias-healthcheck\r\n\r\n' >&3 || exit 1
IFS= read -r -t 3 status <&3 || exit 1
case "$status" in
"HTTP/1."[01]" 200"*) exit 0 ;;
esac
echo "unhealthy: ${status%$'\r'}" >&2
exit 1
