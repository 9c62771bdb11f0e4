// ingress against real servers: PostgreSQL (seeded through SQL), Redis, RabbitMQ,
// ias-users (its /internal/keys and /internal/models), ias-mockllm as the model
// server and, when its binary exists, ias-router (else ingress talks to mockllm
// directly, which speaks the same /v1 API). Clients: the official openai SDK
// and plain fetch. A small node HTTP server records what ingress sends to a
// "router" / management target, to check the outbound contract.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { request as httpRequest } from 'node:http';
import { root, binDir, stackEnv, createDb, sql, startService, scratchPath, newKey, seedTenant as seedTenantIn, redisCli, budgetMonth, budgetOf, stopAll } from '../lib/harness.mjs';

const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
const { default: OpenAI } = await import(require.resolve('openai'));
const amqp = require('amqplib');

const env = stackEnv();
const skip = !env || !existsSync(join(binDir, 'ias-ingress')) || !existsSync(join(binDir, 'ias-users'))
  ? 'needs the test stack and ias-ingress + ias-users binaries' : false;

const MODEL = 'mock-gpt';
const CONTEXT = 200000;
let db, users, mock, router, ingress, ingressB, capture, common, routerUrl, jwtSecret;
const procs = [];

// ---- seeding -----------------------------------------------------------

// The users tables have row-level security keyed on ias.org_id ('*' = all).
const rls = (q) => sql(db.dsn, `SET ias.org_id TO '*'; ${q}`);

/** An org with one org_user and one API key; limits null = none. */
const seedTenant = (opts = {}) => seedTenantIn(db.dsn, { models: [MODEL], ...opts });

const redis = redisCli;
const month = budgetMonth;

const sdk = (key, base = ingress.url) => new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0, timeout: 20000 });
const chatBody = (extra = {}) => ({ model: MODEL, messages: [{ role: 'user', content: 'hello there' }], ...extra });

async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : 0;
}

// ---- the capture server: records requests, answers like a tiny upstream ----

