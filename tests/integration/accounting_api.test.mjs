// ias-accounting analytics API against the real binary and a fresh database:
// totals, time series, CSV, raw events with cursor pagination, alerts, and
// tenant isolation (another org's data answers 404 or never appears).
// Ingest is covered by tests/integration/test_accounting_ingest.c; here usage
// rows are seeded with SQL so every expected number is known.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { stackEnv, createDb, startService, sql, api } from '../lib/harness.mjs';

const env = stackEnv();
const SECRET = 'accounting-api-test-secret-0123456789abcdef';
const A = randomUUID(), B = randomUUID();
const A1 = randomUUID(), A2 = randomUUID(), B1 = randomUUID(), ADMIN = randomUUID();
const KA1 = randomUUID(), KA2 = randomUUID(), KB1 = randomUUID();
let db, svc;

function b64url(x) {
  return Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
}
function token(sub, org, role) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url({ alg: 'HS256', typ: 'JWT' });
  const body = b64url({ sub, org, role, typ: 'access', jti: randomUUID(), iat: now, exp: now + 600 });
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
const tAdminA = () => token(A1, A, 'org_admin');
const tUserA2 = () => token(A2, A, 'org_user');
const tSys = () => token(ADMIN, '', 'system_admin');

before(async () => {
  if (!env) return;
  db = createDb('acctapi');
  const rollup = (org, hour, user, key, model, req, err, p, c, cost) =>
    `('${org}', ${hour}, '${user}', '${key}', '${model}', ${req}, ${err}, ${p}, ${c}, ${cost})`;
  const h1 = "date_trunc('hour', now(), 'UTC') - interval '1 hour'";
  const h2 = "date_trunc('hour', now(), 'UTC') - interval '25 hours'";
  sql(db.dsn, `SELECT ias_ensure_usage_partitions((now() - interval '40 days')::date, 3)`);
  sql(db.dsn, `INSERT INTO usage_rollups_hourly
      (org_id, hour, user_id, api_key_id, model, requests, errors, prompt_tokens, completion_tokens, cost) VALUES
      ${rollup(A, h1, A1, KA1, 'm1', 10, 1, 100, 50, 0.5)},
      ${rollup(A, h1, A2, KA2, 'm2', 5, 0, 40, 10, 0.25)},
      ${rollup(A, h2, A1, KA1, 'm2', 2, 0, 20, 20, 0.1)},
      ${rollup(B, h1, B1, KB1, 'm1', 7, 0, 70, 70, 1.0)}`);
  const events = [];
  for (let i = 0; i < 25; i++) {
    events.push(`('${randomUUID()}', now() - interval '${i + 1} minutes', 'req-a-${i}', '${A}',
      '${i % 5 === 0 ? A2 : A1}', '${KA1}', 'm1', 'b1', 200, ${i}, 1, 0.001, 0.002, 0.001, 5, 10, false, false)`);
  }
  for (let i = 0; i < 3; i++) {
    events.push(`('${randomUUID()}', now() - interval '${i + 1} minutes', 'req-b-${i}', '${B}',
      '${B1}', '${KB1}', 'm1', 'b1', 200, 1, 1, 0, 0, 0, 5, 10, false, false)`);
  }
  sql(db.dsn, `INSERT INTO usage_events (event_id, created_at, request_id, org_id, user_id, api_key_id,
      model, backend, status, prompt_tokens, completion_tokens, input_rate_per_1k, output_rate_per_1k,
      cost, ttft_ms, duration_ms, stream, aborted) VALUES ${events.join(',')}`);
  sql(db.dsn, `INSERT INTO budget_alerts (org_id, user_id, month, threshold, limit_tokens, used_tokens) VALUES
      ('${A}', NULL, date_trunc('month', now())::date, 80, 100, 85),
      ('${A}', '${A1}', date_trunc('month', now())::date, 90, 100, 95),
      ('${B}', NULL, date_trunc('month', now())::date, 100, 10, 11)`);
  svc = await startService('accounting', {
    IAS_PG_DSN: db.dsn, IAS_JWT_SECRET: SECRET, IAS_CONSUME: 'false',
  });
});

after(async () => {
  if (svc) await svc.stop();
  if (db) db.drop();
});

const get = (path, tok) => api(svc.url, 'GET', path, { token: tok });

test('no token or a forged one: 401', { skip: !env }, async () => {
  assert.equal((await get('/api/v1/usage/summary')).status, 401);
  const forged = tAdminA().slice(0, -2) + 'xx';
  assert.equal((await get('/api/v1/usage/summary', forged)).status, 401);
});

test('org admin: totals and groups of their own org only', { skip: !env }, async () => {
  const r = await get('/api/v1/usage/summary?group_by=model', tAdminA());
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.org_id, A);
  assert.equal(r.body.totals.requests, 17);
  assert.equal(r.body.totals.errors, 1);
  assert.equal(r.body.totals.total_tokens, 240);
  assert.equal(Number(r.body.totals.cost), 0.85);
  const byModel = Object.fromEntries(r.body.groups.map((g) => [g.key, g]));
  assert.equal(byModel.m1.prompt_tokens, 100);
  assert.equal(byModel.m2.requests, 7);
  const byUser = await get('/api/v1/usage/summary?group_by=user', tAdminA());
  assert.deepEqual(byUser.body.groups.map((g) => g.key).sort(), [A1, A2].sort());
  const byKey = await get('/api/v1/usage/summary?group_by=key', tAdminA());
  assert.equal(byKey.body.groups.find((g) => g.key === KA2).total_tokens, 50);
});

