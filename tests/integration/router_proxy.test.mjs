// Router against real mockllm backends, real Redis and RabbitMQ: streaming and
// non-streaming usage, usage chunk stripping, load sharing, failover before the
// first byte, mid-stream cuts, client aborts, slow readers, budget settle, usage
// events (schema-checked) and registry reloads on config.models.changed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { startService, stackEnv, freePort, root, redisCli, budgetMonth, eventValidator, subscribeEvents } from '../lib/harness.mjs';

const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
const env = stackEnv();
const skip = env ? false : 'needs IAS_REDIS_URL and IAS_AMQP_URL (test stack)';

const ORG = '0190f5a0-0000-7000-8000-00000000000a';
const USER = '0190f5a0-0000-7000-8000-00000000000b';
const KEY = '0190f5a0-0000-7000-8000-00000000000c';

let urlC;
let dir, regFile, router, mockA, mockB, mockC, mockD, mockBig, deadPort;
let amqp, channel, validate;
const events = new Map(); // request_id -> [event]
const waiters = [];

function registry(extra = []) {
  const be = (id, m, more = {}) => ({ id, url: m.url, weight: 1, upstream_model: null, ...more });
  const model = (name, backends, more = {}) => ({
    id: randomUUID(), name, context_length: 8192, input_rate_per_1k: '0.5', output_rate_per_1k: '1.5',
    fallback_model: null, tags: [], backends, ...more,
  });
  return {
    version: `${Date.now()}-${extra.length}`,
    models: [
      model('mock-gpt', [be('a', mockA), be('b', mockB)]),
      model('kill-gpt', [be('c', { url: urlC }, { upstream_model: 'mock-gpt' }), be('d', mockD, { upstream_model: 'mock-gpt' })]),
      model('big-gpt', [be('big', mockBig, { upstream_model: 'mock-gpt' })]),
      model('hang-gpt', [be('ha', mockA, { upstream_model: 'mock-gpt' })]),
      model('down-gpt', [{ id: 'dead', url: `http://127.0.0.1:${deadPort}`, weight: 1, upstream_model: null }]),
      model('drained-gpt', [be('zero', mockA, { weight: 0 })]),
      model('primary-gpt', [{ id: 'dead2', url: `http://127.0.0.1:${deadPort}`, weight: 1, upstream_model: null }],
        { fallback_model: 'mock-gpt' }),
      ...extra,
    ],
  };
}

const redis = (...args) => redisCli(...args).trim();

function waitEvent(requestId, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const have = events.get(requestId);
    if (have) return resolve(have[0]);
    const t = setTimeout(() => reject(new Error(`no usage event for ${requestId}`)), timeoutMs);
    waiters.push({ requestId, resolve: (e) => { clearTimeout(t); resolve(e); } });
  });
}

async function metric(base, name) {
  const text = await (await fetch(base + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : 0;
}

function headers(extra = {}) {
  return {
    'Content-Type': 'application/json', 'X-Ias-Org-Id': ORG, 'X-Ias-User-Id': USER, 'X-Ias-Key-Id': KEY,
    'X-Request-Id': randomUUID(), ...extra,
  };
}

async function chat(body, extra = {}, signal) {
  const h = headers(extra);
  const r = await fetch(router.url + '/v1/chat/completions', { method: 'POST', headers: h, body: JSON.stringify(body), signal });
  return { r, id: h['X-Request-Id'] };
}

const msgs = [{ role: 'user', content: 'hello there router' }]; // mockllm: 3 words + 3 + 3 = 9 prompt tokens

before(async () => {
  if (skip) return;
  validate = eventValidator('usage.recorded.v1');

  const mock = (more = {}) => startService('mockllm', { IAS_WORKERS: '1', ...more }, { ready: '/health' });
  [mockA, mockB, mockC, mockD, mockBig] = await Promise.all([mock(), mock(), mock(), mock(),
    mock({ IAS_MOCK_CONTEXT: '10000000' })]);
  urlC = mockC.url;
  deadPort = await freePort();
  dir = mkdtempSync(join(tmpdir(), 'ias-router-'));
  regFile = join(dir, 'registry.json');
  writeFileSync(regFile, JSON.stringify(registry()));

  amqp = await subscribeEvents(['usage.recorded'], (e) => {
    const ev = e.body;
    ev._props = { type: e.type, messageId: e.messageId };
    const list = events.get(ev.request_id) || [];
    list.push(ev);
    events.set(ev.request_id, list);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i].requestId === ev.request_id) { waiters[i].resolve(ev); waiters.splice(i, 1); }
    }
  });
  channel = amqp.channel;

  router = await startService('router', {
    IAS_REGISTRY_FILE: regFile, IAS_SPOOL_DIR: join(dir, 'spool'), IAS_HEALTH_INTERVAL: '300ms',
    IAS_HEALTH_TIMEOUT: '500ms', IAS_UPSTREAM_FIRST_TOKEN_TIMEOUT: '1500ms', IAS_BREAKER_COOLDOWN: '2s',
    IAS_REDIS_URL: env.IAS_REDIS_URL, IAS_AMQP_URL: env.IAS_AMQP_URL, IAS_WORKERS: '2',
    // ASan's quarantine keeps every freed chunk for a while, which the RSS check would
    // read as growth: keep it small (leak detection is unaffected)
    ASAN_OPTIONS: [process.env.ASAN_OPTIONS, 'quarantine_size_mb=8'].filter(Boolean).join(':'),
  });
});

