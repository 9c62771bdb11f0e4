#!/usr/bin/env bash
# Stream guardrail benchmark: what a 50-rule output profile costs the router,
# compared with no guardrails, as ratios. One release-build ias-router (one
# worker) in front of one ias-mockllm (one worker); a tiny stand-in answers the
# router's GET /internal/guardrails/{id} (fetched once, then cached by id). The
# client (node, keep-alive) calls the router directly with the headers ingress
# would send, so only the router's work differs between the two runs.
#
# Measured per configuration:
#   ttft fast   time to the first non-empty content delta, tokens as fast as
#               the mock can (sequential requests)
#   ttft paced  same at 100 tokens/s (10 ms a token): the hold-back window
#               (64 characters) shows here as added time to first token
#   throughput  completion tokens/s with BENCH_CONNS concurrent streams of
#               BENCH_MAX_TOKENS tokens each, for BENCH_SECONDS
#
# Needs Redis and RabbitMQ (IAS_REDIS_URL, IAS_AMQP_URL: scripts/stack.sh up,
# then . stack.env), python3 and node.
#   bash bench/guardrails.sh        BENCH_SECONDS=8 BENCH_CONNS=8 BENCH_MAX_TOKENS=512
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}
SECS=${BENCH_SECONDS:-8}
CONNS=${BENCH_CONNS:-8}
MAXTOK=${BENCH_MAX_TOKENS:-512}
RULES=${BENCH_RULES:-50}
: "${IAS_REDIS_URL:?set IAS_REDIS_URL (scripts/stack.sh up; . stack.env)}"
: "${IAS_AMQP_URL:?set IAS_AMQP_URL (scripts/stack.sh up; . stack.env)}"
make -s BUILD="$B" "$B/bin/ias-router" "$B/bin/ias-mockllm"

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
    echo "no answer from $1" >&2; exit 1
}

# The profile: RULES output rules that never match the mock's words, so every
# rule is evaluated on every delta and nothing stops: 4 in 5 deny phrases, 1 in
# 5 redact regexes.
PROFILE=11111111-1111-4111-8111-111111111111
python3 - "$RULES" "$PROFILE" >"$work/profile.json" <<'PY'
import json, sys
n, pid = int(sys.argv[1]), sys.argv[2]
rules = []
for i in range(n):
    if i % 5 == 4:
        rules.append({"id": f"r{i}", "action": "redact", "regex": f"secret-[0-9]{{4}}-k{i}", "replacement": "[x]"})
    else:
        rules.append({"id": f"p{i}", "action": "deny", "phrase": f"forbidden topic number {i}", "case_insensitive": True})
print(json.dumps({"id": pid, "name": "bench50", "scope": "global", "org_id": None, "version": 1,
                  "holdback": 64, "document": {"output": {"rules": rules}}}))
PY

pdp_port=$(port)
python3 - "$pdp_port" "$work/profile.json" >"$work/pdp.log" 2>&1 <<'PY' &
import http.server, sys
body = open(sys.argv[2], 'rb').read()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path.startswith('/internal/guardrails/') else 404)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)

mock_port=$(port)
IAS_PORT=$mock_port IAS_WORKERS=1 IAS_LOG_LEVEL=warn IAS_MOCK_CONTEXT=100000 \
    "$B/bin/ias-mockllm" >"$work/mock.log" 2>&1 &
pids+=($!)
cat >"$work/registry.json" <<JSON
{"version":"bench","models":[{"id":"00000000-0000-4000-8000-000000000001","name":"mock-gpt",
 "context_length":100000,"fallback_model":null,"tags":[],
 "backends":[{"id":"00000000-0000-4000-8000-000000000002","url":"http://127.0.0.1:$mock_port","weight":1,"upstream_model":null}]}]}
