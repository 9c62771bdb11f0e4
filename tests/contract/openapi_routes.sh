#!/usr/bin/env bash
# Every route a service serves is in an OpenAPI spec under proto/openapi/, and every
# path in those specs is served by some service. Routes come from the route tables
# in services/<name>/*.c ({"METHOD", "/path", handler}) plus the built-ins every HTTP
# server has (/health, /ready, /metrics). Specs: management.yaml (the /api/v1
# management API of every service), internal.yaml (/internal/*, never exposed by
# ingress), and one file per service for anything else (e.g. mockllm.yaml).
set -euo pipefail
cd "$(dirname "$0")/../.."
builtins=$'GET /health\nGET /ready\nGET /metrics'

served=""
for dir in services/*/; do
    svc=$(basename "$dir")
    routes=$(grep -hoE '\{ *"(GET|POST|PUT|PATCH|DELETE)" *, *"/[^"]*"' "$dir"*.c 2>/dev/null |
        sed -E 's/\{ *"([A-Z]+)" *, *"([^"]*)"/\1 \2/' | sort -u || true)
    [ -n "$routes" ] || continue # not an HTTP service (e.g. migrate)
    served+="$routes"$'\n'"$builtins"$'\n'
    echo "$svc: $(echo "$routes" | wc -l) routes"
done
served=$(echo "$served" | sed '/^$/d' | sort -u)

# paths: two-space-indented keys under "paths:", methods four spaces deeper.
spec=$(for f in proto/openapi/*.yaml; do
    awk '
        /^paths:/ { inpaths = 1; next }
        /^[^ #]/ { inpaths = 0 }
        inpaths && /^  \/[^:]*:/ { p = $1; sub(/:$/, "", p); next }
        inpaths && p != "" && /^    (get|post|put|patch|delete):/ {
            m = $1; sub(/:$/, "", m); print toupper(m) " " p }
    ' "$f"
done | sort -u)

status=0
missing=$(comm -23 <(echo "$served") <(echo "$spec"))
extra=$(comm -13 <(echo "$served") <(echo "$spec"))
if [ -n "$missing" ]; then
    echo "served but in no spec under proto/openapi/:"
    echo "$missing" | sed 's/^/  /'
    status=1
fi
if [ -n "$extra" ]; then
    echo "in a spec but served by no service:"
    echo "$extra" | sed 's/^/  /'
    status=1
fi
[ $status = 0 ] && echo "all $(echo "$served" | wc -l) routes match the specs"
exit $status
