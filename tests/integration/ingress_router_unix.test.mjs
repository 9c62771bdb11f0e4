// The ingress -> router hop over a unix socket, as in one pod with a shared
// emptyDir: the router listens on IAS_UNIX_SOCKET as well as TCP, ingress has
// IAS_ROUTER_URL=unix:<path> and no TCP address of the router at all, so every
// answer below crossed the socket. Real users, mockllm, PostgreSQL, Redis and
// RabbitMQ; the official openai SDK, non-streaming and streaming with usage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { root, binDir, stackEnv, createDb, sql, startService, scratchPath, seedTenant as seedTenantIn, stopAll } from '../lib/harness.mjs';

const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
const { default: OpenAI } = await import(require.resolve('openai'));

const env = stackEnv();
const bins = ['ingress', 'router', 'users', 'mockllm'];
const skip = !env || bins.some((b) => !existsSync(join(binDir, `ias-${b}`)))
  ? `needs the test stack and ${bins.map((b) => `ias-${b}`).join(', ')}` : false;

const MODEL = 'mock-gpt';
let db, router, ingress, sock, tenant;
const procs = [];

const seedTenant = () => seedTenantIn(db.dsn, { models: [MODEL] });

before(async () => {
  if (skip) return;
  db = createDb('unixhop');
  const mock = await startService('mockllm', { IAS_MOCK_MAX_TOKENS_DEFAULT: '8' });
  procs.push(mock);
  sql(db.dsn, `INSERT INTO models (name, context_length) VALUES ('${MODEL}', 100000)`);
  sql(db.dsn, `INSERT INTO model_backends (model_id, url) SELECT id, '${mock.url}' FROM models`);
  const users = await startService('users', {
    IAS_PG_DSN: db.dsn, IAS_JWT_SECRET: randomBytes(32).toString('hex'), IAS_SPOOL_DIR: scratchPath('users-spool'),
  });
  procs.push(users);
  sock = `${scratchPath('hop')}.sock`; // well under sun_path's 108 bytes
  router = await startService('router', {
    IAS_USERS_URL: users.url, IAS_SPOOL_DIR: scratchPath('router-spool'), IAS_UNIX_SOCKET: sock,
  });
  procs.push(router);
  ingress = await startService('ingress', {
    IAS_USERS_URL: users.url, IAS_ROUTER_URL: `unix:${sock}`, IAS_PDP_URL: '',
  });
  procs.push(ingress);
  tenant = seedTenant();
});

after(async () => {
  if (skip) return;
  const stopErr = await stopAll(procs);
  db?.drop();
  if (stopErr) throw stopErr;
  // the router removes its socket file when it stops
  if (router) assert.throws(() => lstatSync(sock), { code: 'ENOENT' });
});

const sdk = () => new OpenAI({ apiKey: tenant.key, baseURL: `${ingress.url}/v1`, maxRetries: 0, timeout: 20000 });
const messages = [{ role: 'user', content: 'hello over the socket' }];

test('the router socket exists with mode 0660', { skip }, () => {
  const st = lstatSync(sock);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o660);
});

test('non-streaming completion with usage through the unix hop', { skip }, async () => {
  const r = await sdk().chat.completions.create({ model: MODEL, messages, max_tokens: 5 });
  assert.equal(r.object, 'chat.completion');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.equal(r.usage.completion_tokens, 5);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('streaming completion with usage through the unix hop', { skip }, async () => {
  const stream = await sdk().chat.completions.create({
    model: MODEL, messages, max_tokens: 7, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.choices?.length) text += chunk.choices[0].delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(text.length > 0);
  assert.ok(usage, 'the final chunk carries usage');
  assert.equal(usage.completion_tokens, 7);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
});

test('concurrent requests all reach the router over the socket', { skip }, async () => {
  const client = sdk();
  await Promise.all(Array.from({ length: 20 }, () => client.chat.completions.create({ model: MODEL, messages, max_tokens: 1 })));
  const text = await (await fetch(`${router.url}/metrics`)).text();
  const served = text.split('\n')
    .filter((l) => l.startsWith('ias_http_requests_total{') && l.includes('route="/v1/chat/completions"') && l.includes('status="200"'))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
  assert.ok(served >= 22, `router served ${served}`);
});