JSON
router_port=$(port)
IAS_PORT=$router_port IAS_WORKERS=1 IAS_LOG_LEVEL=warn IAS_REGISTRY_FILE="$work/registry.json" \
    IAS_PDP_URL="http://127.0.0.1:$pdp_port" IAS_SPOOL_DIR="$work/spool" \
    "$B/bin/ias-router" >"$work/router.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$mock_port/health"
wait_http "http://127.0.0.1:$router_port/ready"

node - "http://127.0.0.1:$router_port" "$PROFILE" "$SECS" "$CONNS" "$MAXTOK" "$RULES" <<'JS'
const http = require('node:http');
const [base, profile, secs, conns, maxTok, rules] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const org = '22222222-2222-4222-8222-222222222222';

// One streamed request; resolves {ttft (ms to first non-empty content), tokens}.
function one(guard, maxTokens, rate) {
  return new Promise((resolve, reject) => {
    const headers = { 'Content-Type': 'application/json', 'X-Ias-Org-Id': org };
    if (guard) headers['X-Ias-Guardrails'] = profile;
    if (rate) headers['X-Mock-Tokens-Per-S'] = String(rate);
    const t0 = process.hrtime.bigint();
    let ttft = -1, buf = '', text = '';
    const req = http.request(`${base}/v1/chat/completions`, { method: 'POST', agent, headers }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i); buf = buf.slice(i + 2);
          if (!ev.startsWith('data: {')) continue;
          const c = JSON.parse(ev.slice(6)).choices?.[0]?.delta?.content;
          if (c) {
            if (ttft < 0) ttft = Number(process.hrtime.bigint() - t0) / 1e6;
            text += c;
          }
        }
      });
      res.on('end', () => resolve({ ttft, tokens: maxTokens, text }));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ model: 'mock-gpt', stream: true, max_tokens: maxTokens,
      messages: [{ role: 'user', content: 'tell me a long story' }] }));
  });
}
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

async function ttft(guard, n, rate, maxTokens) {
  const v = [];
  for (let i = 0; i < n; i++) v.push((await one(guard, maxTokens, rate)).ttft);
  return { p50: pct(v, 0.5), p99: pct(v, 0.99) };
}
async function throughput(guard) {
  const end = Date.now() + Number(secs) * 1000;
  let tokens = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: Number(conns) }, async () => {
    while (Date.now() < end) tokens += (await one(guard, Number(maxTok), 0)).tokens;
  }));
  return tokens / ((Date.now() - t0) / 1000);
}

(async () => {
  // same text either way (nothing matches), and warm the profile cache
  const a = await one(false, 64, 0), b = await one(true, 64, 0);
  if (a.text !== b.text) throw new Error('guarded text differs from the unguarded one');
  const r = {};
  for (const g of [false, true]) {
    r[g] = { fast: await ttft(g, 300, 0, 64), paced: await ttft(g, 20, 100, 32), tps: await throughput(g) };
  }
  const f = (x) => x.toFixed(2);
  console.log(`| measure | none | ${rules}-rule output profile | ratio |`);
  console.log('|---|---:|---:|---:|');
  console.log(`| TTFT p50, fast (ms) | ${f(r.false.fast.p50)} | ${f(r.true.fast.p50)} | ${f(r.true.fast.p50 / r.false.fast.p50)} |`);
  console.log(`| TTFT p99, fast (ms) | ${f(r.false.fast.p99)} | ${f(r.true.fast.p99)} | ${f(r.true.fast.p99 / r.false.fast.p99)} |`);
  console.log(`| TTFT p50, 100 tokens/s (ms) | ${f(r.false.paced.p50)} | ${f(r.true.paced.p50)} | ${f(r.true.paced.p50 / r.false.paced.p50)} |`);
  console.log(`| throughput, ${conns} streams (tokens/s) | ${r.false.tps.toFixed(0)} | ${r.true.tps.toFixed(0)} | ${f(r.true.tps / r.false.tps)} |`);
})().catch((e) => { console.error(e); process.exit(1); });
JS