after(async () => {
  if (skip) return;
  const stops = [router, mockA, mockB, mockC, mockD, mockBig].filter(Boolean).map((s) => s.stop().catch((e) => e));
  const results = await Promise.all(stops);
  await amqp?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  for (const r of results) if (r instanceof Error) throw r;
  assert.equal(results[0], 0, 'router exits 0 on SIGTERM (no leaks)');
});

function checkEvent(ev) {
  const { _props, ...body } = ev;
  assert.ok(validate(body), JSON.stringify(validate.errors));
  assert.equal(_props.type, 'usage.recorded.v1');
  assert.equal(_props.messageId, body.event_id);
  return body;
}

test('non-streaming: JSON passed through, exact usage in the event', { skip }, async () => {
  const { r, id } = await chat({ model: 'mock-gpt', messages: msgs, max_tokens: 5 });
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(body.usage.completion_tokens, 5);
  const ev = checkEvent(await waitEvent(id));
  assert.equal(ev.prompt_tokens, body.usage.prompt_tokens);
  assert.equal(ev.completion_tokens, 5);
  assert.equal(ev.status, 200);
  assert.equal(ev.stream, false);
  assert.equal(ev.aborted, false);
  assert.equal(ev.org_id, ORG);
  assert.equal(ev.user_id, USER);
  assert.equal(ev.api_key_id, KEY);
  assert.ok(['a', 'b'].includes(ev.backend));
});

test('streaming: usage chunk stripped unless asked, exact usage either way', { skip }, async () => {
  for (const includeUsage of [false, true]) {
    const extra = includeUsage ? { 'X-Ias-Include-Usage': '1' } : {};
    const { r, id } = await chat({ model: 'mock-gpt', messages: msgs, max_tokens: 4, stream: true }, extra);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/event-stream/);
    const text = await r.text();
    assert.ok(text.trimEnd().endsWith('data: [DONE]'));
    assert.equal(/"usage"/.test(text), includeUsage, `usage chunk ${includeUsage ? 'kept' : 'stripped'}`);
    const ev = checkEvent(await waitEvent(id));
    assert.equal(ev.completion_tokens, 4);
    assert.equal(ev.prompt_tokens, 9);
    assert.equal(ev.stream, true);
    assert.equal(ev.aborted, false);
    assert.ok(ev.ttft_ms !== null && ev.ttft_ms >= 0);
  }
});

