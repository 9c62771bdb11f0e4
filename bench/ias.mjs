// Helpers of bench/run.sh (node 20, no dependencies).
//
//   node bench/ias.mjs seed <ingress-url> <fast-mock-url> <slow-mock-url>
//     Seeds a fresh ias through its management API (bootstrap super admin, an
//     org with a large budget, an org user, models mock-gpt -> the fast mockllm
//     and mock-slow -> the slow one, both allowed, an API key of the user) and
//     prints {"key": "ias_..."} on stdout.
//
//   node bench/ias.mjs streams <url> <n> <model> <pids> [header: value ...]
//     Opens <n> streaming chat completions at once (each on its own
//     connection), waits until every one has received its first SSE event,
//     waits a moment, reads VmRSS of each "name:pid" in <pids> (comma
//     separated) and prints {"streams": n, "open_ms": ..., "rss_kib": {...}}.
//     Then drops every connection. Env BENCH_KEY: Bearer key.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

function die(msg) {
  process.stderr.write(`bench/ias.mjs: ${msg}\n`);
  process.exit(1);
}

async function call(base, method, path, { token, body } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (r.status < 200 || r.status > 299) die(`${method} ${path}: HTTP ${r.status} ${text.slice(0, 400)}`);
  return text ? JSON.parse(text) : null;
}

async function seed(base, fast, slow) {
  const tag = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const password = `Bench-${randomBytes(9).toString('base64url')}-9!`;
  const admin = `root-${tag}@bench.example.com`;
  await call(base, 'POST', '/api/v1/bootstrap/super-admin', { body: { email: admin, password } });
  const { access_token: rootToken } = await call(base, 'POST', '/api/v1/auth/login', { body: { email: admin, password } });
  const org = await call(base, 'POST', '/api/v1/orgs', { token: rootToken, body: { name: `bench-${tag}` } });
  const email = `dev-${tag}@bench.example.com`;
  await call(base, 'POST', `/api/v1/orgs/${org.id}/users`, {
    token: rootToken, body: { email, password, role: 'org_user' },
  });
  // Large enough never to run out, small enough for Lua's doubles: the budget
  // is still reserved and settled on every request.
  await call(base, 'PUT', `/api/v1/orgs/${org.id}/budget`, {
    token: rootToken, body: { monthly_token_limit: 1000000000000 },
  });
  for (const [name, url] of [['mock-gpt', fast], ['mock-slow', slow]]) {
    await call(base, 'POST', '/api/v1/models', {
      token: rootToken,
      body: { name, context_length: 8192, input_rate_per_1k: '0.5', output_rate_per_1k: '1.5', backends: [{ url, weight: 1 }] },
    });
  }
  await call(base, 'PUT', `/api/v1/orgs/${org.id}/models`, { token: rootToken, body: { models: ['mock-gpt', 'mock-slow'] } });
  const { access_token: devToken } = await call(base, 'POST', '/api/v1/auth/login', { body: { email, password } });
  const k = await call(base, 'POST', '/api/v1/keys', { token: devToken, body: { name: 'bench' } });
  if (typeof k?.key !== 'string' || !k.key.startsWith('ias_')) die(`POST /api/v1/keys: no key in ${JSON.stringify(k)}`);
  process.stdout.write(`${JSON.stringify({ key: k.key, org: org.id })}\n`);
}

function rssKib(pid) {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : -1;
}

async function streams(url, n, model, pids, headerArgs) {
  const target = new URL('/v1/chat/completions', url);
  const headers = { 'Content-Type': 'application/json' };
  if (process.env.BENCH_KEY) headers.Authorization = `Bearer ${process.env.BENCH_KEY}`;
  for (const h of headerArgs) {
    const i = h.indexOf(':');
    if (i <= 0) die(`bad header '${h}'`);
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  const body = JSON.stringify({
    model, stream: true, max_tokens: 2000,
    messages: [{ role: 'user', content: 'Write a long story about benchmarks.' }],
  });
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const reqs = [];
  const started = Date.now();
  let failed = null;
  const opened = await new Promise((resolve) => {
    let ready = 0;
    const timer = setTimeout(() => resolve(ready), 60000);
    for (let i = 0; i < n; i++) {
      const req = http.request(target, { method: 'POST', headers, agent }, (res) => {
        let seen = false;
        if (res.statusCode !== 200) failed ??= `HTTP ${res.statusCode}`;
        res.on('data', (chunk) => {
          // Counted once the first SSE event is through every hop.
          if (!seen && chunk.includes('data:')) {
            seen = true;
            if (++ready === n) { clearTimeout(timer); resolve(ready); }
          }
        });
        res.on('error', () => {});
      });
      req.on('error', (e) => { failed ??= e.message; });
      req.end(body);
      reqs.push(req);
    }
  });
  const openMs = Date.now() - started;
  await new Promise((r) => setTimeout(r, 1000));
  const rss = {};
  for (const p of pids.split(',').filter(Boolean)) {
    const [name, pid] = p.split(':');
    rss[name] = rssKib(pid);
  }
  for (const r of reqs) r.destroy();
  agent.destroy();
  process.stdout.write(`${JSON.stringify({ streams: opened, wanted: n, open_ms: openMs, error: failed, rss_kib: rss })}\n`);
  // Let the servers see the disconnects before the caller measures anything else.
  await new Promise((r) => setTimeout(r, 500));
  process.exit(opened === n ? 0 : 1);
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'seed' && args.length === 3) await seed(...args);
else if (cmd === 'streams' && args.length >= 4) await streams(args[0], Number(args[1]), args[2], args[3], args.slice(4));
else die('usage: seed <ingress> <fast-mock> <slow-mock> | streams <url> <n> <model> <name:pid,...> [header: value ...]');
