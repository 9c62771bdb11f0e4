#!/usr/bin/env bash
# Deployment manifests, checked offline: `docker-compose config` accepts the compose
# file, `kubectl kustomize` renders the base, every overlay and the vLLM example, every
# rendered object validates against the Kubernetes schemas (kubernetes-models), every
# HTTP service in services/ has its Deployment, Service, probes, NetworkPolicy and
# configuration (tests/contract/deploy_validate.mjs, which also breaks copies to prove
# it refuses them), and the runtime image installs every library the binaries link.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for tool in docker-compose kubectl python3 node; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "missing $tool (scripts/deps.sh installs it)"
        exit 1
    }
done
if [ ! -d tests/e2e/node_modules/kubernetes-models ]; then
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
# YAML (one or more documents) -> JSON array; python3-yaml comes with docker-compose.
yaml2json() { python3 -c 'import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)'; }

echo "== docker-compose config"
# Without a .env the dev defaults apply; a developer's own .env must not change the check.
(cd "$tmp" && cp "$root/docker-compose.yml" . && mkdir -p deploy/docker && docker-compose -f docker-compose.yml config -q)
(cd "$tmp" && docker-compose -f docker-compose.yml config) | yaml2json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)[0]))' >"$tmp/compose.json"

echo "== kubectl kustomize ($(kubectl version --client 2>/dev/null | head -1))"
sets=()
for dir in deploy/k8s/base deploy/k8s/overlays/*/ deploy/k8s/examples/vllm; do
    dir=${dir%/}
    name=$(basename "$dir")
    kubectl kustomize "$dir" 2>"$tmp/$name.err" | yaml2json >"$tmp/$name.json" || {
        echo "kubectl kustomize $dir failed:"
        cat "$tmp/$name.err"
        exit 1
    }
    echo "  $dir: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$tmp/$name.json") objects"
    [ "$name" = vllm ] || sets+=("$name=$tmp/$name.json")
done
IAS_SECRET_EXAMPLE_JSON=$(yaml2json <deploy/k8s/examples/secrets.example.yaml)
export IAS_SECRET_EXAMPLE_JSON

echo "== manifests against the schemas and the services"
node tests/contract/deploy_validate.mjs "$tmp/compose.json" "${sets[@]}"
# the vLLM example: schema-valid objects (it is not an ias service)
node -e '
const fs = require("fs"), path = require("path"), url = require("url");
const objs = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
(async () => {
  let bad = 0;
  for (const o of objs) {
    const gv = o.apiVersion.includes("/") ? o.apiVersion : "v1";
    const mod = await import(url.pathToFileURL(path.join("tests/e2e/node_modules/kubernetes-models", ...gv.split("/"), "index.js")));
    try { new mod[o.kind](o).validate(); } catch (e) { bad++; console.log("FAIL vllm " + o.kind + ": " + e.message); }
  }
  if (!objs.some((o) => o.kind === "Deployment" && o.spec.template.metadata.labels["ias.dev/model-server"] === "true" &&
      o.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"])) { bad++; console.log("FAIL vllm: no GPU model-server Deployment"); }
  console.log(bad ? "FAIL vllm example" : "ok   vllm example: " + objs.length + " objects valid");
  process.exit(bad ? 1 : 0);
})();' "$tmp/vllm.json"

echo "== the checker refuses broken manifests"
node tests/contract/deploy_validate.mjs --self-test "$tmp/compose.json" "base=$tmp/base.json"

echo "== runtime image libraries"
# Every shared library the release binaries link directly must come from a package the
# Dockerfile's runtime stage installs (or one those depend on, or libc).
runtime_pkgs=$(awk '/^FROM .* AS runtime/{r=1} r' deploy/docker/Dockerfile | tr '\n\\' '  ' |
    sed -E 's/.*apt-get install -y --no-install-recommends +//; s/ *&&.*//' | tr -s ' ' '\n' | sort -u)
[ -n "$runtime_pkgs" ] || { echo "no runtime package list found in deploy/docker/Dockerfile"; exit 1; }
# the binaries that go into images: HTTP services (IAS_SERVICE_CFG_ROWS) and ias-migrate
bins=$(for d in services/*/; do
    s=$(basename "$d")
    if [ "$s" = migrate ] || grep -qs IAS_SERVICE_CFG_ROWS "$d/main.c"; then
        [ -x "build/bin/ias-$s" ] && echo "build/bin/ias-$s"
    fi
done || true)
if [ -z "$bins" ]; then
    echo "  (no build/bin/ias-* yet: skipped; make test builds first)"
else
    allowed=$(printf '%s\n' $runtime_pkgs libc6 libgcc-s1
        for p in $runtime_pkgs; do
            { dpkg-query -W -f='${Depends}\n' "$p" 2>/dev/null || true; } | tr ',|' '\n\n' | sed -E 's/^ *([^ :]+).*/\1/'
        done)
    status=0
    # direct dependencies only (NEEDED); the packages bring their own
    resolved=$(for b in $bins; do ldd "$b"; done)
    # The owner of the file the loader resolves, not of any file of that name: with
    # multilib (clang pulls in libc6-i386) "*/libm.so.6" also matches /lib32.
    for lib in $(for b in $bins; do readelf -d "$b" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p'; done | sort -u); do
        path=$(awk -v l="$lib" '$1 == l && $2 == "=>" && !p { p = $3 } END { print p }' <<<"$resolved")
        pkg=""
        for p in "$path" "$(readlink -f "$path" 2>/dev/null)" "${path/#\/lib\//\/usr\/lib\/}" "${path/#\/usr\/lib\//\/lib\/}"; do
            [ -n "$p" ] && pkg=$(dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$pkg" ] && break
        done
        if [ -z "$pkg" ] || ! grep -qx "$pkg" <<<"$allowed"; then
            echo "  FAIL $(basename "$lib") (package ${pkg:-unknown}) is not installed by the runtime stage"
            status=1
        fi
    done
    [ $status = 0 ] || exit 1
    echo "  ok   $(echo "$bins" | wc -w) binaries: every linked library is in the runtime stage"
fi
# the build stage's -dev packages are the ones scripts/deps.sh installs
for p in $(grep -oE 'lib[a-z0-9-]+-dev' deploy/docker/Dockerfile | sort -u); do
    grep -qw -- "$p" scripts/deps.sh || { echo "  FAIL $p is in the Dockerfile but not in scripts/deps.sh"; exit 1; }
done
# and the other way round, but for test-only and fuzz-only packages
for p in $(sed -n '/^PKGS=(/,/^)/p' scripts/deps.sh | grep -oE 'lib[a-z0-9.-]+-dev' | sort -u); do
    case $p in libcmocka-dev | libclang-rt-*) continue ;; esac
    grep -qw -- "$p" deploy/docker/Dockerfile || { echo "  FAIL $p (scripts/deps.sh) is missing from the Dockerfile's build stage"; exit 1; }
done
echo "  ok   build-stage -dev packages match scripts/deps.sh"
echo "deploy checks passed"
