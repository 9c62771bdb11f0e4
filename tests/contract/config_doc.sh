#!/usr/bin/env bash
# docs/operations/configuration.md is generated from the config tables; fail when
# a row was added, removed or changed in the code without regenerating the doc.
set -euo pipefail
cd "$(dirname "$0")/../.."
doc=docs/operations/configuration.md
if [ ! -f "$doc" ]; then
    echo "FAIL: $doc is missing; run scripts/gen-config-doc.sh" >&2
    exit 1
fi
if ! diff -u "$doc" <(bash scripts/gen-config-doc.sh -) >/tmp/config_doc.$$.diff; then
    cat /tmp/config_doc.$$.diff >&2
    rm -f /tmp/config_doc.$$.diff
    echo "FAIL: $doc is out of date with the config tables; run scripts/gen-config-doc.sh" >&2
    exit 1
fi
rm -f /tmp/config_doc.$$.diff
# Every variable a service reads by name is documented.
missing=0
while read -r v; do
    if ! grep -q "^| \`$v\` |" "$doc"; then
        echo "FAIL: $v is read by a service but not in $doc" >&2
        missing=1
    fi
done < <(grep -ho 'ias_config_[a-z]*(cfg, "IAS_[A-Z0-9_]*"' services/*/main.c | grep -o 'IAS_[A-Z0-9_]*' | sort -u)
[ "$missing" = 0 ]
echo "ok: $doc matches the config tables"
