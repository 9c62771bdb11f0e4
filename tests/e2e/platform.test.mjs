// The whole platform end to end, as an operator and a developer meet it: every
// service started the way scripts/run.sh starts them (one fresh database, shared
// secrets, wired by URLs, the real PostgreSQL, Redis and RabbitMQ of the test
// stack), driven only through ingress with the ias-admin CLI and the official
// openai SDK. The five cases of seeds/002: the happy path down to exact usage and
// cost, invalid and revoked keys, budget exhaustion, cross-user and cross-org key
// revocation, and an audit trail holding every write with a verifying chain.
//
//   IAS_BIN_DIR=... IAS_PG_DSN=... IAS_REDIS_URL=... IAS_AMQP_URL=... \
//     node --test tests/e2e/platform.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { root, binDir, stackEnv, createDb, startService, uniqueName, stopAll, waitFor } from '../lib/harness.mjs';

const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
const env = stackEnv();
const bins = ['users', 'pdp', 'accounting', 'audit', 'router', 'ingress', 'mockllm', 'migrate', 'admin'];
const missing = bins.filter((b) => !existsSync(join(binDir, `ias-${b}`)));
const skip = !env ? 'needs the test stack (IAS_PG_DSN, IAS_REDIS_URL, IAS_AMQP_URL)'
  : missing.length ? `missing binaries in ${binDir}: ${missing.join(', ')}` : false;

const MODEL = 'mock-gpt';
const IN_RATE = '0.5'; // per 1,000 prompt tokens
const OUT_RATE = '1.5'; // per 1,000 completion tokens
const PW = { admin: 'Root-e2e-Passw0rd!', alice: 'Alice-e2e-Passw0rd!', bob: 'Bob-e2e-Passw0rd!1', carol: 'Carol-e2e-Passw0rd!' };
// The shared secrets, generated as scripts/run.sh does with openssl rand.
const SECRETS = {
  IAS_JWT_SECRET: randomBytes(32).toString('hex'),
  IAS_INTERNAL_TOKEN: randomBytes(24).toString('hex'),
  IAS_AUDIT_SIGNING_KEY: randomBytes(32).toString('base64'),
};

let OpenAI, db, tmp, ingress, amqp;
const procs = [];
const usageQueue = uniqueName('e2e.usage');
const suffix = randomBytes(3).toString('hex');
const ORG_A = `e2e-a-${suffix}`;
const ORG_B = `e2e-b-${suffix}`;
const email = (who) => `${who}-${suffix}@e2e.example.com`;

// Every successful write made through the CLI, with the audit action it must
// leave behind (and the resource id when the answer names it).
const writes = [];
const ids = {};

