#!/usr/bin/env bash
# Every route a service serves is in its OpenAPI spec, and every path in the spec is
# served. Routes come from the route tables in services/<name>/*.c
# ({"METHOD", "/path", handler}) plus the built-ins every server has.
set -euo pipefail
cd "$(dirname "$0")/../.."
status=0
builtins=$'GET /health\nGET /ready\nGET /metrics'

for dir in services/*/; do
    svc=$(basename "$dir")
    code=$(grep -hoE '\{ *"(GET|POST|PUT|PATCH|DELETE)" *, *"/[^"]*"' "$dir"*.c 2>/dev/null |
        sed -E 's/\{ *"([A-Z]+)" *, *"([^"]*)"/\1 \2/' | sort -u || true)
    [ -n "$code" ] || continue # not an HTTP service (e.g. migrate)
    code=$(printf '%s\n%s\n' "$code" "$builtins" | sort -u)
    spec_file=proto/openapi/$svc.yaml
    if [ ! -f "$spec_file" ]; then
        echo "$svc: serves routes but has no $spec_file"
        status=1
        continue
    fi
    # paths: two-space-indented keys under "paths:", methods four spaces deeper.
    spec=$(awk '
        /^paths:/ { inpaths = 1; next }
        /^[^ #]/ { inpaths = 0 }
        inpaths && /^  \/[^:]*:/ { p = $1; sub(/:$/, "", p); next }
        inpaths && p != "" && /^    (get|post|put|patch|delete):/ {
            m = $1; sub(/:$/, "", m); print toupper(m) " " p }
    ' "$spec_file" | sort -u)
    missing=$(comm -23 <(echo "$code") <(echo "$spec"))
    extra=$(comm -13 <(echo "$code") <(echo "$spec"))
    if [ -n "$missing" ]; then
        echo "$svc: served but not in $spec_file:"
        echo "$missing" | sed 's/^/  /'
        status=1
    fi
    if [ -n "$extra" ]; then
        echo "$svc: in $spec_file but not served:"
        echo "$extra" | sed 's/^/  /'
        status=1
    fi
    [ -z "$missing$extra" ] && echo "$svc: $(echo "$code" | wc -l) routes match $spec_file"
done
exit $status