// Through ingress the router reads only "model" and stream_options from the
// raw body and takes stream and the prompt estimate from X-Ias-Stream /
// X-Ias-Prompt-Tokens (internal-contracts.md).
test('ingress view headers: body spliced from the raw bytes, estimate from the header', { skip }, async () => {
  const view = (stream) => ({ 'X-Ias-Stream': stream ? '1' : '0', 'X-Ias-Prompt-Tokens': '50' });
  // hang-gpt's backend only serves mock-gpt: the spliced body carries the upstream name;
  // include_usage false is turned true upstream, its sibling kept, the chunk still stripped
  let { r, id } = await chat({ model: 'hang-gpt', messages: msgs, max_tokens: 3, stream: true,
    stream_options: { include_usage: false, continuous_usage_stats: false } }, view(true));
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.ok(text.trimEnd().endsWith('data: [DONE]'));
  assert.equal(/"usage"/.test(text), false);
  let ev = checkEvent(await waitEvent(id));
  assert.equal(ev.prompt_tokens, 9, 'upstream usage');
  assert.equal(ev.completion_tokens, 3);
  assert.equal(ev.stream, true);

  // cut before the usage chunk: the prompt billed is ingress's estimate
  ({ r, id } = await chat({ model: 'hang-gpt', messages: msgs, max_tokens: 6, stream: true },
    { ...view(true), 'X-Mock-Fault': 'cut-after=2' }));
  assert.equal(r.status, 200);
  await r.text();
  ev = checkEvent(await waitEvent(id));
  assert.equal(ev.aborted, true);
  assert.equal(ev.prompt_tokens, 50);
  assert.equal(ev.completion_tokens, 2);

  // non-streaming, usage read from the body without a tree
  ({ r, id } = await chat({ model: 'hang-gpt', messages: msgs, max_tokens: 2 }, view(false)));
  assert.equal(r.status, 200);
  assert.equal((await r.json()).usage.completion_tokens, 2);
  ev = checkEvent(await waitEvent(id));
  assert.equal(ev.prompt_tokens, 9);
  assert.equal(ev.completion_tokens, 2);
  assert.equal(ev.stream, false);

  // malformed view headers: the full validation answers
  ({ r } = await chat({ model: 'hang-gpt', messages: [] }, { 'X-Ias-Stream': 'yes', 'X-Ias-Prompt-Tokens': '50' }));
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.param, 'messages');
});