function startCapture() {
  const seen = [];
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (req.url.startsWith('/v1/')) {
        // With its length, as the router answers a non-streaming request.
        const out = JSON.stringify({ id: 'x', object: 'chat.completion', created: 0, model: MODEL,
          choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(out) });
        res.end(out);
      } else {
        res.writeHead(200, { 'Content-Type': 'application/json', 'X-Upstream': 'capture' });
        res.end(JSON.stringify({ path: req.url }));
      }
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${srv.address().port}`, seen, close: () => new Promise((r) => srv.close(r)),
  })));
}

// ---- lifecycle ----------------------------------------------------------

before(async () => {
  if (skip) return;
  db = createDb('ingress');
  mock = await startService('mockllm', { IAS_MOCK_CONTEXT: String(CONTEXT), IAS_MOCK_MAX_TOKENS_DEFAULT: '8' });
  procs.push(mock);
  sql(db.dsn, `INSERT INTO models (name, context_length) VALUES ('${MODEL}', ${CONTEXT}), ('other-model', 4096), ('acme/slash-model', 2048)`);
  sql(db.dsn, `INSERT INTO model_backends (model_id, url) SELECT id, '${mock.url}' FROM models`);
  jwtSecret = randomBytes(32).toString('hex');
  users = await startService('users', {
    IAS_PG_DSN: db.dsn, IAS_JWT_SECRET: jwtSecret, IAS_SPOOL_DIR: scratchPath('users-spool'),
  });
  procs.push(users);
  routerUrl = mock.url;
  if (existsSync(join(binDir, 'ias-router')) && process.env.IAS_INGRESS_TEST_ROUTER !== '0') {
    try {
      router = await startService('router', {
        IAS_USERS_URL: users.url, IAS_SPOOL_DIR: scratchPath('router-spool'),
      });
      procs.push(router);
      routerUrl = router.url;
    } catch (e) {
      console.error(`ias-router did not start; ingress talks to mockllm directly\n${e.message.slice(0, 500)}`);
    }
  }
  capture = await startCapture();
  common = {
    IAS_USERS_URL: users.url, IAS_ACCOUNTING_URL: capture.url, IAS_AUDIT_URL: capture.url,
    IAS_PDP_URL: '', IAS_RESERVATION_TTL: '60s', IAS_MODELS_CACHE_TTL: '1s',
  };
  ingress = await startService('ingress', { ...common, IAS_ROUTER_URL: routerUrl });
  procs.push(ingress);
  // B: the router is the capture server; the key cache is long so that only
  // the config.keys.changed event can make a revocation visible in time.
  ingressB = await startService('ingress', {
    ...common, IAS_ROUTER_URL: capture.url, IAS_KEY_CACHE_TTL: '60s', IAS_WORKERS: '1',
  });
  procs.push(ingressB);
});

after(async () => {
  if (skip) return;
  const stopErr = await stopAll(procs);
  await capture?.close();
  db?.drop();
  if (stopErr) throw stopErr;
});

// ---- auth ----------------------------------------------------------------

test('missing, malformed, unknown and revoked keys get 401 invalid_api_key', { skip }, async () => {
  const noAuth = await fetch(`${ingress.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(chatBody()) });
  assert.equal(noAuth.status, 401);
  assert.equal((await noAuth.json()).error.code, 'invalid_api_key');

  for (const key of ['sk-not-an-ias-key', newKey().key]) {
    await assert.rejects(sdk(key).chat.completions.create(chatBody()), (e) => {
      assert.ok(e instanceof OpenAI.AuthenticationError, e.constructor.name);
      assert.equal(e.code, 'invalid_api_key');
      return true;
    });
  }

  const t = seedTenant();
  const ok = await sdk(t.key).chat.completions.create(chatBody({ max_tokens: 4 }));
  assert.ok(ok.choices[0].message.content.length > 0);
  // Revoked the way users does it: commit, then drop the Redis copy. The
  // per-worker cache (1 s) must stop serving it within a second.
  rls(`UPDATE api_keys SET revoked_at = now() WHERE id = '${t.keyId}'`);
  redis('DEL', `ias:key:${t.sha}`);
  await new Promise((r) => setTimeout(r, 1100));
  await assert.rejects(sdk(t.key).chat.completions.create(chatBody()), OpenAI.AuthenticationError);
});

test('key lookup fills the Redis cache; a key seeded only in Redis works', { skip }, async () => {
  const t = seedTenant();
  await sdk(t.key).chat.completions.create(chatBody({ max_tokens: 2 }));
  const cached = JSON.parse(redis('GET', `ias:key:${t.sha}`));
  assert.equal(cached.org_id, t.org);
  assert.equal(cached.status, 'active');
  const ttl = Number(redis('TTL', `ias:key:${t.sha}`));
  assert.ok(ttl > 0 && ttl <= 30, `ttl ${ttl}`);

  // A key PostgreSQL does not know, present in Redis: the Redis layer answers.
  const ghost = newKey();
  redis('SET', `ias:key:${ghost.sha}`, JSON.stringify({ ...cached, key_id: randomUUID() }), 'EX', '30');
  const r = await sdk(ghost.key).chat.completions.create(chatBody({ max_tokens: 2 }));
  assert.equal(r.object, 'chat.completion');
});

