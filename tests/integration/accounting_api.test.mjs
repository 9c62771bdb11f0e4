// ias-accounting analytics API against the real binary and a fresh database:
// totals, time series, CSV, raw events with cursor pagination, alerts, and
// tenant isolation (another org's data answers 404 or never appears).
// Ingest is covered by tests/integration/test_accounting_ingest.c; here usage
// rows are seeded with SQL so every expected number is known, except in the
// daily-rollup cases at the end, which ingest events through a real consumer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { root, stackEnv, createDb, startService, sql, api, uniqueName } from '../lib/harness.mjs';

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
  // The daily rollups of those hours, as migrations/0011_usage_rollups_daily
  // backfills them (the consumer keeps them in production).
  for (const [table, cols] of [['model', 'model'], ['user_key', 'user_id, api_key_id']]) {
    sql(db.dsn, `INSERT INTO usage_rollups_daily_${table} (org_id, day, ${cols}, requests, errors,
        prompt_tokens, completion_tokens, cost)
      SELECT org_id, (hour AT TIME ZONE 'UTC')::date, ${cols}, sum(requests), sum(errors),
        sum(prompt_tokens), sum(completion_tokens), sum(cost)
      FROM usage_rollups_hourly GROUP BY org_id, 2, ${cols}`);
  }
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

// ---- daily rollups (migrations 0011, 0012) against the hourly meaning -----
//
// Summaries and daily series read the daily rollups for the whole UTC days of
// a range that the daily job has summarised (before the watermark) and the
// hourly ones for the rest. Their answers must be what the hourly rollups
// alone gave: the hours that start inside [date_trunc('hour', from), to).
// Here events go through a real consumer, spread over hours and days across
// two month boundaries, and every answer is compared with sums the test
// computes from the events it published. The service runs on a fake clock
// (IAS_FAKE_NOW) in the middle of those days, so the watermark splits them:
// the days before it reach the daily rows as late events (the consumer's
// upserts), the later ones only the hourly rows; then the clock moves on, the
// job summarises the days that closed meanwhile, and late events of
// summarised days (and redeliveries) must still count once.

const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
const HOUR = 3600e3;
const C = randomUUID(), D = randomUUID();
const CU = [randomUUID(), randomUUID(), randomUUID()], CK = CU.map(() => randomUUID());
const DU = randomUUID(), DK = randomUUID();
const MODELS = ['alpha', 'beta', 'gamma'];
// Cost per prompt and per completion token in units of 1e-10 (numeric(20,10)
// holds it exactly): the rates per 1,000 tokens of model_rate_history below.
const RATE = { alpha: [1234560n, 6543210n], beta: [20000000n, 30000000n], gamma: [0n, 0n] };
const T0 = Date.parse('2026-01-29T00:00:00Z'), T1 = Date.parse('2026-03-03T00:00:00Z');
const published = [];
// The service clock of each phase and the watermark the daily job then sets.
const NOW1 = '2026-02-10T12:00:00Z', WM1 = '2026-02-10';
const NOW2 = '2026-02-20T12:00:00Z', WM2 = '2026-02-20';
let idb, isvc, amqpConn, queue, pubCh;

