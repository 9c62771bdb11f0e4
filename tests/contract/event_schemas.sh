#!/usr/bin/env bash
# Event contracts: schemas compile, examples validate, broken examples are refused.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -d tests/e2e/node_modules/ajv ]; then
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
node tests/contract/event_schemas.mjs