test('config.keys.changed revokes a cached key within 1 s', { skip }, async () => {
  const t = seedTenant();
  const r = await sdk(t.key, ingressB.url).chat.completions.create(chatBody({ max_tokens: 2 }));
  assert.equal(r.choices[0].message.content, 'ok');
  rls(`UPDATE api_keys SET revoked_at = now() WHERE id = '${t.keyId}'`);
  redis('DEL', `ias:key:${t.sha}`);
  // Still cached (60 s TTL on B) until the event arrives.
  await sdk(t.key, ingressB.url).chat.completions.create(chatBody({ max_tokens: 2 }));
  const conn = await amqp.connect(env.IAS_AMQP_URL);
  const ch = await conn.createConfirmChannel();
  const event = { event_id: randomUUID(), occurred_at: new Date().toISOString(), kind: 'keys', org_id: t.org, ids: [t.keyId] };
  ch.publish('ias.events', 'config.keys.changed', Buffer.from(JSON.stringify(event)),
    { type: 'config.changed.v1', messageId: event.event_id, contentType: 'application/json' });
  await ch.waitForConfirms();
  const sent = Date.now();
  await conn.close();
  for (;;) {
    try {
      await sdk(t.key, ingressB.url).chat.completions.create(chatBody({ max_tokens: 2 }));
    } catch (e) {
      assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
      break;
    }
    assert.ok(Date.now() - sent < 1000, 'revoked key still accepted after 1 s');
    await new Promise((res) => setTimeout(res, 50));
  }
});

test('client X-Ias-* headers are dropped; the router gets the contract headers', { skip }, async () => {
  const t = seedTenant({ budget: 100000 });
  const before = capture.seen.length;
  const r = await fetch(`${ingressB.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${t.key}`, 'Content-Type': 'application/json',
      'X-Ias-Org-Id': 'spoofed-org', 'X-Ias-Reservation': 'spoofed', 'X-Ias-Internal-Token': 'guess',
      'X-Ias-Anything': 'x', 'X-Request-Id': 'req-ingress-test-1',
    },
    body: JSON.stringify({ ...chatBody(), stream_options: undefined }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  // A small JSON answer is relayed in one piece with its length, not chunked.
  assert.equal(r.headers.get('transfer-encoding'), null);
  assert.ok(Number(r.headers.get('content-length')) > 0);
  await r.json();
  const got = capture.seen.slice(before).find((s) => s.url === '/v1/chat/completions');
  assert.ok(got, 'router call recorded');
  assert.equal(got.headers['x-ias-org-id'], t.org);
  assert.equal(got.headers['x-ias-user-id'], t.user);
  assert.equal(got.headers['x-ias-key-id'], t.keyId);
  assert.equal(got.headers['x-ias-role'], 'org_user');
  assert.equal(got.headers['x-request-id'], 'req-ingress-test-1');
  assert.match(got.headers['x-ias-reservation'], /^[0-9a-f-]{36}$/);
  assert.equal(got.headers['x-ias-anything'], undefined);
  assert.equal(got.headers['x-ias-internal-token'], undefined);
  // What ingress validated, so the router need not parse the body again.
  assert.equal(got.headers['x-ias-stream'], '0');
  assert.match(got.headers['x-ias-prompt-tokens'], /^[1-9][0-9]*$/);
  // No max_tokens from the client: clamped to what the reservation covers.
  const fwd = JSON.parse(got.body);
  const reserved = Number(got.headers['x-ias-reserved-tokens']);
  assert.ok(fwd.max_tokens > 0 && fwd.max_tokens < reserved, `max_tokens ${fwd.max_tokens} reserved ${reserved}`);
  assert.equal(budgetOf(t.org).reserved, reserved);
  assert.equal(redis('EXISTS', `ias:budget:spoofed-org:${month()}`), '0');
});

test('the reserve bounds the prompt: CJK text and tool definitions reserve at least their bytes', { skip }, async () => {
  // A real tokenizer bills about a token per CJK character (3 bytes) and
  // renders tool definitions into the prompt; bytes / 4 of the message text
  // (the X-Ias-Prompt-Tokens estimate) undercounts both. The reserve takes
  // every byte of the body as a token, plus 8 per message and 64 for the
  // template, or 512 with tools.
  const tools = Array.from({ length: 20 }, (_, i) => ({
    type: 'function',
    function: {
      name: `lookup_${i}`, description: 'Look a record up by its id and return every field of it.',
      parameters: { type: 'object', properties: { id: { type: 'string', description: 'the record id' } }, required: ['id'] },
    },
  }));
  const cases = [
    ['CJK', { model: MODEL, messages: [{ role: 'user', content: '\u4f60\u597d\u4e16\u754c'.repeat(200) }], max_tokens: 1 }, 64],
    ['tools', { model: MODEL, messages: [{ role: 'user', content: 'hi' }], tools, max_tokens: 1 }, 512],
  ];
  for (const [name, body, template] of cases) {
    const t = seedTenant({ budget: 100000 });
    const text = JSON.stringify(body);
    const bytes = Buffer.byteLength(text);
    const id = `req-bound-${name}-${randomUUID()}`;
    const r = await fetch(`${ingressB.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${t.key}`, 'Content-Type': 'application/json', 'X-Request-Id': id },
      body: text,
    });
    assert.equal(r.status, 200, `${name}: ${await r.clone().text()}`);
    await r.json();
    const got = capture.seen.find((s) => s.headers['x-request-id'] === id);
    assert.ok(got, `${name}: router call recorded`);
    const reserved = Number(got.headers['x-ias-reserved-tokens']);
    const estimate = Number(got.headers['x-ias-prompt-tokens']);
    assert.equal(reserved, bytes + 8 + template + body.max_tokens, name);
    assert.ok(reserved >= bytes, `${name}: reserved ${reserved} < ${bytes} bytes`);
    assert.ok(estimate * 3 < bytes, `${name}: estimate ${estimate}, ${bytes} bytes`);
    // The capture router settles nothing: the reservation is still held.
    assert.equal(budgetOf(t.org).reserved, reserved, name);
  }
});