/** ias-admin as `who` (each identity has its own credentials dir), through ingress. */
function cli(who, args, { input = '' } = {}) {
  const cfg = join(tmp, 'cli', who);
  const r = spawnSync(join(binDir, 'ias-admin'), args, {
    input,
    encoding: 'utf8',
    timeout: 30000,
    env: {
      PATH: process.env.PATH,
      HOME: cfg,
      IAS_CONFIG_DIR: cfg,
      IAS_BASE_URL: ingress.url,
      ASAN_OPTIONS: process.env.ASAN_OPTIONS ?? 'detect_leaks=1',
    },
  });
  if (r.error) throw r.error;
  assert.doesNotMatch(r.stderr, /AddressSanitizer|LeakSanitizer|runtime error/, r.stderr);
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function ok(who, args, opts) {
  const r = cli(who, args, opts);
  assert.equal(r.code, 0, `ias-admin ${args.join(' ')} (as ${who}) -> ${r.code}\n${r.err}`);
  return r;
}

function json(who, args, opts) {
  return JSON.parse(ok(who, [...args, '-o', 'json'], opts).out);
}

/** A CLI write: runs it, records the audit action it owes. */
function write(who, action, args, opts) {
  const body = json(who, args, opts);
  writes.push({ action, id: body?.id ?? null, what: args.slice(0, 2).join(' ') });
  return body;
}

function login(who) {
  ok(who, ['login', '--email', email(who), '--password-stdin'], { input: `${PW[who]}\n` });
  writes.push({ action: 'login', id: null, what: `login ${who}` });
}

const sdk = (apiKey) => new OpenAI({ apiKey, baseURL: `${ingress.url}/v1`, maxRetries: 0, timeout: 20000 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


// Decimal strings as integers of 1e-9 units, so costs compare exactly.
const SCALE = 9;
function nano(dec) {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(dec));
  assert.ok(m, `not a decimal: ${dec}`);
  const frac = (m[3] ?? '').padEnd(SCALE, '0');
  assert.ok(/^0*$/.test(frac.slice(SCALE)), `more than ${SCALE} decimals: ${dec}`);
  const v = BigInt(m[2]) * 10n ** BigInt(SCALE) + BigInt(frac.slice(0, SCALE));
  return m[1] ? -v : v;
}

before(async () => {
  if (skip) return;
  ({ default: OpenAI } = await import(require.resolve('openai')));
  tmp = mkdtempSync(join(tmpdir(), 'ias-e2e-'));
  db = createDb('e2e');

  // Accounting reads a private queue bound like ias.usage, and the shared
  // ias.audit queue is emptied first, so events of other suites stay out of
  // this run's ledgers (audit has no queue setting).
  const amqplib = require('amqplib');
  amqp = await amqplib.connect(env.IAS_AMQP_URL);
  const ch = await amqp.createChannel();
  await ch.assertExchange('ias.events', 'topic', { durable: true });
  await ch.assertExchange('ias.events.dlx', 'topic', { durable: true });
  await ch.assertQueue(usageQueue, { durable: false, arguments: { 'x-dead-letter-exchange': 'ias.events.dlx' } });
  await ch.bindQueue(usageQueue, 'ias.events', 'usage.recorded');
  const probe = await amqp.createChannel();
  probe.on('error', () => {}); // a missing queue closes only this channel
  try { await probe.purgeQueue('ias.audit'); } catch { /* not declared yet: nothing to purge */ }

  const spool = (name) => ({ IAS_SPOOL_DIR: join(tmp, 'spool', name) });
  const base = { ...env, ...SECRETS, IAS_PG_DSN: db.dsn };
  const start = async (name, extra = {}) => {
    const p = await startService(name, { ...base, ...spool(name), ...extra });
    procs.push(p);
    return p;
  };
  // Start order of scripts/run.sh: model server and data owners first, the front door last.
  const mock = await start('mockllm');
  const users = await start('users');
  const pdp = await start('pdp');
  const accounting = await start('accounting', { IAS_USAGE_QUEUE: usageQueue, IAS_BATCH_SIZE: '50' });
  const audit = await start('audit', { IAS_CHECKPOINT_EVERY: '5', IAS_CHECKPOINT_INTERVAL: '1s' });
  const router = await start('router', { IAS_USERS_URL: users.url, IAS_PDP_URL: pdp.url, IAS_REGISTRY_TTL: '1s' });
  ingress = await start('ingress', {
    IAS_USERS_URL: users.url, IAS_ROUTER_URL: router.url, IAS_PDP_URL: pdp.url,
    IAS_ACCOUNTING_URL: accounting.url, IAS_AUDIT_URL: audit.url, IAS_MODELS_CACHE_TTL: '500ms',
  });
  ids.mockUrl = mock.url;
});

after(async () => {
  if (skip) return;
  const stopErr = await stopAll(procs);
  try {
    if (amqp) {
      const ch = await amqp.createChannel();
      await ch.deleteQueue(usageQueue);
      await amqp.close();
    }
  } catch (e) { errors.push(e); }
  db?.drop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (stopErr) throw stopErr;
});

test('1. happy path: bootstrap, org, model, user, key, completions, exact usage and cost', { skip }, async () => {
  const admin = write('admin', 'super_admin_bootstrapped',
    ['bootstrap', 'create-super-admin', '--email', email('admin'), '--password-stdin'], { input: `${PW.admin}\n` });
  assert.equal(admin.role, 'system_admin');
  login('admin');

  const orgA = write('admin', 'org_created', ['orgs', 'create', ORG_A, '--display-name', 'E2E team A']);
  const orgB = write('admin', 'org_created', ['orgs', 'create', ORG_B, '--display-name', 'E2E team B']);
  ids.orgA = orgA.id;
  ids.orgB = orgB.id;
  write('admin', 'model_created', ['models', 'add', MODEL, '--context-length', '8192',
    '--backend', ids.mockUrl, '--input-rate', IN_RATE, '--output-rate', OUT_RATE]);
  for (const org of [ORG_A, ORG_B]) {
    write('admin', 'allowed_models_updated', ['orgs', 'models', org, '--set', MODEL]);
    writes.at(-1).id = null;
  }
  for (const [who, org] of [['alice', ORG_A], ['bob', ORG_A], ['carol', ORG_B]]) {
    const u = write('admin', 'user_created', ['users', 'invite', '--org', org, '--email', email(who),
      '--role', 'org_user', '--password-stdin'], { input: `${PW[who]}\n` });
    ids[who] = u.id;
    login(who);
  }

  const key = write('alice', 'api_key_created', ['keys', 'create', '--name', 'e2e-main']);
  assert.match(key.key, /^ias_[a-z0-9]+\./);
  ids.aliceKey = key.id;
  const client = sdk(key.key);

  // The model registry reaches router and ingress through caches and events.
  const models = await waitFor(async () => {
    try {
      const list = await client.models.list();
      return list.data.some((m) => m.id === MODEL) && list;
    } catch { return false; }
  }, 10000);
  assert.ok(models, `${MODEL} never showed up in /v1/models`);

  let prompt = 0;
  let completion = 0;
  const messages = [{ role: 'user', content: 'Say hello to the end-to-end suite.' }];
  const plain = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12 });
  assert.equal(plain.object, 'chat.completion');
  assert.ok(plain.choices[0].message.content.length > 0);
  assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);
  assert.ok(plain.usage.completion_tokens > 0 && plain.usage.completion_tokens <= 12);
  prompt += plain.usage.prompt_tokens;
  completion += plain.usage.completion_tokens;

  const stream = await client.chat.completions.create({
    model: MODEL, messages, max_tokens: 20, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let streamUsage = null;
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    text += c.choices[0]?.delta?.content ?? '';
    if (c.usage) streamUsage = c.usage;
  }
  assert.ok(chunks > 2 && text.length > 0, `streamed ${chunks} chunks: ${text}`);
  assert.ok(streamUsage, 'no usage chunk although include_usage was asked');
  prompt += streamUsage.prompt_tokens;
  completion += streamUsage.completion_tokens;

  // A stream without include_usage gets no usage chunk but is still billed.
  const bare = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 5, stream: true });
  let bareText = '';
  for await (const c of bare) {
    assert.equal(c.usage ?? null, null, 'usage chunk leaked to a client that did not ask');
    bareText += c.choices[0]?.delta?.content ?? '';
  }
  const bareTokens = bareText.trim().split(/\s+/).length; // mockllm: one word per token
  prompt += plain.usage.prompt_tokens; // same messages, same prompt size
  completion += bareTokens;

  const cost = (BigInt(prompt) * nano(IN_RATE) + BigInt(completion) * nano(OUT_RATE)) / 1000n;
  let summary;
  const seen = await waitFor(() => {
    summary = json('admin', ['usage', 'show', '--org', ORG_A]);
    return summary.totals?.requests === 3;
  }, 20000);
  assert.ok(seen, `accounting did not ingest 3 requests in time: ${JSON.stringify(summary)}`);
  const t = summary.totals;
  assert.equal(t.prompt_tokens, prompt, JSON.stringify(t));
  assert.equal(t.completion_tokens, completion, JSON.stringify(t));
  assert.equal(t.total_tokens, prompt + completion);
  assert.equal(t.errors, 0);
  assert.equal(nano(t.cost), cost, `cost ${t.cost}, expected ${cost} nano-units`);

  // Alice sees the same numbers for her own org; grouped by model it is one row.
  const mine = json('alice', ['usage', 'show', '--group-by', 'model']);
  assert.equal(mine.totals.total_tokens, prompt + completion);
  assert.deepEqual(mine.groups.map((g) => g.key), [MODEL]);
  // Org B has used nothing.
  assert.equal(json('admin', ['usage', 'show', '--org', ORG_B]).totals.requests, 0);
});