function rng(seed) { // mulberry32: the same events on every run
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeEvents() {
  const r = rng(20260122);
  // Times on and next to the boundaries the ranges below use, then random ones.
  const edges = ['2026-01-29T00:00:00.000Z', '2026-01-30T05:00:00.000Z', '2026-01-30T04:59:59.999Z',
    '2026-01-31T23:59:59.999Z', '2026-02-01T00:00:00.000Z', '2026-02-02T00:00:00.000Z',
    '2026-02-02T00:30:00.000Z', '2026-02-05T23:59:59.999Z', '2026-02-06T00:00:00.000Z',
    '2026-02-10T00:00:00.000Z', '2026-02-10T03:00:00.000Z', '2026-02-10T20:59:59.999Z',
    '2026-02-10T21:00:00.000Z', '2026-02-10T23:59:59.999Z', '2026-02-11T00:00:00.000Z',
    '2026-02-15T00:00:00.000Z', '2026-02-14T23:59:59.999Z', '2026-02-20T13:00:00.000Z',
    '2026-02-20T12:59:59.999Z', '2026-02-20T13:41:07.499Z', '2026-02-28T23:59:59.999Z',
    '2026-03-01T00:00:00.000Z', '2026-03-01T01:59:59.999Z', '2026-03-01T02:00:00.000Z',
    '2026-03-02T23:59:59.999Z'].map(Date.parse);
  const times = [];
  for (const t of edges) times.push(t, t);
  while (times.length < 700) times.push(T0 + Math.floor(r() * (T1 - T0)));
  return times.map((t, i) => {
    const d = i % 7 === 6; // some of org D, for scoping and the system-wide view
    const u = Math.floor(r() * 4); // 3: no user and no key
    const model = MODELS[Math.floor(r() * MODELS.length)];
    return {
      event_id: randomUUID(), occurred_at: new Date(t).toISOString(), request_id: `req-daily-${i}`,
      org_id: d ? D : C, user_id: u === 3 ? null : d ? DU : CU[u], api_key_id: u === 3 ? null : d ? DK : CK[u],
      model, backend: 'b1', prompt_tokens: Math.floor(r() * 5000), completion_tokens: Math.floor(r() * 900),
      status: r() < 0.08 ? 500 : 200, ttft_ms: 5, duration_ms: 20, stream: false, aborted: r() < 0.05,
    };
  });
}

function watermark() {
  return sql(idb.dsn, `SELECT day::text FROM usage_rollups_daily_watermark`)[0][0];
}

async function waitWatermark(day) {
  const end = Date.now() + 30000;
  while (watermark() !== day) {
    if (Date.now() > end) throw new Error(`daily rollup watermark ${watermark()}, want ${day}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

// Starts the consumer on the fake clock now and waits for its daily job.
async function startConsumer(now, wm) {
  isvc = await startService('accounting', {
    IAS_PG_DSN: idb.dsn, IAS_JWT_SECRET: SECRET, IAS_USAGE_QUEUE: queue, IAS_BATCH_SIZE: '50',
    IAS_FAKE_NOW: now,
  });
  await waitWatermark(wm);
}

// Publishes sends (events, some more than once) and waits until the consumer
// has stored the new ones and seen the rest as duplicates.
async function ingest(sends, fresh) {
  for (const e of sends) {
    pubCh.sendToQueue(queue, Buffer.from(JSON.stringify(e)),
      { type: 'usage.recorded.v1', messageId: e.event_id, contentType: 'application/json', persistent: true });
  }
  await pubCh.waitForConfirms();
  const end = Date.now() + 60000;
  for (;;) {
    const n = await metric(isvc.url, 'accounting_events_total');
    const dup = await metric(isvc.url, 'accounting_duplicate_events_total');
    if (n === fresh && dup === sends.length - fresh) break;
    if (Date.now() > end) throw new Error(`consumer stored ${n} events and ${dup} duplicates of ${sends.length}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

before(async () => {
  if (!env) return;
  idb = createDb('acctdaily');
  sql(idb.dsn, `INSERT INTO model_rate_history VALUES
      ('alpha', '2020-01-01T00:00:00Z', 0.123456, 0.654321), ('beta', '2020-01-01T00:00:00Z', 2, 3)`);
  const amqp = require('amqplib');
  queue = uniqueName('acctdaily');
  amqpConn = await amqp.connect(env.IAS_AMQP_URL);
  pubCh = await amqpConn.createConfirmChannel();
  await pubCh.assertQueue(queue, { durable: true, arguments: { 'x-dead-letter-exchange': 'ias.events.dlx' } });
  // Phase 1: nothing summarised from T0's day on; the job, on a clock in
  // the middle of the events, summarises the (still empty) days up to WM1.
  sql(idb.dsn, `UPDATE usage_rollups_daily_watermark SET day = '2026-01-29'`);
  await startConsumer(NOW1, WM1);
  const events = makeEvents();
  // Every 10th event twice: a redelivery must change no rollup.
  await ingest([...events, ...events.filter((_, i) => i % 10 === 0)], events.length);
  published.push(...events);
});

after(async () => {
  if (isvc) await isvc.stop();
  if (amqpConn) {
    const ch = await amqpConn.createChannel();
    await ch.deleteQueue(queue);
    await amqpConn.close();
  }
  if (idb) idb.drop();
});

const zero = () => ({ requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost: 0n });
function addTo(s, e) {
  s.requests += 1;
  s.errors += e.status >= 400 || e.aborted ? 1 : 0;
  s.prompt_tokens += e.prompt_tokens;
  s.completion_tokens += e.completion_tokens;
  s.total_tokens += e.prompt_tokens + e.completion_tokens;
  const [pin, pout] = RATE[e.model];
  s.cost += BigInt(e.prompt_tokens) * pin + BigInt(e.completion_tokens) * pout;
}
// "12.3400000000" -> 123400000000n (units of 1e-10)
function units(v) {
  const [i, f = ''] = String(v).split('.');
  return BigInt(i) * 10n ** 10n + BigInt((f + '0000000000').slice(0, 10));
}
function sums(o) {
  return { requests: o.requests, errors: o.errors, prompt_tokens: o.prompt_tokens,
    completion_tokens: o.completion_tokens, total_tokens: o.total_tokens, cost: units(o.cost) };
}
const GROUP_FIELD = { none: null, model: 'model', user: 'user_id', key: 'api_key_id' };
// The events a request sees: the hourly meaning, written out independently.
function selected(q) {
  const from = Math.floor(Date.parse(q.from) / HOUR) * HOUR, to = Date.parse(q.to);
  return published.filter((e) => {
    const h = Math.floor(Date.parse(e.occurred_at) / HOUR) * HOUR;
    return h >= from && h < to && (!q.org || e.org_id === q.org) && (!q.user || e.user_id === q.user);
  });
}
function expectSummary(q) {
  const totals = zero(), groups = new Map();
  for (const e of selected(q)) {
    addTo(totals, e);
    if (q.group === 'none') continue;
    const k = e[GROUP_FIELD[q.group]];
    if (!groups.has(k)) groups.set(k, zero());
    addTo(groups.get(k), e);
  }
  return { totals, groups };
}
function expectSeries(q, interval) {
  const step = interval === 'day' ? 24 * HOUR : HOUR, points = new Map();
  for (const e of selected(q)) {
    const t = new Date(Math.floor(Date.parse(e.occurred_at) / step) * step).toISOString().replace('.000Z', 'Z');
    const k = `${t}|${q.group === 'none' ? null : e[GROUP_FIELD[q.group]]}`;
    if (!points.has(k)) points.set(k, zero());
    addTo(points.get(k), e);
  }
  return points;
}
function queryString(q, extra = '') {
  const p = new URLSearchParams({ from: q.from, to: q.to, group_by: q.group });
  if (q.sys && q.org) p.set('org_id', q.org);
  if (q.user) p.set('user_id', q.user);
  return `${p}${extra}`;
}
const tokenFor = (q) => (q.sys ? tSys() : token(CU[0], C, 'org_admin'));
const iget = (path, tok) => api(isvc.url, 'GET', path, { token: tok });

const RANGES = [
  ['whole days', '2026-02-01T00:00:00Z', '2026-02-15T00:00:00Z'],
  ['unaligned to the hour', '2026-01-30T05:17:23.456Z', '2026-02-20T13:41:07.500Z'],
  ['hour-aligned, not day-aligned', '2026-01-30T05:00:00Z', '2026-02-20T13:00:00Z'],
  ['one whole day', '2026-02-10T00:00:00Z', '2026-02-11T00:00:00Z'],
  ['inside one day', '2026-02-10T03:30:00Z', '2026-02-10T20:10:00Z'],
  ['across midnight, no whole day', '2026-02-10T20:00:00Z', '2026-02-11T04:00:00Z'],
  ['from in the first hour of a day', '2026-02-02T00:30:00Z', '2026-02-05T23:30:00Z'],
  ['three months, whole days', '2026-01-29T00:00:00Z', '2026-03-03T00:00:00Z'],
  ['three months, unaligned', '2026-01-31T22:10:00Z', '2026-03-01T01:59:59.999Z'],
];

async function compareSummaries() {
  let compared = 0;
  for (const [name, from, to] of RANGES) {
    for (const scope of [{ org: C }, { org: C, user: CU[1] }, { sys: true }, { sys: true, org: D }]) {
      for (const group of ['none', 'model', 'user', 'key']) {
        const q = { from, to, group, ...scope };
        const what = `${name} ${JSON.stringify(scope)} group_by=${group}`;
        const r = await iget(`/api/v1/usage/summary?${queryString(q)}`, tokenFor(q));
        assert.equal(r.status, 200, `${what}: ${JSON.stringify(r.body)}`);
        const want = expectSummary(q);
        assert.deepEqual(sums(r.body.totals), want.totals, `${what}: totals`);
        const got = new Map(r.body.groups.map((g) => [g.key, sums(g)]));
        assert.deepEqual(got, want.groups, `${what}: groups`);
        compared++;
      }
    }
  }
  assert.equal(compared, RANGES.length * 16);
}

// The daily tables hold exactly the events of the days before the watermark,
// and some days on each side of it have events (the ranges cross it).
function assertDailySplit(wm) {
  const split = Date.parse(`${wm}T00:00:00Z`);
  const before = published.filter((e) => Date.parse(e.occurred_at) < split).length;
  assert.ok(before > 50 && published.length - before > 50, `events around ${wm}`);
  for (const t of ['usage_rollups_daily_model', 'usage_rollups_daily_user_key']) {
    assert.equal(Number(sql(idb.dsn, `SELECT coalesce(sum(requests), 0) FROM ${t}`)[0][0]), before, t);
    assert.equal(Number(sql(idb.dsn, `SELECT count(*) FROM ${t} WHERE day >= '${wm}'`)[0][0]), 0, t);
  }
}

test('daily rollups: summaries equal the hourly sums for every range and group', { skip: !env }, async () => {
  // Not vacuous: the events fill the ranges, and the daily tables were written.
  assert.ok(expectSummary({ from: RANGES[3][1], to: RANGES[3][2], org: C, group: 'none' }).totals.requests > 5);
  assert.equal(watermark(), WM1);
  assertDailySplit(WM1);
  await compareSummaries();
});

async function compareSeries() {
  for (const [name, from, to] of RANGES) {
    for (const scope of [{ org: C }, { org: C, user: CU[2] }, { sys: true }]) {
      for (const group of ['none', 'model', 'user', 'key']) {
        for (const interval of ['day', 'hour']) {
          const q = { from, to, group, ...scope };
          const what = `${name} ${JSON.stringify(scope)} group_by=${group} interval=${interval}`;
          const r = await iget(`/api/v1/usage/timeseries?${queryString(q, `&interval=${interval}`)}`, tokenFor(q));
          assert.equal(r.status, 200, `${what}: ${JSON.stringify(r.body)}`);
          const got = new Map(r.body.points.map((p) => [`${p.time}|${group === 'none' ? null : p.key}`, sums(p)]));
          assert.deepEqual(got, expectSeries(q, interval), what);
          // Ordered by time, then group (no group first).
          const times = r.body.points.map((p) => p.time);
          assert.deepEqual(times, [...times].sort(), `${what}: order`);
        }
      }
    }
  }
}

test('daily rollups: daily series equal the hourly sums; hourly series unchanged', { skip: !env }, async () => {
  await compareSeries();
});

test('daily rollups: the job summarises the days that closed; late events count once', { skip: !env }, async () => {
  // Phase 2: the clock moves on ten days; the job sums [WM1, WM2) from the
  // hourly rollups that phase 1 filled.
  await isvc.stop();
  isvc = null;
  await startConsumer(NOW2, WM2);
  assertDailySplit(WM2);
  // Late events of days already summarised (before WM2: either job's days)
  // and of days not yet summarised, each delivered twice, plus redeliveries
  // of events stored in phase 1.
  const r = rng(20261122);
  const late = ['2026-01-30T07:15:00.000Z', '2026-02-03T23:59:59.999Z', '2026-02-12T00:00:00.000Z',
    '2026-02-19T13:30:00.000Z', '2026-02-20T00:00:00.000Z', '2026-02-27T09:00:00.000Z'].map((t, i) => ({
    event_id: randomUUID(), occurred_at: t, request_id: `req-late-${i}`, org_id: C, user_id: CU[i % 3],
    api_key_id: CK[i % 3], model: MODELS[i % 3], backend: 'b1', prompt_tokens: Math.floor(r() * 5000),
    completion_tokens: Math.floor(r() * 900), status: 200, ttft_ms: 5, duration_ms: 20, stream: false,
    aborted: false,
  }));
  await ingest([...late, ...late, ...published.slice(0, 5)], late.length);
  published.push(...late);
  assert.equal(watermark(), WM2);
  assertDailySplit(WM2);
  await compareSummaries();
  await compareSeries();
});