test('another org is not found; bad parameters are 400', { skip: !env }, async () => {
  const r = await get(`/api/v1/usage/summary?org_id=${B}`, tAdminA());
  assert.equal(r.status, 404);
  assert.equal(r.body.type, 'https://ias.dev/problems/not-found');
  assert.equal((await get(`/api/v1/usage/events?org_id=${B}`, tUserA2())).status, 404);
  assert.equal((await get(`/api/v1/usage/alerts?org_id=${B}`, tUserA2())).status, 404);
  for (const q of ['group_by=nope', 'org_id=not-a-uuid', 'from=yesterday', 'from=2026-02-30',
    'from=2026-01-02&to=2026-01-01', 'format=xml', 'interval=week']) {
    const x = await get(`/api/v1/usage/timeseries?${q}`, tAdminA());
    assert.equal(x.status, 400, q);
    assert.equal(x.body.type, 'https://ias.dev/problems/invalid-parameter');
  }
  assert.equal((await get('/api/v1/usage/events?cursor=zzz', tAdminA())).status, 400);
  assert.equal((await get('/api/v1/usage/events?limit=0', tAdminA())).status, 400);
});

test('org user sees the org, or only their own usage', { skip: !env }, async () => {
  const org = await get('/api/v1/usage/summary', tUserA2());
  assert.equal(org.body.totals.requests, 17);
  const mine = await get('/api/v1/usage/summary?user_id=me', tUserA2());
  assert.equal(mine.body.user_id, A2);
  assert.equal(mine.body.totals.requests, 5);
  assert.equal(mine.body.totals.total_tokens, 50);
});

test('system admin: system-wide or one org', { skip: !env }, async () => {
  const all = await get('/api/v1/usage/summary', tSys());
  assert.equal(all.body.org_id, null);
  assert.equal(all.body.totals.requests, 24);
  const b = await get(`/api/v1/usage/summary?org_id=${B}`, tSys());
  assert.equal(b.body.totals.requests, 7);
});

test('time series by hour and day, JSON and CSV', { skip: !env }, async () => {
  const hour = await get('/api/v1/usage/timeseries?interval=hour', tAdminA());
  assert.equal(hour.status, 200);
  assert.equal(hour.body.points.length, 2);
  assert.equal(hour.body.points.reduce((s, p) => s + p.requests, 0), 17);
  assert.match(hour.body.points[0].time, /^\d{4}-\d\d-\d\dT\d\d:00:00Z$/);
  const day = await get('/api/v1/usage/timeseries?interval=day&group_by=model', tAdminA());
  assert.equal(day.body.points.reduce((s, p) => s + p.total_tokens, 0), 240);
  assert.ok(day.body.points.every((p) => /T00:00:00Z$/.test(p.time)));
  const r = await fetch(`${svc.url}/api/v1/usage/timeseries?interval=hour&format=csv`,
    { headers: { Authorization: `Bearer ${tAdminA()}` } });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/csv/);
  const lines = (await r.text()).trim().split('\r\n');
  assert.equal(lines[0], 'time,group,requests,errors,prompt_tokens,completion_tokens,total_tokens,cost');
  assert.equal(lines.length, 3);
});

test('raw events: cursor pagination within the org', { skip: !env }, async () => {
  const seen = new Set();
  let cursor = null, pages = 0;
  do {
    const q = `/api/v1/usage/events?limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const r = await get(q, tAdminA());
    assert.equal(r.status, 200, JSON.stringify(r.body));
    for (const e of r.body.data) {
      assert.equal(e.org_id, A);
      assert.ok(!seen.has(e.event_id), 'no event twice');
      seen.add(e.event_id);
    }
    cursor = r.body.next_cursor;
    pages++;
  } while (cursor && pages < 10);
  assert.equal(seen.size, 25);
  assert.equal(pages, 3);
  const mine = await get('/api/v1/usage/events?user_id=me&limit=100', tUserA2());
  assert.equal(mine.body.data.length, 5);
  assert.ok(mine.body.data.every((e) => e.user_id === A2));
  const sys = await get('/api/v1/usage/events?limit=1000', tSys());
  assert.equal(sys.body.data.length, 28);
  const csv = await fetch(`${svc.url}/api/v1/usage/events?format=csv&limit=20`,
    { headers: { Authorization: `Bearer ${tAdminA()}` } });
  assert.ok(csv.headers.get('x-next-cursor'));
  assert.equal((await csv.text()).trim().split('\r\n').length, 21);
});

test('budget alerts: visible to the org, never across orgs', { skip: !env }, async () => {
  const a = await get('/api/v1/usage/alerts', tUserA2());
  assert.equal(a.status, 200);
  assert.deepEqual(a.body.data.map((x) => x.threshold).sort(), [80, 90]);
  assert.ok(a.body.data.every((x) => x.org_id === A));
  const s = await get('/api/v1/usage/alerts', tSys());
  assert.equal(s.body.data.length, 3);
  const p1 = await get('/api/v1/usage/alerts?limit=1', tSys());
  assert.ok(p1.body.next_cursor);
  const p2 = await get(`/api/v1/usage/alerts?limit=5&cursor=${encodeURIComponent(p1.body.next_cursor)}`, tSys());
  assert.equal(p2.body.data.length, 2);
  assert.ok(!p2.body.data.some((x) => x.id === p1.body.data[0].id));
});