// ---- validation, models, policy ----------------------------------------------

test('GET /v1/models lists only the models the org may use', { skip }, async () => {
  const t = seedTenant();
  const list = await sdk(t.key).models.list();
  assert.deepEqual(list.data.map((m) => m.id), [MODEL]);
  assert.equal(list.data[0].object, 'model');
  await assert.rejects(sdk(newKey().key).models.list(), OpenAI.AuthenticationError);
});

test('GET /v1/models/{model} answers the models the org may use, 404 for the others', { skip }, async () => {
  const t = seedTenant({ models: [MODEL, 'acme/slash-model'] });
  const c = sdk(t.key);
  const m = await c.models.retrieve(MODEL);
  assert.deepEqual({ id: m.id, object: m.object, owned_by: m.owned_by, context_length: m.context_length },
    { id: MODEL, object: 'model', owned_by: 'ias', context_length: CONTEXT });
  // The SDK sends the '/' percent-encoded; curl users send it raw.
  assert.equal((await c.models.retrieve('acme/slash-model')).id, 'acme/slash-model');
  const raw = await fetch(`${ingress.url}/v1/models/acme/slash-model`, { headers: { authorization: `Bearer ${t.key}` } });
  assert.equal(raw.status, 200);
  assert.equal((await raw.json()).context_length, 2048);
  // Another org's model and an unknown one look the same: no registry probing.
  for (const name of ['other-model', 'no-such-model']) {
    await assert.rejects(c.models.retrieve(name), (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError, e.constructor.name);
      assert.equal(e.code, 'model_not_found');
      assert.equal(e.param, 'model');
      assert.match(e.message, new RegExp(name));
      return true;
    });
  }
  const empty = await fetch(`${ingress.url}/v1/models/`, { headers: { authorization: `Bearer ${t.key}` } });
  assert.equal(empty.status, 404);
  assert.equal((await empty.json()).error.code, 'model_not_found');
  await assert.rejects(sdk(newKey().key).models.retrieve(MODEL), OpenAI.AuthenticationError);
});