test('2. an invalid key and a revoked key answer 401; the revoked one within 1 s', { skip }, async () => {
  const chat = { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };
  const is401 = (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, `${e.constructor.name}: ${e.message}`);
    assert.equal(e.status, 401);
    return true;
  };
  const forged = `ias_abcdefgh.${randomBytes(32).toString('base64url')}`;
  await assert.rejects(sdk(forged).chat.completions.create(chat), is401);
  await assert.rejects(sdk('not-a-key').models.list(), is401);
  await assert.rejects(sdk(forged).models.list(), (e) => is401(e) && e.code === 'invalid_api_key');

  // A key in use (cached by ingress) stops working within a second of its revocation.
  const k = write('alice', 'api_key_created', ['keys', 'create', '--name', 'e2e-revoke']);
  const client = sdk(k.key);
  for (let i = 0; i < 3; i++) assert.ok((await client.models.list()).data.length > 0);
  ok('alice', ['keys', 'revoke', k.id]);
  writes.push({ action: 'api_key_revoked', id: k.id, what: 'keys revoke' });
  // Each ingress worker caches keys for up to IAS_KEY_CACHE_TTL (1 s): requests
  // for 1.5 s, on fresh connections, must all fail from the 1 s mark on.
  const revokedAt = Date.now();
  let lastOk = null;
  let failures = 0;
  while (Date.now() - revokedAt < 1500) {
    const sentAt = Date.now() - revokedAt;
    try {
      await sdk(k.key).models.list();
      lastOk = sentAt;
    } catch (e) {
      is401(e);
      failures++;
    }
    await sleep(25);
  }
  assert.ok(lastOk === null || lastOk < 1000, `the revoked key still worked ${lastOk} ms after its revocation`);
  assert.ok(failures >= 5, `only ${failures} refused requests`);
  await assert.rejects(client.chat.completions.create(chat), is401);
  assert.equal(json('alice', ['keys', 'get', k.id]).status, 'revoked');
});

