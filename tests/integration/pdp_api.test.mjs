// pdp against real PostgreSQL and RabbitMQ: decisions, management CRUD with
// RBAC and validation, dry-run, guardrail obligations, hot reload across two
// pdp processes, repeated decisions and their metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { stackEnv, createDb, startService, api, sql, root, uniqueName, scratchPath, eventValidator } from '../lib/harness.mjs';

const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
let amqpConn, amqpCh, queue;
const changedIds = new Set();

const env = stackEnv();
const SECRET = 'pdp-test-secret-0123456789abcdef-0123456789';
const INTERNAL = 'internal-token-for-tests';
let db, a, b;
let orgA, orgB;

function jwt(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = enc({ typ: 'access', jti: randomUUID(), iat: now, exp: now + 3600, ...claims });
  const head = enc({ alg: 'HS256', typ: 'JWT' });
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

let sysAdmin, adminA, adminB, userA;

function decide(svc, body, token = INTERNAL) {
  return api(svc.url, 'POST', '/internal/decide', {
    body, headers: token ? { 'X-Ias-Internal-Token': token } : {},
  });
}

function req(org, model = 'mock-gpt', extra = {}) {
  return {
    subject: { user_id: randomUUID(), org_id: org, role: 'org_user', allowed_models: ['mock-gpt', 'llama-3'] },
    action: 'inference',
    resource: { model, tags: extra.tags || [] },
    environment: { source_ip: extra.ip || '10.0.0.5', region: null, time: extra.time || new Date().toISOString() },
  };
}

async function waitFor(fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return Date.now();
    if (Date.now() > end) return null;
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  if (!env) return;
  db = createDb('pdp');
  orgA = sql(db.dsn, "SET ias.org_id = '*'; INSERT INTO orgs (name) VALUES ('org-a') RETURNING id")[0][0];
  orgB = sql(db.dsn, "SET ias.org_id = '*'; INSERT INTO orgs (name) VALUES ('org-b') RETURNING id")[0][0];
  sysAdmin = jwt({ sub: randomUUID(), org: '', role: 'system_admin' });
  adminA = jwt({ sub: randomUUID(), org: orgA, role: 'org_admin' });
  adminB = jwt({ sub: randomUUID(), org: orgB, role: 'org_admin' });
  userA = jwt({ sub: randomUUID(), org: orgA, role: 'org_user' });
  const amqp = require('amqplib');
  queue = uniqueName('pdp_events_test');
  amqpConn = await amqp.connect(env.IAS_AMQP_URL);
  amqpCh = await amqpConn.createChannel();
  await amqpCh.assertExchange('ias.events', 'topic', { durable: true });
  await amqpCh.assertQueue(queue, { exclusive: true });
  await amqpCh.bindQueue(queue, 'ias.events', 'audit.pdp.#');
  await amqpCh.bindQueue(queue, 'ias.events', 'config.policies.changed');
  await amqpCh.bindQueue(queue, 'ias.events', 'config.guardrails.changed');
  const common = {
    IAS_PG_DSN: db.dsn, IAS_AMQP_URL: env.IAS_AMQP_URL, IAS_JWT_SECRET: SECRET,
    IAS_INTERNAL_TOKEN: INTERNAL, IAS_GUARDRAIL_HOLDBACK: '64',
  };
  a = await startService('pdp', { ...common, IAS_SPOOL_DIR: scratchPath('pdp-a') });
  b = await startService('pdp', { ...common, IAS_SPOOL_DIR: scratchPath('pdp-b') });
});

after(async () => {
  try { if (amqpConn) await amqpConn.close(); } catch { /* gone */ }
  if (a) await a.stop();
  if (b) await b.stop();
  if (db) db.drop();
});