test('settle moves the reservation from reserved into used', { skip }, async () => {
  const resv = randomUUID();
  const month = budgetMonth();
  const org = randomUUID();
  const ok = `ias:budget:${org}:${month}`;
  // ias:resv:{id} is "state:tokens:expires_ms:org:yyyymm:user" (internal-contracts.md).
  redis('SET', `ias:resv:${resv}`, `open:100:${Date.now() + 600000}:${org}:${month}:${USER}`,
    'PX', '600000');
  redis('HINCRBY', ok, 'reserved', '100');
  redis('HINCRBY', `${ok}:u:${USER}`, 'reserved', '100');
  redis('ZADD', `ias:resvq:${org}:${month}`, String(Date.now() + 600000), resv);
  const { r, id } = await chat({ model: 'mock-gpt', messages: msgs, max_tokens: 3 },
    { 'X-Ias-Org-Id': org, 'X-Ias-Reservation': resv, 'X-Ias-Reserved-Tokens': '100' });
  assert.equal(r.status, 200);
  await r.json();
  await waitEvent(id);
  let h;
  for (let i = 0; i < 50; i++) {
    h = redis('HMGET', ok, 'used', 'reserved').split('\n');
    if (h[0] === '12') break;
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.deepEqual(h, ['12', '0'], 'used = 9 prompt + 3 completion, nothing reserved');
  assert.deepEqual(redis('HMGET', `${ok}:u:${USER}`, 'used', 'reserved').split('\n'), ['12', '0']);
  assert.match(redis('GET', `ias:resv:${resv}`), /^settled:/);
});

test('two backends share the load', { skip }, async () => {
  const before = [await metric(mockA.url, 'mockllm_tokens_generated_total'), await metric(mockB.url, 'mockllm_tokens_generated_total')];
  const rs = await Promise.all(Array.from({ length: 20 }, () =>
    chat({ model: 'mock-gpt', messages: msgs, max_tokens: 1 }, { 'X-Mock-TTFT-Ms': '150' })));
  for (const { r } of rs) { assert.equal(r.status, 200); await r.json(); }
  const a = (await metric(mockA.url, 'mockllm_tokens_generated_total')) - before[0];
  const b = (await metric(mockB.url, 'mockllm_tokens_generated_total')) - before[1];
  assert.equal(a + b, 20);
  assert.ok(a >= 4 && b >= 4, `a=${a} b=${b}`);
});

test('errors: unknown model 404, drained 503 + Retry-After, refused 502, hang 504, fallback model', { skip }, async () => {
  let { r, id } = await chat({ model: 'nope', messages: msgs });
  assert.equal(r.status, 404);
  assert.equal((await r.json()).error.code, 'model_not_found');
  checkEvent(await waitEvent(id));

  ({ r } = await chat({ model: 'drained-gpt', messages: msgs }));
  assert.equal(r.status, 503);
  assert.ok(Number(r.headers.get('retry-after')) > 0);
  assert.equal((await r.json()).error.type, 'server_error');

  // the active health check has marked the refused port down: 503, not a connect attempt
  ({ r } = await chat({ model: 'down-gpt', messages: msgs }));
  assert.equal(r.status, 503);
  assert.ok(Number(r.headers.get('retry-after')) > 0);
  await r.json();

  // the backend is up but answers 5xx: retried, then 502
  ({ r, id } = await chat({ model: 'hang-gpt', messages: msgs }, { 'X-Mock-Fault': 'status=500' }));
  assert.equal(r.status, 502);
  assert.equal((await r.json()).error.code, 'upstream_error');
  const ev = checkEvent(await waitEvent(id));
  assert.equal(ev.status, 502);
  assert.equal(ev.completion_tokens, 0);
  assert.equal(ev.backend, 'ha');

  ({ r } = await chat({ model: 'hang-gpt', messages: msgs, stream: true }, { 'X-Mock-Fault': 'hang' }));
  assert.equal(r.status, 504);
  await r.json();

  ({ r, id } = await chat({ model: 'primary-gpt', messages: msgs, max_tokens: 2 }));
  assert.equal(r.status, 200);
  assert.equal((await r.json()).usage.completion_tokens, 2);
  assert.equal(checkEvent(await waitEvent(id)).model, 'mock-gpt');

  const bad = await fetch(router.url + '/v1/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'mock-gpt', messages: msgs }) });
  assert.equal(bad.status, 400, 'no caller headers');
});

test('upstream cut mid-stream: error event, never [DONE]', { skip }, async () => {
  const { r, id } = await chat({ model: 'mock-gpt', messages: msgs, max_tokens: 10, stream: true },
    { 'X-Mock-Fault': 'cut-after=3' });
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.ok(!text.includes('[DONE]'));
  const last = text.trim().split('\n\n').pop();
  assert.match(last, /^data: \{"error":\{/);
  const ev = checkEvent(await waitEvent(id));
  assert.equal(ev.aborted, true);
  assert.equal(ev.completion_tokens, 3);
  assert.equal(ev.status, 200);
});

test('idle timeout between chunks: steady gaps pass, a longer gap ends with an error event', { skip }, async () => {
  // Its own router with a short idle timeout (the shared one keeps the default).
  const idle = await startService('router', {
    IAS_REGISTRY_FILE: regFile, IAS_SPOOL_DIR: join(dir, 'spool-idle'), IAS_UPSTREAM_IDLE_TIMEOUT: '600ms',
    IAS_REDIS_URL: env.IAS_REDIS_URL, IAS_AMQP_URL: env.IAS_AMQP_URL, IAS_WORKERS: '1',
  });
  try {
    const run = async (tps, n) => {
      const h = headers({ 'X-Mock-Tokens-Per-S': String(tps) });
      const r = await fetch(idle.url + '/v1/chat/completions', {
        method: 'POST', headers: h, body: JSON.stringify({ model: 'mock-gpt', messages: msgs, max_tokens: n, stream: true }),
      });
      assert.equal(r.status, 200);
      return { text: await r.text(), id: h['X-Request-Id'] };
    };
    // 50 ms between tokens, well under the 600 ms idle limit: every token and [DONE].
    const ok = await run(20, 6);
    assert.match(ok.text, /data: \[DONE\]/);
    assert.equal((ok.text.match(/"content":"[^"]+"/g) || []).length, 6);
    // 1 s between tokens: the stream ends with an error event, never [DONE].
    const cut = await run(1, 4);
    assert.ok(!cut.text.includes('[DONE]'));
    assert.match(cut.text.trim().split('\n\n').pop(), /^data: \{"error":\{.*idle timeout/);
    const ev = checkEvent(await waitEvent(cut.id));
    assert.equal(ev.aborted, true);
  } finally {
    assert.equal(await idle.stop(), 0);
  }
});

test('client abort mid-stream: upstream cancelled, only delivered tokens billed', { skip }, async () => {
  const ac = new AbortController();
  const { r, id } = await chat({ model: 'mock-gpt', messages: msgs, max_tokens: 200, stream: true },
    { 'X-Mock-Tokens-Per-S': '40' }, ac.signal);
  const reader = r.body.getReader();
  let text = '';
  while ((text.match(/"content":"[^"]+"/g) || []).length < 5) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
  }
  const got = (text.match(/"content":"[^"]+"/g) || []).length;
  ac.abort();
  const ev = checkEvent(await waitEvent(id));
  assert.equal(ev.aborted, true);
  assert.equal(ev.status, 200);
  assert.ok(ev.completion_tokens >= got && ev.completion_tokens <= got + 3, `billed ${ev.completion_tokens}, got ${got}`);
});

function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]);
}

test('slow reader: upstream stalls, router RSS stays bounded', { skip }, async () => {
  const total = 300000;
  const genBefore = await metric(mockBig.url, 'mockllm_tokens_generated_total');
  const rss0 = rssKiB(router.pid);
  const body = JSON.stringify({ model: 'big-gpt', messages: msgs, max_tokens: total, stream: true });
  const req = http.request(router.url + '/v1/chat/completions', { method: 'POST', headers: headers() });
  const res = await new Promise((resolve, reject) => { req.on('response', resolve); req.on('error', reject); req.end(body); });
  assert.equal(res.statusCode, 200);
  res.pause(); // the client stops reading
  let peak = 0;
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 250));
    peak = Math.max(peak, rssKiB(router.pid));
  }
  const generated = (await metric(mockBig.url, 'mockllm_tokens_generated_total')) - genBefore;
  res.destroy();
  req.destroy();
  assert.ok(generated < total / 3, `upstream kept producing: ${generated} of ${total} tokens`);
  assert.ok(peak - rss0 < 32 * 1024, `router RSS grew by ${peak - rss0} KiB (upstream produced ${generated} tokens)`);
});

test('a backend killed mid-test: traffic moves over, no request fails before the first byte', { skip }, async () => {
  let failures = 0, ok = 0, stop = false;
  const loop = async () => {
    while (!stop) {
      const { r } = await chat({ model: 'kill-gpt', messages: msgs, max_tokens: 2 }, { 'X-Mock-TTFT-Ms': '30' });
      if (r.status === 200 && (await r.json()).usage.completion_tokens === 2) ok++; else failures++;
    }
  };
  const loops = Array.from({ length: 4 }, loop);
  await new Promise((r) => setTimeout(r, 700));
  process.kill(mockC.pid, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 1500));
  const dBefore = await metric(mockD.url, 'mockllm_tokens_generated_total');
  await new Promise((r) => setTimeout(r, 500));
  stop = true;
  await Promise.all(loops);
  const dAfter = await metric(mockD.url, 'mockllm_tokens_generated_total');
  assert.equal(failures, 0);
  assert.ok(ok > 10, `ok=${ok}`);
  assert.ok(dAfter > dBefore, 'the healthy backend serves');
  await mockC.exited;
  mockC = null; // killed on purpose: no exit check
});

test('registry reloads within 1 s of config.models.changed', { skip }, async () => {
  let { r } = await chat({ model: 'late-gpt', messages: msgs, max_tokens: 1 });
  assert.equal(r.status, 404);
  await r.json();
  const late = { id: randomUUID(), name: 'late-gpt', context_length: 8192, fallback_model: null, tags: [],
    backends: [{ id: 'late', url: mockA.url, weight: 1, upstream_model: 'mock-gpt' }] };
  writeFileSync(regFile, JSON.stringify(registry([late])));
  const t0 = Date.now();
  channel.publish('ias.events', 'config.models.changed', Buffer.from(JSON.stringify({ hint: true })));
  for (;;) {
    ({ r } = await chat({ model: 'late-gpt', messages: msgs, max_tokens: 1 }));
    await r.text();
    if (r.status === 200) break;
    assert.ok(Date.now() - t0 < 1000, 'not reloaded within 1 s');
    await new Promise((res) => setTimeout(res, 50));
  }
});
