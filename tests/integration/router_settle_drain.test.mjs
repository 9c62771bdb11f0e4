// The router's budget settles may wait for company (IAS_SETTLE_BATCH_WAIT); a
// graceful stop must still send them: a request answered just before SIGTERM has
// its reservation settled (reserved -> used), not left to expire. Real mockllm,
// Redis and RabbitMQ (the router needs both to start).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { startService, stackEnv, scratchPath, redisCli, budgetMonth } from '../lib/harness.mjs';

const env = stackEnv();
const skip = env ? false : 'needs IAS_REDIS_URL and IAS_AMQP_URL (test stack)';
const services = [];

const redis = (...args) => redisCli(...args).trim();

after(async () => {
  for (const s of services) await s.stop().catch(() => {});
});

test('SIGTERM right after a request: the waiting settle is sent before exit', { skip }, async () => {
  const mock = await startService('mockllm', { IAS_WORKERS: '1' }, { ready: '/health' });
  services.push(mock);
  const dir = scratchPath('router-drain');
  mkdirSync(dir, { recursive: true });
  const regFile = join(dir, 'registry.json');
  writeFileSync(regFile, JSON.stringify({
    version: '1',
    models: [{ id: randomUUID(), name: 'mock-gpt', context_length: 8192, input_rate_per_1k: '0.5',
      output_rate_per_1k: '1.5', fallback_model: null, tags: [],
      backends: [{ id: 'a', url: mock.url, weight: 1, upstream_model: null }] }],
  }));
  // The longest wait: only the drain can send this settle before the exit.
  const router = await startService('router', {
    IAS_REGISTRY_FILE: regFile, IAS_SPOOL_DIR: join(dir, 'spool'), IAS_REDIS_URL: env.IAS_REDIS_URL,
    IAS_AMQP_URL: env.IAS_AMQP_URL, IAS_WORKERS: '1', IAS_SETTLE_BATCH_WAIT: '1s',
  });
  services.push(router);

  const org = randomUUID();
  const user = randomUUID();
  const resv = randomUUID();
  const month = budgetMonth();
  const ok = `ias:budget:${org}:${month}`;
  // A reservation as ingress makes it (internal-contracts.md, Redis keys).
  redis('SET', `ias:resv:${resv}`, `open:100:${Date.now() + 600000}:${org}:${month}:${user}`, 'PX', '600000');
  redis('HINCRBY', ok, 'reserved', '100');
  redis('HINCRBY', `${ok}:u:${user}`, 'reserved', '100');
  redis('ZADD', `ias:resvq:${org}:${month}`, String(Date.now() + 600000), resv);

  const r = await fetch(router.url + '/v1/chat/completions', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Ias-Org-Id': org, 'X-Ias-User-Id': user,
      'X-Ias-Key-Id': randomUUID(), 'X-Request-Id': randomUUID(), 'X-Ias-Reservation': resv,
      'X-Ias-Reserved-Tokens': '100' },
    body: JSON.stringify({ model: 'mock-gpt', max_tokens: 3,
      messages: [{ role: 'user', content: 'hello there router' }] }), // 9 prompt tokens
  });
  assert.equal(r.status, 200);
  await r.json();
  assert.equal(await router.stop(), 0, 'graceful stop exits 0');

  assert.match(redis('GET', `ias:resv:${resv}`), /^settled:/, 'settled, not left open to expire');
  assert.deepEqual(redis('HMGET', ok, 'used', 'reserved').split('\n'), ['12', '0']);
  assert.deepEqual(redis('HMGET', `${ok}:u:${user}`, 'used', 'reserved').split('\n'), ['12', '0']);
  assert.equal(redis('ZSCORE', `ias:resvq:${org}:${month}`, resv), '');
});