test('decide: default rule from allowed_models, batch, internal token', { skip: !env }, async () => {
  let r = await decide(a, req(orgA));
  assert.equal(r.status, 200);
  assert.equal(r.body.decision, 'allow');
  assert.equal(r.body.policy_version, 'g0.o0');
  assert.deepEqual(r.body.obligations, { guardrails: [] });
  assert.equal(r.body.ttl_ms, 1000);

  r = await decide(a, req(orgA, 'gpt-5'));
  assert.equal(r.body.decision, 'deny');
  assert.equal(r.body.reasons[0].rule_id, 'builtin:allowed_models');

  const noModels = req(orgA);
  delete noModels.subject.allowed_models;
  r = await decide(a, noModels);
  assert.equal(r.body.decision, 'deny');
  assert.match(r.body.reasons[0].message, /allowed_models is absent/);

  r = await decide(a, { requests: [req(orgA), req(orgA, 'nope')] });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.results.map((x) => x.decision), ['allow', 'deny']);

  r = await decide(a, { ...req(orgA), action: 'fly' });
  assert.equal(r.status, 400);
  assert.match(r.body.detail, /action/);

  r = await decide(a, req(orgA), null);
  assert.equal(r.status, 401);
  r = await decide(a, req(orgA), 'wrong');
  assert.equal(r.status, 401);
});

test('policies: validation errors name the field', { skip: !env }, async () => {
  const bad = [
    [{ rules: [{ id: 'r', effect: 'deny', match: { resource: { colour: ['x'] } } }] },
      /document\.rules\[0\]\.match\.resource\.colour: unknown attribute/],
    [{ rules: [{ id: 'r', effect: 'allow', match: { action: ['inference'] } },
      { id: 's', effect: 'deny', match: { action: ['inference'] } }] }, /rules\[1\]\.match: conflicts/],
    [{ rules: [{ id: 'r', effect: 'deny', match: { environment: { source_cidr: ['300.1.1.1/8'] } } }] },
      /source_cidr\[0\]/],
    [{ rules: 'x' }, /document\.rules/],
  ];
  for (const [document, re] of bad) {
    const r = await api(a.url, 'POST', '/api/v1/policies', { token: sysAdmin, body: { scope: 'global', document } });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.type, 'https://ias.dev/problems/validation-error');
    assert.match(r.body.detail, re);
  }
  let r = await api(a.url, 'POST', '/api/v1/policies', { token: sysAdmin, body: { scope: 'global', document: { rules: [] }, extra: 1 } });
  assert.equal(r.status, 400);
  assert.match(r.body.detail, /extra: unknown attribute/);
  r = await api(a.url, 'POST', '/api/v1/guardrails', {
    token: sysAdmin,
    body: { scope: 'global', name: 'bad', document: { output: { rules: [{ id: 'x', action: 'deny', regex: '(unclosed' }] } } },
  });
  assert.equal(r.status, 400);
  assert.match(r.body.detail, /document\.output\.rules\[0\]\.regex: invalid regular expression/);
  assert.equal(sql(db.dsn, 'SELECT count(*) FROM policies')[0][0], '0');
});

test('policies: RBAC and tenant scope', { skip: !env }, async () => {
  const doc = { rules: [{ id: 'no-llama', effect: 'deny', match: { resource: { model: ['llama-3'] } } }] };
  let r = await api(a.url, 'POST', '/api/v1/policies', { body: { scope: 'global', document: doc } });
  assert.equal(r.status, 401);
  r = await api(a.url, 'POST', '/api/v1/policies', { token: userA, body: { scope: 'org', document: doc } });
  assert.equal(r.status, 403);
  r = await api(a.url, 'POST', '/api/v1/policies', { token: adminA, body: { scope: 'global', document: doc } });
  assert.equal(r.status, 403);
  r = await api(a.url, 'POST', '/api/v1/policies', { token: adminA, body: { scope: 'org', org_id: orgB, document: doc } });
  assert.equal(r.status, 404);
  r = await api(a.url, 'POST', '/api/v1/policies', { token: adminB, body: { scope: 'org', document: doc, comment: 'b1' } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.org_id, orgB);
  assert.equal(r.body.version, 1);
  assert.equal(r.body.active, true);
  const idB = r.body.id;
  changedIds.add(idB);
  r = await api(a.url, 'GET', `/api/v1/policies/${idB}`, { token: adminA });
  assert.equal(r.status, 404);
  r = await api(a.url, 'DELETE', `/api/v1/policies/${idB}`, { token: adminA });
  assert.equal(r.status, 404);
  r = await api(a.url, 'GET', `/api/v1/policies/${idB}`, { token: adminB });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.document, doc);
  r = await api(a.url, 'GET', '/api/v1/policies', { token: adminA });
  assert.equal(r.status, 200);
  assert.ok(r.body.data.every((p) => p.org_id !== orgB));
  r = await api(a.url, 'GET', '/api/v1/policies', { token: sysAdmin });
  assert.ok(r.body.data.some((p) => p.id === idB));
  // org B's deny applies to org B only
  r = await decide(a, req(orgB, 'llama-3'));
  assert.equal(r.body.decision, 'deny');
  assert.equal(r.body.reasons[0].rule_id, 'no-llama');
  assert.equal(r.body.reasons[0].policy_id, idB);
  assert.equal(r.body.policy_version, 'g0.o1');
  r = await decide(a, req(orgA, 'llama-3'));
  assert.equal(r.body.decision, 'allow');
  r = await api(a.url, 'DELETE', `/api/v1/policies/${idB}`, { token: adminB });
  assert.equal(r.status, 204);
  r = await decide(a, req(orgB, 'llama-3'));
  assert.equal(r.body.decision, 'allow');
});