test('3. a spent budget answers 429 insufficient_quota', { skip }, async () => {
  const chat = { model: MODEL, messages: [{ role: 'user', content: 'count to ten' }], max_tokens: 10 };
  // Ingress reserves the prompt's upper bound (the body's bytes + 8 per message
  // + 64 for the template) + max_tokens; each request bills about 20. A budget
  // of one reservation + 10 serves the first, then refuses (whether the first
  // one's settle has landed or its reservation is still held).
  const budget = Buffer.byteLength(JSON.stringify(chat)) + 8 + 64 + chat.max_tokens + 10;
  write('admin', 'budget_updated', ['budgets', 'set', ORG_B, '--monthly-tokens', String(budget)]);
  writes.at(-1).id = null;
  assert.equal(json('admin', ['budgets', 'get', ORG_B]).monthly_token_limit, budget);
  const k = write('carol', 'api_key_created', ['keys', 'create', '--name', 'e2e-budget']);
  ids.carolKey = k.id;
  const client = sdk(k.key);
  let served = 0;
  let denied = null;
  for (let i = 0; i < 15 && !denied; i++) {
    try {
      await client.chat.completions.create(chat);
      served++;
    } catch (e) {
      denied = e;
    }
  }
  assert.ok(denied, `15 requests of up to ~20 tokens all passed a ${budget}-token budget (${served} served)`);
  assert.ok(denied instanceof OpenAI.RateLimitError, `${denied.constructor.name}: ${denied.message}`);
  assert.equal(denied.status, 429);
  assert.equal(denied.code, 'insufficient_quota');
  assert.ok(served >= 1, 'the budget refused even the first request');
  // Still refused, streamed or not; other orgs are unaffected.
  await assert.rejects(client.chat.completions.create({ ...chat, stream: true }),
    (e) => e instanceof OpenAI.RateLimitError && e.code === 'insufficient_quota');
});

test('4. org users cannot revoke another user\'s key: 403 in the org, 404 across orgs', { skip }, async () => {
  const k = write('bob', 'api_key_created', ['keys', 'create', '--name', 'e2e-bob']);
  const sameOrg = cli('alice', ['keys', 'revoke', k.id]);
  assert.equal(sameOrg.code, 1, sameOrg.err);
  assert.match(sameOrg.err, /HTTP 403/);
  const otherOrg = cli('carol', ['keys', 'revoke', k.id]);
  assert.equal(otherOrg.code, 1, otherOrg.err);
  assert.match(otherOrg.err, /HTTP 404/);
  const peek = cli('carol', ['keys', 'get', k.id]);
  assert.match(peek.err, /HTTP 404/);
  // The key is untouched and still serves bob.
  assert.equal(json('bob', ['keys', 'get', k.id]).status, 'active');
  assert.ok((await sdk(k.key).models.list()).data.some((m) => m.id === MODEL));
});

test('5. every write of the run is in the audit log and the chain verifies', { skip }, async () => {
  const expected = writes.map((w) => w.action).sort();
  let entries = [];
  await waitFor(() => {
    entries = json('admin', ['audit', 'list']).data;
    return entries.length >= expected.length;
  }, 20000);
  const got = entries.map((e) => e.action).sort();
  assert.deepEqual(got, expected, `audit actions differ from the CLI writes:\n${JSON.stringify(writes, null, 1)}`);
  for (const w of writes.filter((x) => x.id)) {
    assert.ok(entries.some((e) => e.action === w.action && e.resource?.id === w.id),
      `no ${w.action} entry for ${w.what} ${w.id}`);
  }
  for (const e of entries) {
    assert.equal(e.service, 'users');
    assert.equal(e.outcome, 'success');
  }
  const orgAEntries = entries.filter((e) => e.org_id === ids.orgA).length;
  assert.ok(orgAEntries > 0);

  // An org user may not read the trail; the filter by org works for the admin.
  assert.match(cli('alice', ['audit', 'list']).err, /HTTP 403/);
  assert.equal(json('admin', ['audit', 'list', '--org', ORG_A]).data.length, orgAEntries);

  // The chain verifies, including signed checkpoints (one every 5 entries).
  await waitFor(() => json('admin', ['audit', 'checkpoints']).data?.length > 0, 5000);
  const v = json('admin', ['audit', 'verify']);
  assert.equal(v.ok, true, JSON.stringify(v));
  assert.equal(v.first_mismatch, null);
  assert.equal(v.entries_checked, entries.length);
  assert.ok(v.checkpoints_checked >= 1, JSON.stringify(v));
  const table = ok('admin', ['audit', 'verify']);
  assert.equal(table.code, 0);
});