test('errors in OpenAI shape raise the SDK classes', { skip }, async () => {
  const t = seedTenant();
  const c = sdk(t.key);
  await assert.rejects(c.chat.completions.create({ ...chatBody(), model: 'other-model' }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, e.constructor.name);
    assert.equal(e.code, 'model_not_found');
    return true;
  });
  await assert.rejects(c.chat.completions.create({ ...chatBody(), model: 'no-such-model' }), OpenAI.NotFoundError);
  await assert.rejects(c.chat.completions.create({ model: MODEL }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
    assert.equal(e.param, 'messages');
    return true;
  });
  await assert.rejects(c.chat.completions.create(chatBody({ max_tokens: CONTEXT + 1 })), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
    assert.equal(e.param, 'max_tokens');
    return true;
  });
  const bad = await fetch(`${ingress.url}/v1/chat/completions`, {
    method: 'POST', headers: { Authorization: `Bearer ${t.key}` }, body: '{"model":',
  });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.type, 'invalid_request_error');
  const big = await fetch(`${ingress.url}/v1/chat/completions`, {
    method: 'POST', headers: { Authorization: `Bearer ${t.key}` }, body: 'x'.repeat(2 * 1024 * 1024),
  }).catch((e) => ({ status: 'reset', e }));
  assert.ok(big.status === 413 || big.status === 'reset', `status ${big.status}`);
  // Legacy completions go through the same chain.
  const comp = await c.completions.create({ model: MODEL, prompt: 'say hi', max_tokens: 3 });
  assert.equal(comp.object, 'text_completion');
});

// ---- budgets and rate limits ---------------------------------------------

test('over budget: 429 insufficient_quota', { skip }, async () => {
  const t = seedTenant({ budget: 40 });
  await assert.rejects(sdk(t.key).chat.completions.create(chatBody({ max_tokens: 100 })), (e) => {
    assert.ok(e instanceof OpenAI.RateLimitError, e.constructor.name);
    assert.equal(e.code, 'insufficient_quota');
    return true;
  });
  assert.deepEqual(budgetOf(t.org), { used: 0, reserved: 0 });
  // A spent budget does not come back in a second: the SDKs' default retries
  // of a 429 would only repeat the refusal, so X-Should-Retry tells them not to.
  let calls = 0;
  const counting = new OpenAI({
    apiKey: t.key, baseURL: `${ingress.url}/v1`, maxRetries: 2, timeout: 20000,
    fetch: (url, init) => { calls++; return fetch(url, init); },
  });
  await assert.rejects(counting.chat.completions.create(chatBody({ max_tokens: 100 })), OpenAI.RateLimitError);
  assert.equal(calls, 1);
  // The user limit counts too.
  const u = seedTenant({ userLimit: 30 });
  await assert.rejects(sdk(u.key).chat.completions.create(chatBody({ max_tokens: 100 })), OpenAI.RateLimitError);
});

test('50 concurrent requests never exceed a small budget', { skip }, async () => {
  const BUDGET = 1000;
  const t = seedTenant({ budget: BUDGET });
  const c = sdk(t.key);
  const results = await Promise.allSettled(Array.from({ length: 50 }, () =>
    c.chat.completions.create(chatBody({ max_tokens: 60 }))));
  const ok = results.filter((r) => r.status === 'fulfilled');
  const refused = results.filter((r) => r.status === 'rejected');
  for (const r of refused) {
    assert.ok(r.reason instanceof OpenAI.RateLimitError, String(r.reason));
    assert.equal(r.reason.code, 'insufficient_quota');
  }
  assert.ok(ok.length > 0 && refused.length > 0, `ok ${ok.length}`);
  const b = budgetOf(t.org);
  assert.ok(b.used + b.reserved <= BUDGET, JSON.stringify(b));
  const served = ok.reduce((s, r) => s + r.value.usage.total_tokens, 0);
  assert.ok(served <= BUDGET, `served ${served}`);
});