test('guardrail obligations, versions, activate, hot reload across instances', { skip: !env }, async () => {
  let r = await api(a.url, 'POST', '/api/v1/guardrails', {
    token: sysAdmin,
    body: {
      scope: 'global', name: 'pii-basic',
      document: {
        prompt: { redact: ['email', 'card'] },
        output: { holdback: 32, rules: [{ id: 'no-bomb', action: 'deny', phrase: 'build a bomb', case_insensitive: true }] },
      },
    },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const profileId = r.body.id;
  assert.equal(r.body.name, 'pii-basic');

  const v1 = { rules: [{ id: 'everyone', effect: 'allow', obligations: { guardrails: ['pii-basic'] } }] };
  r = await api(a.url, 'POST', '/api/v1/policies', { token: sysAdmin, body: { scope: 'global', document: v1 } });
  assert.equal(r.status, 201);
  const pv1 = r.body.id;
  // instance A reloads synchronously, B through the config event
  r = await decide(a, req(orgA));
  assert.equal(r.body.decision, 'allow');
  assert.deepEqual(r.body.obligations.guardrails, [profileId]);
  assert.equal(r.body.policy_version, 'g1.o0');

  r = await api(b.url, 'GET', `/internal/guardrails/${profileId}`, { headers: { 'X-Ias-Internal-Token': INTERNAL } });
  // B may need a moment for the first event
  if (r.status !== 200) {
    await waitFor(async () => (await api(b.url, 'GET', `/internal/guardrails/${profileId}`, { headers: { 'X-Ias-Internal-Token': INTERNAL } })).status === 200, 2000);
    r = await api(b.url, 'GET', `/internal/guardrails/${profileId}`, { headers: { 'X-Ias-Internal-Token': INTERNAL } });
  }
  assert.equal(r.status, 200);
  assert.equal(r.body.name, 'pii-basic');
  assert.equal(r.body.holdback, 32);
  assert.equal(r.body.document.output.rules[0].phrase, 'build a bomb');

  // v2 denies mock-gpt: B must follow within 1 s
  const v2 = { rules: [{ id: 'no-mock', effect: 'deny', message: 'mock is off', match: { resource: { model: ['mock-gpt'] } } }] };
  const t0 = Date.now();
  r = await api(a.url, 'POST', '/api/v1/policies', { token: sysAdmin, body: { scope: 'global', document: v2 } });
  assert.equal(r.status, 201);
  assert.equal(r.body.version, 2);
  const seen = await waitFor(async () => (await decide(b, req(orgA))).body.decision === 'deny', 3000);
  assert.ok(seen, 'instance B never saw the new policy');
  assert.ok(seen - t0 < 1000, `instance B reloaded after ${seen - t0} ms`);
  r = await decide(b, req(orgA));
  assert.equal(r.body.reasons[0].rule_id, 'no-mock');
  assert.equal(r.body.policy_version, 'g2.o0');

  // an org cannot allow what global denies
  r = await api(b.url, 'POST', '/api/v1/policies', {
    token: adminA, body: { scope: 'org', document: { rules: [{ id: 'please', effect: 'allow', match: { resource: { model: ['mock-gpt'] } } }] } },
  });
  assert.equal(r.status, 201);
  r = await decide(a, req(orgA));
  assert.equal(r.body.decision, 'deny');

  // roll back to v1 by activating it; both instances follow
  r = await api(a.url, 'POST', `/api/v1/policies/${pv1}/activate`, { token: sysAdmin });
  assert.equal(r.status, 200);
  const back = await waitFor(async () => (await decide(b, req(orgB))).body.decision === 'allow', 3000);
  assert.ok(back);
  assert.equal(sql(db.dsn, "SELECT version FROM policies WHERE active AND org_id IS NULL")[0][0], '1');

  // withdrawing the profile fails closed
  r = await api(a.url, 'DELETE', `/api/v1/guardrails/${profileId}`, { token: sysAdmin });
  assert.equal(r.status, 204);
  r = await decide(a, req(orgB));
  assert.equal(r.body.decision, 'deny');
  assert.equal(r.body.reasons[0].rule_id, 'builtin:guardrails');
});

test('dry-run evaluates a draft without storing it', { skip: !env }, async () => {
  const before = sql(db.dsn, 'SELECT count(*) FROM policies')[0][0];
  const draft = {
    rules: [{ id: 'office-net', effect: 'deny', except: { environment: { source_cidr: ['10.0.0.0/8', '2001:db8::/32'] } } }],
  };
  // a global draft replaces the active global version (which now names a withdrawn profile)
  const r = await api(a.url, 'POST', '/api/v1/policies/dry-run', {
    token: sysAdmin,
    body: {
      scope: 'global', document: draft,
      requests: [req(orgA, 'llama-3', { ip: '10.1.1.1' }), req(orgA, 'llama-3', { ip: '8.8.8.8' }), req(orgA, 'llama-3', { ip: '2001:db8::7' })],
    },
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.results.map((x) => x.decision), ['allow', 'deny', 'allow']);
  assert.equal(r.body.results[1].reasons[0].rule_id, 'office-net');
  assert.equal(sql(db.dsn, 'SELECT count(*) FROM policies')[0][0], before);
  const bad = await api(a.url, 'POST', '/api/v1/policies/dry-run', {
    token: adminA, body: { scope: 'org', document: draft, requests: [req(orgB)] },
  });
  assert.equal(bad.status, 400);
  assert.match(bad.body.detail, /requests\[0\]\.subject\.org_id/);
});

test('repeated decisions are served and measured', { skip: !env }, async () => {
  // Functional only: speed is measured by bench/pdp.sh, never asserted in tests.
  const body = req(orgA);
  for (let i = 0; i < 300; i++) {
    const r = await decide(a, body);
    assert.equal(r.status, 200);
  }
  const m = await fetch(`${a.url}/metrics`).then((x) => x.text());
  assert.match(m, /pdp_decisions_total\{decision="allow"\}/);
  assert.match(m, /pdp_decide_seconds_bucket\{le="0.001"\}/);
});

test('every change is audited and published, events match the schemas', { skip: !env }, async () => {
  const load = eventValidator;
  const audit = load('audit.recorded.v1');
  const config = load('config.changed.v1');
  // A denial is audited with the caller's request id; a refused batch audits nothing.
  const rid = `deny-${randomUUID()}`, ridBad = `bad-${randomUUID()}`;
  const denied = req(orgA, 'gpt-5');
  const hdr = (id) => ({ 'X-Ias-Internal-Token': INTERNAL, 'X-Request-Id': id });
  let r = await api(a.url, 'POST', '/internal/decide', { body: denied, headers: hdr(rid) });
  assert.equal(r.body.decision, 'deny');
  r = await api(a.url, 'POST', '/internal/decide', {
    body: { requests: [req(orgA, 'gpt-5'), { subject: {} }] }, headers: hdr(ridBad),
  });
  assert.equal(r.status, 400);
  const msgs = [];
  const end = Date.now() + 3000;
  while (Date.now() < end) {
    const m = await amqpCh.get(queue, { noAck: true });
    if (!m) {
      if (msgs.length >= 12 && msgs.some((x) => x.body.request_id === rid)) break;
      await new Promise((res) => setTimeout(res, 50));
      continue;
    }
    msgs.push({ key: m.fields.routingKey, type: m.properties.type, id: m.properties.messageId, body: JSON.parse(m.content.toString()) });
  }
  for (const m of msgs) {
    assert.equal(m.id, m.body.event_id);
    if (m.key.startsWith('audit.')) {
      assert.equal(m.type, 'audit.recorded.v1');
      assert.ok(audit(m.body), `${m.key}: ${audit.errorsText()}`);
      assert.equal(m.key, `audit.pdp.${m.body.action}`);
    } else {
      assert.equal(m.type, 'config.changed.v1');
      assert.ok(config(m.body), `${m.key}: ${config.errorsText()}`);
    }
  }
  const actions = new Set(msgs.filter((m) => m.key.startsWith('audit.')).map((m) => m.body.action));
  for (const a of ['policy_created', 'policy_activated', 'policy_deleted', 'guardrail_created', 'guardrail_deleted']) {
    assert.ok(actions.has(a), `no ${a} audit event (got ${[...actions]})`);
  }
  const deny = msgs.find((m) => m.body.action === 'policy_denied' && m.body.request_id === rid);
  assert.ok(deny, 'no policy_denied audit event for the denied decision');
  assert.equal(deny.key, 'audit.pdp.policy_denied');
  assert.deepEqual(deny.body.actor, { type: 'user', id: denied.subject.user_id });
  assert.equal(deny.body.org_id, orgA);
  assert.deepEqual(deny.body.resource, { type: 'model', id: 'gpt-5' });
  assert.equal(deny.body.outcome, 'denied');
  assert.equal(deny.body.details.reasons[0].rule_id, 'builtin:allowed_models');
  assert.equal(deny.body.details.policy_action, 'inference');
  assert.ok(!msgs.some((m) => m.body.request_id === ridBad), 'a refused batch was audited');
  const [idB] = changedIds;
  const created = msgs.find((m) => m.body.action === 'policy_created' && m.body.resource.id === idB);
  assert.ok(created);
  assert.equal(created.body.org_id, orgB);
  assert.equal(created.body.outcome, 'success');
  assert.ok(msgs.some((m) => m.key === 'config.policies.changed' && m.body.org_id === orgB && m.body.ids[0] === idB));
  assert.ok(msgs.some((m) => m.key === 'config.guardrails.changed'));
});

// ---- cursor pagination of the lists (after the events test: it reads the
// whole event queue, and these tests add many versions) ----

/** Every page of a list, following next_cursor; checks each page's shape. */
async function pageAll(path, token, limit) {
  const items = [];
  let cursor = null, pages = 0;
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const r = await api(a.url, 'GET', `${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { token });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(Array.isArray(r.body.data));
    assert.ok('next_cursor' in r.body);
    assert.ok(r.body.data.length <= limit);
    items.push(...r.body.data);
    pages++;
    assert.ok(pages < 100, 'the cursor does not advance');
    if (r.body.next_cursor === null) return { items, pages };
    assert.equal(r.body.data.length, limit, 'a page before the last one is full');
    assert.equal(typeof r.body.next_cursor, 'string');
    cursor = r.body.next_cursor;
  }
}

/** Newest first, ties broken by id (both descending): the keyset order. */
function assertNewestFirst(items) {
  for (let i = 1; i < items.length; i++) {
    const p = items[i - 1], c = items[i];
    assert.ok(p.created_at > c.created_at || (p.created_at === c.created_at && p.id > c.id),
      `rows ${i - 1} and ${i} out of order: ${p.created_at}/${p.id} then ${c.created_at}/${c.id}`);
  }
}

const forged = (raw) => Buffer.from(raw).toString('base64url');

let orgC, orgD, adminC, adminD;
const denyDoc = { rules: [{ id: 'no-llama', effect: 'deny', match: { resource: { model: ['llama-3'] } } }] };

async function staged(token, n, extra = {}) {
  for (let i = 0; i < n; i++) {
    const r = await api(a.url, 'POST', '/api/v1/policies', {
      token, body: { scope: 'org', document: denyDoc, comment: `page ${i}`, activate: false, ...extra },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
}

test('policies list: pages through every row exactly once, newest first', { skip: !env }, async () => {
  orgC = sql(db.dsn, "SET ias.org_id = '*'; INSERT INTO orgs (name) VALUES ('org-c') RETURNING id")[0][0];
  orgD = sql(db.dsn, "SET ias.org_id = '*'; INSERT INTO orgs (name) VALUES ('org-d') RETURNING id")[0][0];
  adminC = jwt({ sub: randomUUID(), org: orgC, role: 'org_admin' });
  adminD = jwt({ sub: randomUUID(), org: orgD, role: 'org_admin' });
  await staged(adminC, 6);
  await staged(adminD, 4);
  // Four versions sharing one created_at: only the id orders them, and a page
  // of 3 must cut through them.
  sql(db.dsn, `INSERT INTO policies (scope, org_id, version, document, created_at)
    SELECT 'org', '${orgC}', 100 + g, '{"rules":[]}', '2020-01-01T00:00:00.5Z' FROM generate_series(1, 4) g`);

  const full = await api(a.url, 'GET', '/api/v1/policies?limit=500', { token: adminC });
  assert.equal(full.status, 200);
  assert.equal(full.body.next_cursor, null);
  // the global versions and org C's, never org D's
  assert.ok(full.body.data.every((p) => p.org_id === null || p.org_id === orgC));
  assert.ok(full.body.data.some((p) => p.org_id === null));
  assert.equal(full.body.data.filter((p) => p.org_id === orgC).length, 10);
  assertNewestFirst(full.body.data);

  for (const limit of [1, 3, 4]) {
    const { items, pages } = await pageAll('/api/v1/policies', adminC, limit);
    assert.deepEqual(items.map((p) => p.id), full.body.data.map((p) => p.id), `limit=${limit}`);
    assert.equal(pages, Math.max(1, Math.ceil(full.body.data.length / limit)));
  }
  // the default page holds all of these
  const r = await api(a.url, 'GET', '/api/v1/policies', { token: adminC });
  assert.equal(r.body.next_cursor, null);
  assert.equal(r.body.data.length, full.body.data.length);

  // a system admin pages through every org
  const all = await pageAll('/api/v1/policies', sysAdmin, 5);
  const count = Number(sql(db.dsn, 'SELECT count(*) FROM policies')[0][0]);
  assert.equal(all.items.length, count);
  assert.equal(new Set(all.items.map((p) => p.id)).size, count);
  assertNewestFirst(all.items);
});

test('policies list: filters hold on every page; inserts while paging', { skip: !env }, async () => {
  // org C's staged versions only, as a system admin would ask
  const want = sql(db.dsn, `SELECT id FROM policies WHERE org_id = '${orgC}' AND NOT active
    ORDER BY created_at DESC, id DESC`).map((x) => x[0]);
  assert.equal(want.length, 10);
  const got = await pageAll(`/api/v1/policies?scope=org&org_id=${orgC}&active=false`, sysAdmin, 3);
  assert.deepEqual(got.items.map((p) => p.id), want);
  assert.ok(got.items.every((p) => p.scope === 'org' && p.org_id === orgC && p.active === false));
  // global only, through an org admin
  const glob = await pageAll('/api/v1/policies?scope=global', adminC, 1);
  assert.ok(glob.items.length >= 2);
  assert.ok(glob.items.every((p) => p.scope === 'global' && p.org_id === null));

  // A version created between two pages is newer than the position: the rest
  // of the walk neither repeats a row nor skips one.
  const before = (await api(a.url, 'GET', '/api/v1/policies?limit=500', { token: adminC })).body.data.map((p) => p.id);
  let r = await api(a.url, 'GET', '/api/v1/policies?limit=4', { token: adminC });
  const seen = r.body.data.map((p) => p.id);
  await staged(adminC, 2);
  let cursor = r.body.next_cursor;
  while (cursor) {
    r = await api(a.url, 'GET', `/api/v1/policies?limit=4&cursor=${cursor}`, { token: adminC });
    assert.equal(r.status, 200);
    seen.push(...r.body.data.map((p) => p.id));
    cursor = r.body.next_cursor;
  }
  assert.deepEqual(seen, before);
});

test('lists: a bad cursor is a 400 problem; a cursor never widens the scope', { skip: !env }, async () => {
  const uuid = randomUUID();
  const bad = ['zzz', 'a+b', forged('no bar'), forged(`2026-13-01T00:00:00Z|${uuid}`),
    forged('2026-01-01T00:00:00Z|not-a-uuid'), forged(`-infinity|${uuid}`), 'x'.repeat(300)];
  for (const path of ['/api/v1/policies', '/api/v1/guardrails']) {
    for (const c of bad) {
      const r = await api(a.url, 'GET', `${path}?cursor=${encodeURIComponent(c)}`, { token: adminC });
      assert.equal(r.status, 400, `${path} cursor ${c}`);
      assert.match(r.headers.get('content-type'), /^application\/problem\+json/);
      assert.equal(r.body.status, 400);
      assert.match(r.body.detail, /cursor/);
    }
  }
  // Unauthenticated and org users are refused before the cursor is looked at.
  assert.equal((await api(a.url, 'GET', '/api/v1/policies?cursor=zzz')).status, 401);
  assert.equal((await api(a.url, 'GET', '/api/v1/policies?cursor=zzz', { token: userA })).status, 403);

  // Org D's own cursor, or one forged from an org D row, shows org C's admin
  // only global and org C rows.
  const dRows = (await pageAll('/api/v1/policies?scope=org', adminD, 1)).items;
  assert.equal(dRows.length, 4);
  assert.ok(dRows.every((p) => p.org_id === orgD));
  const dPage = await api(a.url, 'GET', '/api/v1/policies?limit=1', { token: adminD });
  const cursors = [dPage.body.next_cursor, forged(`${dRows[0].created_at}|${dRows[0].id}`),
    forged(`9999-12-31T23:59:59.999999Z|${uuid}`)];
  for (const c of cursors) {
    const got = await pageAll(`/api/v1/policies?cursor=${encodeURIComponent(c)}`, adminC, 500);
    assert.ok(got.items.length > 0);
    assert.ok(got.items.every((p) => p.org_id === null || p.org_id === orgC), 'another org leaked');
  }
  // asking for org D by id stays a 404, cursor or not
  const r = await api(a.url, 'GET', `/api/v1/policies?org_id=${orgD}&cursor=${encodeURIComponent(dPage.body.next_cursor)}`, { token: adminC });
  assert.equal(r.status, 404);
});

test('guardrails list: cursor pagination with filters', { skip: !env }, async () => {
  const document = { prompt: { redact: ['email'] } };
  for (const name of ['pg-a', 'pg-b', 'pg-b', 'pg-c']) {
    const r = await api(a.url, 'POST', '/api/v1/guardrails', {
      token: adminC, body: { scope: 'org', name, document, activate: name !== 'pg-c' },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  const r = await api(a.url, 'POST', '/api/v1/guardrails', { token: adminD, body: { scope: 'org', name: 'pg-a', document } });
  assert.equal(r.status, 201);

  const full = await api(a.url, 'GET', '/api/v1/guardrails?limit=500', { token: adminC });
  assert.equal(full.body.next_cursor, null);
  assert.ok(full.body.data.every((g) => g.org_id === null || g.org_id === orgC));
  assertNewestFirst(full.body.data);
  const paged = await pageAll('/api/v1/guardrails', adminC, 1);
  assert.deepEqual(paged.items.map((g) => g.id), full.body.data.map((g) => g.id));

  const want = sql(db.dsn, `SELECT id FROM guardrail_profiles WHERE org_id = '${orgC}' AND active
    ORDER BY created_at DESC, id DESC`).map((x) => x[0]);
  assert.equal(want.length, 2); // pg-a v1 and pg-b v2
  const act = await pageAll(`/api/v1/guardrails?scope=org&active=true`, adminC, 1);
  assert.deepEqual(act.items.map((g) => g.id), want);
  assert.deepEqual(act.items.map((g) => [g.name, g.version]), [['pg-b', 2], ['pg-a', 1]]);
});
