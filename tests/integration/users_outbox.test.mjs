// users service outbox: every audit.recorded.v1 / config.changed.v1 payload matches its
// schema, and events written while RabbitMQ is down are delivered once it is back,
// each exactly once by event_id.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { stackEnv, createDb, startService, api, sql, root, uniqueName, eventValidator } from '../lib/harness.mjs';

const env = stackEnv();
const ctl = process.env.IAS_STACK_CTL;
const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
const SECRET = 'users-outbox-secret-0123456789abcdef';
const PW = 'Correct-Horse-9-battery';
let db, svc, conn, ch, queue, token;
const got = new Map(); // event_id -> count

function stack(...args) {
  execFileSync('bash', ['-c', `${ctl} ${args.join(' ')}`], { stdio: 'ignore', timeout: 120000 });
}

before(async () => {
  if (!env) return;
  db = createDb('users_outbox');
  svc = await startService('users', { IAS_PG_DSN: db.dsn, IAS_JWT_SECRET: SECRET, IAS_OUTBOX_BACKOFF_MAX: '500ms' });
  const amqp = require('amqplib');
  queue = uniqueName('users_outbox_test');
  conn = await amqp.connect(env.IAS_AMQP_URL);
  ch = await conn.createChannel();
  await ch.assertExchange('ias.events', 'topic', { durable: true });
  // Durable, so it survives the broker restart with the events it holds.
  await ch.assertQueue(queue, { durable: true });
  await ch.bindQueue(queue, 'ias.events', 'audit.#');
  await ch.bindQueue(queue, 'ias.events', 'config.#');
  let r = await api(svc.url, 'POST', '/api/v1/bootstrap/super-admin', { body: { email: 'root@ias.test', password: PW } });
  assert.equal(r.status, 201);
  r = await api(svc.url, 'POST', '/api/v1/auth/login', { body: { email: 'root@ias.test', password: PW } });
  token = r.body.access_token;
});

after(async () => {
  try { if (ch) await ch.deleteQueue(queue); } catch { /* broker restarted */ }
  try { if (conn) await conn.close(); } catch { /* already closed */ }
  if (svc) assert.equal(await svc.stop(), 0);
  if (db) db.drop();
});

async function drain(ms) {
  const end = Date.now() + ms;
  const amqp = require('amqplib');
  const c = await amqp.connect(env.IAS_AMQP_URL);
  const cc = await c.createChannel();
  const msgs = [];
  while (Date.now() < end) {
    const m = await cc.get(queue, { noAck: true });
    if (!m) { await new Promise((r) => setTimeout(r, 100)); continue; }
    msgs.push({ key: m.fields.routingKey, type: m.properties.type, id: m.properties.messageId, body: JSON.parse(m.content.toString()) });
  }
  await c.close();
  return msgs;
}

function unsent() {
  return Number(sql(db.dsn, "SELECT count(*) FROM outbox WHERE source = 'users' AND sent_at IS NULL")[0][0]);
}

async function waitSent(ms) {
  const end = Date.now() + ms;
  while (unsent() > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  return unsent();
}

test('outbox payloads validate against the event schemas', { skip: !env }, async () => {
  const load = eventValidator;
  const audit = load('audit.recorded.v1');
  const config = load('config.changed.v1');
  const r = await api(svc.url, 'POST', '/api/v1/orgs', { token, body: { name: 'schema-org' } });
  assert.equal(r.status, 201);
  await api(svc.url, 'POST', '/api/v1/auth/login', { body: { email: `nobody_${process.pid}_${Date.now()}@ias.test`, password: 'Wrong-pass-123!' } });
  const rows = sql(db.dsn, 'SELECT routing_key, payload::text FROM outbox ORDER BY id');
  assert.ok(rows.length >= 3);
  for (const [key, text] of rows) {
    const p = JSON.parse(text);
    const v = key.startsWith('audit.') ? audit : config;
    assert.ok(v(p), `${key}: ${v.errorsText()}`);
    if (key.startsWith('audit.')) assert.equal(key, `audit.users.${p.action}`);
  }
  assert.equal(await waitSent(10000), 0);
});

test('events written while RabbitMQ is down arrive once it is back, exactly once', { skip: (!env || !ctl) && 'needs IAS_STACK_CTL' }, async () => {
  await drain(500); // discard what the previous test published
  await conn.close().catch(() => {});
  conn = null; ch = null;
  stack('stop', 'rabbitmq');
  try {
    for (let i = 0; i < 5; i++) {
      const r = await api(svc.url, 'POST', '/api/v1/orgs', { token, body: { name: `down-${i}` } });
      assert.equal(r.status, 201, 'writes succeed while the broker is down');
    }
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(unsent() >= 5, 'rows wait in the outbox');
  } finally {
    stack('start', 'rabbitmq');
  }
  assert.equal(await waitSent(30000), 0, 'the relay catches up');
  const expected = sql(db.dsn, "SELECT event_id FROM outbox WHERE payload->>'action' = 'org_created' AND payload->'details'->>'name' LIKE 'down-%'").map((r) => r[0]);
  assert.equal(expected.length, 5);
  const msgs = await drain(1500);
  for (const m of msgs) got.set(m.body.event_id, (got.get(m.body.event_id) || 0) + 1);
  for (const id of expected) assert.equal(got.get(id), 1, `event ${id} delivered once`);
  for (const m of msgs) {
    assert.equal(m.id, m.body.event_id);
    assert.equal(m.type, m.key.startsWith('audit.') ? 'audit.recorded.v1' : 'config.changed.v1');
  }
  // Order: the org_created events come in the order they were written.
  const order = msgs.filter((m) => m.body.action === 'org_created').map((m) => m.body.details.name);
  assert.deepEqual(order, ['down-0', 'down-1', 'down-2', 'down-3', 'down-4']);
});