test('requests per second per key: 429 rate_limit_exceeded with Retry-After', { skip }, async () => {
  const t = seedTenant({ keyRps: 2 });
  const c = sdk(t.key);
  // 10 at once: even split over two one-second windows at most 4 pass.
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => c.chat.completions.create(chatBody({ max_tokens: 1 }))));
  const limited = results.filter((r) => r.status === 'rejected');
  assert.ok(limited.length >= 6, `limited ${limited.length}`);
  for (const r of limited) {
    assert.ok(r.reason instanceof OpenAI.RateLimitError, String(r.reason));
    assert.equal(r.reason.code, 'rate_limit_exceeded');
    assert.ok(Number(r.reason.headers.get('retry-after')) >= 1);
  }
  const o = seedTenant({ orgRps: 1 });
  const org = await Promise.allSettled([1, 2, 3].map(() => sdk(o.key).chat.completions.create(chatBody({ max_tokens: 1 }))));
  assert.ok(org.some((r) => r.status === 'rejected' && r.reason.code === 'rate_limit_exceeded'));
});

test('Redis down: 503, never unmetered', { skip: skip || !process.env.IAS_STACK_CTL }, async () => {
  const t = seedTenant({ budget: 100000 });
  await sdk(t.key).chat.completions.create(chatBody({ max_tokens: 2 }));
  execFileSync('bash', ['-c', `${process.env.IAS_STACK_CTL} stop redis`], { stdio: 'ignore' });
  try {
    await assert.rejects(sdk(t.key).chat.completions.create(chatBody({ max_tokens: 2 })), (e) => {
      assert.equal(e.status, 503, String(e));
      assert.ok(e.headers.get('retry-after'));
      return true;
    });
  } finally {
    execFileSync('bash', ['-c', `${process.env.IAS_STACK_CTL} start redis`], { stdio: 'ignore' });
  }
  for (let i = 0; ; i++) {
    try {
      await sdk(t.key).chat.completions.create(chatBody({ max_tokens: 2 }));
      break;
    } catch (e) {
      if (i > 60) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});

// ---- streaming ------------------------------------------------------------

test('streaming pass-through with the SDK', { skip }, async () => {
  const t = seedTenant({ budget: 100000 });
  const stream = await sdk(t.key).chat.completions.create(chatBody({
    max_tokens: 20, stream: true, stream_options: { include_usage: true },
  }));
  let text = '';
  let usage;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(text.length > 0);
  assert.ok(usage && usage.completion_tokens > 0, JSON.stringify(usage));
});

test('slow reader pauses the upstream; client abort cancels it', { skip }, async () => {
  const t = seedTenant();
  const target = router ? router.url : mock.url;
  const genBefore = await metric(mock.url, 'mockllm_tokens_generated_total');
  const body = JSON.stringify(chatBody({ max_tokens: 150000, stream: true }));
  const req = httpRequest(`${ingress.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${t.key}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
  });
  const res = await new Promise((resolve, reject) => { req.once('response', resolve); req.once('error', reject); req.end(body); });
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-type'], /text\/event-stream/);
  res.pause(); // stop reading: socket buffers fill, ingress must stop reading upstream
  // Generation must come to a standstill (every buffer on the way full) far
  // below the 150000 tokens asked for.
  let prev = -1;
  let cur = await metric(mock.url, 'mockllm_tokens_generated_total');
  const deadline = Date.now() + 8000;
  while (cur !== prev) {
    assert.ok(Date.now() < deadline, `generation never stopped (${cur - genBefore} tokens)`);
    await new Promise((r) => setTimeout(r, 600));
    prev = cur;
    cur = await metric(mock.url, 'mockllm_tokens_generated_total');
  }
  assert.ok(cur - genBefore < 100000, `generated ${cur - genBefore}`);
  assert.equal(await metric(mock.url, 'mockllm_streams_active'), 1);

  // The client leaves: ingress cancels its call, the upstream stream ends.
  res.destroy();
  req.destroy();
  const end = Date.now() + 3000;
  while ((await metric(mock.url, 'mockllm_streams_active')) !== 0) {
    assert.ok(Date.now() < end, 'upstream stream still active 3 s after the client left');
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(await metric(ingress.url, 'ingress_streams_active'), 0);
  void target;
});

// ---- management proxy ----------------------------------------------------------

test('management proxy routes by prefix and never exposes /internal', { skip }, async () => {
  const before = capture.seen.length;
  for (const p of ['/api/v1/usage/summary?from=2026-11-01', '/api/v1/audit/events', '/api/v1/usage']) {
    const r = await fetch(ingress.url + p, {
      headers: { Authorization: 'Bearer abc', 'X-Ias-Org-Id': 'spoof', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-upstream'), null); // not a passed-through header
    assert.deepEqual(await r.json(), { path: p });
  }
  const seen = capture.seen.slice(before);
  assert.equal(seen.length, 3);
  assert.equal(seen[0].headers.authorization, 'Bearer abc');
  assert.equal(seen[0].headers['x-ias-org-id'], undefined);
  assert.match(seen[0].headers.traceparent, /^00-0af7651916cd43dd8448eb211c80319c-/);
  assert.ok(seen[0].headers['x-request-id']);

  // POST with a body, keeps method and content type.
  const post = await fetch(`${ingress.url}/api/v1/audit/verify`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"a":1}',
  });
  assert.equal(post.status, 200);
  const last = capture.seen[capture.seen.length - 1];
  assert.equal(last.method, 'POST');
  assert.equal(last.body, '{"a":1}');
  assert.equal(last.headers['content-type'], 'application/json');

  // Everything else goes to users (which wants a token).
  const orgs = await fetch(`${ingress.url}/api/v1/orgs`);
  assert.equal(orgs.status, 401);
  assert.match(orgs.headers.get('content-type'), /application\/problem\+json/);

  // /internal is not routed; escapes are refused.
  for (const p of ['/internal/models', '/internal/keys/' + '0'.repeat(64)]) {
    assert.equal((await fetch(ingress.url + p)).status, 404, p);
  }
  for (const p of ['/api/v1/..%2f..%2finternal/models', '/api/v1/%2e%2e/%2e%2e/internal/models', '/api/v1/x/..%2F..%2F..%2Finternal/models']) {
    const r = await fetch(ingress.url + p);
    assert.ok(r.status === 400 || r.status === 404, `${p}: ${r.status}`);
  }

  // pdp has no URL in this setup: 503 problem+json.
  const pol = await fetch(`${ingress.url}/api/v1/policies`);
  assert.equal(pol.status, 503);
  assert.match(pol.headers.get('content-type'), /application\/problem\+json/);
});

test('management target down: 502/503 problem+json', { skip }, async () => {
  const dead = await startService('ingress', {
    IAS_USERS_URL: 'http://127.0.0.1:1', IAS_ROUTER_URL: 'http://127.0.0.1:1',
  });
  try {
    const r = await fetch(`${dead.url}/api/v1/orgs`);
    assert.ok(r.status === 502 || r.status === 503, String(r.status));
    assert.match(r.headers.get('content-type'), /application\/problem\+json/);
    assert.ok(r.headers.get('retry-after'));
    assert.equal((await r.json()).type, 'https://ias.dev/problems/upstream-unavailable');
  } finally {
    await dead.stop();
  }
});

// ---- policy (real pdp), router failures -------------------------------------

test('pdp deny: 403 policy_denied; allow passes', { skip: skip || !existsSync(join(binDir, 'ias-pdp')) }, async () => {
  // Rules on the registry's model tags and on this ingress's region see what
  // ingress sends as resource.tags and environment.region.
  sql(db.dsn, "INSERT INTO models (name, context_length, tags) VALUES ('tagged-model', 4096, '{internal,restricted}'), ('region-model', 4096, '{}')");
  const tp = seedTenant({ models: [MODEL, 'tagged-model', 'region-model'] });
  const doc = { rules: [
    { id: 'no-restricted', effect: 'deny', match: { resource: { tags: ['restricted'] } } },
    { id: 'not-in-eu', effect: 'deny', match: { resource: { model: ['region-model'] }, environment: { region: ['eu-test'] } } },
  ] };
  sql(db.dsn, `SET ias.org_id = '*'; INSERT INTO policies (scope, org_id, version, document, active) VALUES ('org', '${tp.org}', 1, '${JSON.stringify(doc)}', true)`);
  const pdp = await startService('pdp', {
    IAS_PG_DSN: db.dsn, IAS_JWT_SECRET: jwtSecret, IAS_SPOOL_DIR: scratchPath('pdp-spool'),
  });
  let ing;
  try {
    ing = await startService('ingress', { ...common, IAS_ROUTER_URL: routerUrl, IAS_PDP_URL: pdp.url, IAS_REGION: 'eu-test' });
    const ok = await sdk(tp.key, ing.url).chat.completions.create(chatBody({ max_tokens: 2 }));
    assert.equal(ok.object, 'chat.completion');
    for (const [model, rule] of [['tagged-model', 'no-restricted'], ['region-model', 'not-in-eu']]) {
      await assert.rejects(sdk(tp.key, ing.url).chat.completions.create({ ...chatBody(), model }), (e) => {
        assert.ok(e instanceof OpenAI.PermissionDeniedError, `${model}: ${e.constructor.name} ${e.message}`);
        assert.match(e.message, new RegExp(rule));
        return true;
      });
    }
    // other-model exists but the org may not use it: pdp's built-in rule denies.
    await assert.rejects(sdk(tp.key, ing.url).chat.completions.create({ ...chatBody(), model: 'other-model' }), (e) => {
      assert.ok(e instanceof OpenAI.PermissionDeniedError, `${e.constructor.name} ${e.message}`);
      assert.equal(e.code, 'policy_denied');
      assert.equal(e.type, 'permission_error');
      assert.match(e.message, /allowed_models|not allowed|allowed/i);
      return true;
    });
  } finally {
    await ing?.stop();
    await pdp.stop();
  }
  // pdp gone: fail closed with 503.
  const t = seedTenant();
  const down = await startService('ingress', { ...common, IAS_ROUTER_URL: routerUrl, IAS_PDP_URL: 'http://127.0.0.1:1' });
  try {
    await assert.rejects(sdk(t.key, down.url).chat.completions.create(chatBody({ max_tokens: 2 })), (e) => {
      assert.equal(e.status, 503, String(e));
      return true;
    });
  } finally {
    await down.stop();
  }
});

test('router unreachable: 503 with Retry-After; router too slow: 504', { skip }, async () => {
  const slow = await startService('mockllm', { IAS_MOCK_TTFT_MS: '3000' });
  const a = await startService('ingress', { ...common, IAS_ROUTER_URL: 'http://127.0.0.1:1' });
  const b = await startService('ingress', { ...common, IAS_ROUTER_URL: slow.url, IAS_UPSTREAM_FIRST_BYTE_TIMEOUT: '300ms' });
  try {
    const t = seedTenant({ budget: 100000 });
    await assert.rejects(sdk(t.key, a.url).chat.completions.create(chatBody({ max_tokens: 5 })), (e) => {
      assert.ok(e instanceof OpenAI.InternalServerError, e.constructor.name);
      assert.equal(e.status, 503);
      assert.ok(Number(e.headers.get('retry-after')) >= 1);
      return true;
    });
    // The router never saw it: the reservation was given back.
    assert.equal(budgetOf(t.org).reserved, 0);
    await assert.rejects(sdk(t.key, b.url).chat.completions.create(chatBody({ max_tokens: 5 })), (e) => {
      assert.equal(e.status, 504, String(e));
      assert.equal(e.code, 'upstream_timeout');
      return true;
    });
  } finally {
    await a.stop();
    await b.stop();
    await slow.stop();
  }
});
