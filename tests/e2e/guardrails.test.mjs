// Guardrails end to end: the official openai SDK -> ias-ingress (PEP, pdp
// decisions) -> ias-router (guardrail obligations) -> ias-mockllm, with ias-users
// (keys, registry) and ias-pdp (policies, profiles) on a fresh database, and the
// real Redis and RabbitMQ of the test stack. mockllm's echo mode (X-Mock-Echo: 1,
// passed on by ingress through IAS_FORWARD_HEADER_PREFIX) answers the words it
// received, so what the SDK gets back is what the model server saw.
//
//   IAS_BIN_DIR=... IAS_PG_DSN=... IAS_REDIS_URL=... IAS_AMQP_URL=... \
//     node --test tests/e2e/guardrails.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { root, binDir, stackEnv, createDb, sql, api, startService, scratchPath, seedTenant as seedTenantIn, stopAll, eventValidator, subscribeEvents, waitFor } from '../lib/harness.mjs';

const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
const env = stackEnv();
const bins = ['ingress', 'router', 'pdp', 'users', 'mockllm', 'migrate'];
const skip = !env || bins.some((b) => !existsSync(join(binDir, `ias-${b}`)))
  ? 'needs the test stack (IAS_PG_DSN, IAS_REDIS_URL, IAS_AMQP_URL) and the service binaries' : false;

const MODEL = 'mock-gpt';
const RESTRICTED = 'restricted-gpt';
const ECHO = { headers: { 'X-Mock-Echo': '1' } };
const INTERNAL = randomBytes(16).toString('hex');
const SECRET = randomBytes(32).toString('hex');
let OpenAI, db, ingress, router, amqp, validateAudit;
const procs = [];
const audits = [];
const usage = [];
let pdpUrl, admin;

function jwt(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = enc({ typ: 'access', jti: randomUUID(), iat: now, exp: now + 3600, ...claims });
  const head = enc({ alg: 'HS256', typ: 'JWT' });
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

// ---- seeding ----

const seedTenant = () => seedTenantIn(db.dsn);

const sdk = (key) => new OpenAI({ apiKey: key, baseURL: `${ingress.url}/v1`, maxRetries: 0, timeout: 20000 });


let tA, tB, tC;

before(async () => {
  if (skip) return;
  ({ default: OpenAI } = await import(require.resolve('openai')));
  validateAudit = eventValidator('audit.recorded.v1');

  db = createDb('guardrails');
  const mock = await startService('mockllm', { IAS_MOCK_MAX_TOKENS_DEFAULT: '64' });
  procs.push(mock);
  sql(db.dsn, `INSERT INTO models (name, context_length) VALUES ('${MODEL}', 8192), ('${RESTRICTED}', 8192)`);
  sql(db.dsn, `INSERT INTO model_backends (model_id, url) SELECT id, '${mock.url}' FROM models`);
  tA = seedTenant(); // prompt profile: deny "password:" and redact e-mail
  tB = seedTenant(); // output profile: deny-phrase and redact
  tC = seedTenant(); // no guardrails

  const spool = (n) => scratchPath(n);
  const common = { IAS_INTERNAL_TOKEN: INTERNAL, IAS_JWT_SECRET: SECRET };
  const users = await startService('users', { ...common, IAS_PG_DSN: db.dsn, IAS_SPOOL_DIR: spool('users') });
  procs.push(users);
  const pdp = await startService('pdp', { ...common, IAS_PG_DSN: db.dsn, IAS_SPOOL_DIR: spool('pdp') });
  procs.push(pdp);

  // Audit events of the router, checked against the schema.
  amqp = await subscribeEvents(['audit.router.#', 'usage.recorded'], (e) => {
    if (e.key === 'usage.recorded') usage.push(e.body);
    else audits.push({ key: e.key, body: e.body });
  });

  pdpUrl = pdp.url;
  admin = jwt({ sub: randomUUID(), org: '', role: 'system_admin' });
  const profile = async (name, document) => {
    const r = await api(pdp.url, 'POST', '/api/v1/guardrails', { token: admin, body: { scope: 'global', name, document } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  };
  await profile('pii', {
    prompt: { deny: [{ id: 'pw', regex: 'password[ ]*[:=]', case_insensitive: true, message: 'no passwords' }], redact: ['email'] },
  });
  await profile('outguard', {
    output: {
      holdback: 32,
      rules: [
        { id: 'bomb', action: 'deny', phrase: 'purple elephant', case_insensitive: true },
        { id: 'acct', action: 'redact', regex: 'acct-[0-9]{4,8}', replacement: '[account]' },
      ],
    },
  });
  const pol = await api(pdp.url, 'POST', '/api/v1/policies', {
    token: admin,
    body: {
      scope: 'global',
      document: {
        default_effect: 'allow',
        rules: [
          { id: 'no-restricted', effect: 'deny', message: 'restricted model', match: { resource: { model: [RESTRICTED] } } },
          { id: 'pii-for-a', effect: 'allow', match: { subject: { org_id: [tA.org] } }, obligations: { guardrails: ['pii'] } },
          { id: 'out-for-b', effect: 'allow', match: { subject: { org_id: [tB.org] } }, obligations: { guardrails: ['outguard'] } },
        ],
      },
    },
  });
  assert.equal(pol.status, 201, JSON.stringify(pol.body));

  router = await startService('router', {
    ...common, IAS_USERS_URL: users.url, IAS_PDP_URL: pdp.url, IAS_SPOOL_DIR: spool('router'),
  });
  procs.push(router);
  ingress = await startService('ingress', {
    ...common, IAS_USERS_URL: users.url, IAS_ROUTER_URL: router.url, IAS_PDP_URL: pdp.url,
    IAS_FORWARD_HEADER_PREFIX: 'X-Mock-',
  });
  procs.push(ingress);
});

after(async () => {
  if (skip) return;
  const stopErr = await stopAll(procs);
  await amqp?.close();
  db?.drop();
  if (stopErr) throw stopErr;
});

const chat = (content, extra = {}) => ({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: 64, ...extra });

test('a model denied by policy gives 403 PermissionDeniedError', { skip }, async () => {
  await assert.rejects(sdk(tC.key).chat.completions.create({ ...chat('hi'), model: RESTRICTED }), (e) => {
    assert.ok(e instanceof OpenAI.PermissionDeniedError, e.constructor.name);
    assert.equal(e.status, 403);
    assert.equal(e.code, 'policy_denied');
    assert.match(e.message, /no-restricted/);
    return true;
  });
  // the allowed model still works for the same key
  const ok = await sdk(tC.key).chat.completions.create(chat('hello there', { max_tokens: 4 }));
  assert.equal(ok.choices[0].message.content.split(' ').length, 4);
});

test('a redacted e-mail never reaches mockllm; a denied prompt is a 400', { skip }, async () => {
  const prompt = 'mail alice.smith@example.com today';
  const r = await sdk(tA.key).chat.completions.create(chat(prompt), ECHO);
  // echo mode: the answer is the words mockllm received
  assert.equal(r.choices[0].message.content, 'mail [REDACTED_EMAIL] today');

  const stream = await sdk(tA.key).chat.completions.create(chat(prompt, { stream: true }), ECHO);
  let text = '';
  for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? '';
  assert.equal(text, 'mail [REDACTED_EMAIL] today');
  assert.doesNotMatch(text, /alice/);

  // Without the obligation (org C) the same prompt goes through untouched.
  const plain = await sdk(tC.key).chat.completions.create(chat(prompt), ECHO);
  assert.equal(plain.choices[0].message.content, prompt);

  await assert.rejects(sdk(tA.key).chat.completions.create(chat('my Password: hunter2'), ECHO), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
    assert.equal(e.code, 'content_policy_violation');
    assert.match(e.message, /pw/);
    return true;
  });
  const ev = await waitFor(() => audits.find((a) => a.body.org_id === tA.org && a.body.details.rule === 'pw'));
  assert.ok(ev, 'audit event for the denied prompt');
  assert.equal(ev.key, 'audit.router.guardrail_violation');
  assert.equal(ev.body.details.action, 'deny');
  assert.ok(validateAudit(ev.body), JSON.stringify(validateAudit.errors));
  const red = audits.find((a) => a.body.org_id === tA.org && a.body.details.rule === 'pii:email');
  assert.ok(red && red.body.details.action === 'redact' && red.body.request_id);
});

test('a deny-phrase in the output ends the stream with content_filter', { skip }, async () => {
  // Output-only profile: the prompt passes, the echoed answer carries the phrase.
  const prompt = 'one two three four purple elephant five six seven';
  const stream = await sdk(tB.key).chat.completions.create(chat(prompt, { stream: true }), ECHO);
  let text = '';
  const finishes = [];
  for await (const ch of stream) {
    const c = ch.choices[0];
    if (!c) continue;
    text += c.delta?.content ?? '';
    if (c.finish_reason) finishes.push(c.finish_reason);
  }
  assert.deepEqual(finishes, ['content_filter']);
  assert.equal(text.trim(), 'one two three four');
  assert.doesNotMatch(text, /purple|five/i);
  // upstream was cancelled at the match: billed are the 6 generated tokens
  const u = await waitFor(() => usage.find((e) => e.org_id === tB.org && e.stream));
  assert.ok(u, 'usage event of the stopped stream');
  assert.equal(u.completion_tokens, 6);
  assert.equal(u.aborted, false);

  // Output redaction; the rest of the text intact.
  const s2 = await sdk(tB.key).chat.completions.create(chat('pay acct-123456 now please', { stream: true }), ECHO);
  let t2 = '';
  let fin2;
  for await (const ch of s2) {
    t2 += ch.choices[0]?.delta?.content ?? '';
    fin2 = ch.choices[0]?.finish_reason ?? fin2;
  }
  assert.equal(t2, 'pay [account] now please');
  assert.equal(fin2, 'stop');

  const whole = await sdk(tB.key).chat.completions.create(chat(prompt), ECHO);
  assert.equal(whole.choices[0].finish_reason, 'content_filter');
  assert.equal(whole.choices[0].message.content.trim(), 'one two three four');

  const ev = await waitFor(() => audits.find((a) => a.body.org_id === tB.org && a.body.details.rule === 'bomb'));
  assert.ok(ev, 'audit event for the output deny');
  assert.equal(ev.body.details.side, 'output');
  assert.ok(validateAudit(ev.body), JSON.stringify(validateAudit.errors));
});

test('prompt rules cannot read token ids (400); output rules follow one choice only (400)', { skip }, async () => {
  // Org A's profile has prompt rules: a token-id prompt would pass them unchecked.
  for (const prompt of [[1, 2, 3], [[1, 2], [3]]]) {
    await assert.rejects(sdk(tA.key).completions.create({ model: MODEL, prompt, max_tokens: 2 }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
      assert.equal(e.param, 'prompt');
      assert.match(e.message, /Token-id prompts are not supported under prompt guardrails/);
      return true;
    });
  }
  // Text prompts, one or several, are checked and redacted one by one.
  const texts = await sdk(tA.key).completions.create(
    { model: MODEL, prompt: ['mail bob@example.com', 'plain words'] }, ECHO);
  assert.deepEqual(texts.choices.map((c) => c.text), ['mail [REDACTED_EMAIL]', 'plain words']);
  await assert.rejects(sdk(tA.key).completions.create({ model: MODEL, prompt: ['fine', 'password: x'] }, ECHO),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'content_policy_violation');

  // Org B's profile has output rules only: token ids are fine, several choices are not.
  const ids = await sdk(tB.key).completions.create({ model: MODEL, prompt: [4, 5, 6] }, ECHO);
  assert.equal(ids.choices[0].text, '4 5 6');
  await assert.rejects(sdk(tB.key).chat.completions.create(chat('hi', { n: 2 })), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
    assert.equal(e.param, 'n');
    assert.match(e.message, /More than one choice/);
    return true;
  });
  await assert.rejects(sdk(tB.key).completions.create({ model: MODEL, prompt: ['a', 'b'], max_tokens: 2 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
    assert.equal(e.param, 'prompt');
    return true;
  });
  // Without guardrails (org C) all of it goes through.
  const free = await sdk(tC.key).chat.completions.create(chat('hi', { n: 2, max_tokens: 2 }));
  assert.equal(free.choices.length, 2);
  const freeIds = await sdk(tC.key).completions.create({ model: MODEL, prompt: [[1, 2], [3]], max_tokens: 2 });
  assert.equal(freeIds.choices.length, 2);
});

test('embeddings: prompt rules check and redact text inputs, refuse token ids; output rules do not apply', { skip }, async () => {
  // Org A (prompt rules): a denied word in any input refuses the request.
  for (const input of ['my Password: hunter2', ['fine', 'password= x']]) {
    await assert.rejects(sdk(tA.key).embeddings.create({ model: MODEL, input }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
      assert.equal(e.code, 'content_policy_violation');
      assert.match(e.message, /pw/);
      return true;
    });
  }
  // Redaction: mockllm's vectors are seeded from the text it received, so A's
  // vector of the e-mail equals the vector of the redacted text sent by C.
  const red = await sdk(tA.key).embeddings.create({ model: MODEL, input: ['mail bob@example.com', 'plain words'] });
  const want = await sdk(tC.key).embeddings.create({ model: MODEL, input: ['mail [REDACTED_EMAIL]', 'plain words'] });
  assert.deepEqual(red.data.map((d) => d.embedding), want.data.map((d) => d.embedding));
  const raw = await sdk(tC.key).embeddings.create({ model: MODEL, input: 'mail bob@example.com' });
  assert.notDeepEqual(raw.data[0].embedding, red.data[0].embedding);
  // Token ids cannot be read by prompt rules: 400, as for completions.
  for (const input of [[1, 2, 3], [[1, 2], [3]]]) {
    await assert.rejects(sdk(tA.key).embeddings.create({ model: MODEL, input }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
      assert.equal(e.param, 'input');
      assert.match(e.message, /Token-id inputs are not supported under prompt guardrails/);
      return true;
    });
  }
  // Org B (output rules only): vectors carry no text; several inputs and ids pass.
  const out = await sdk(tB.key).embeddings.create({ model: MODEL, input: ['purple elephant', 'b'] });
  assert.equal(out.data.length, 2);
  const ids = await sdk(tB.key).embeddings.create({ model: MODEL, input: [[4, 5], [6]] });
  assert.equal(ids.data.length, 2);
  const ev = await waitFor(() => audits.find((a) => a.body.org_id === tA.org && a.body.details.rule === 'pw' &&
    a.body.request_id && a.body.details.side === 'prompt'));
  assert.ok(ev && validateAudit(ev.body), JSON.stringify(validateAudit.errors));
});

test('router without a pdp refuses requests that carry guardrails (503)', { skip }, async () => {
  const bare = await startService('router', {
    IAS_USERS_URL: 'http://127.0.0.1:1', IAS_REGISTRY_FILE: writeRegistry(), IAS_SPOOL_DIR: scratchPath('r2'),
  });
  try {
    const h = { 'X-Ias-Org-Id': randomUUID(), 'Content-Type': 'application/json' };
    const body = JSON.stringify(chat('hi', { max_tokens: 2 }));
    const ok = await fetch(`${bare.url}/v1/chat/completions`, { method: 'POST', headers: h, body });
    assert.equal(ok.status, 200);
    const r = await fetch(`${bare.url}/v1/chat/completions`, {
      method: 'POST', headers: { ...h, 'X-Ias-Guardrails': randomUUID() }, body,
    });
    assert.equal(r.status, 503);
    assert.equal((await r.json()).error.code, 'guardrails_unavailable');
    const bad = await fetch(`${bare.url}/v1/chat/completions`, {
      method: 'POST', headers: { ...h, 'X-Ias-Guardrails': 'not-a-uuid' }, body,
    });
    assert.equal(bad.status, 400);
  } finally {
    await bare.stop();
  }
});

test('a policy change reaches the ingress decision cache within 1.5 s', { skip }, async () => {
  const t = seedTenant();
  await sdk(t.key).chat.completions.create(chat('warm the cache', { max_tokens: 2 }));
  const r = await api(pdpUrl, 'POST', '/api/v1/policies', {
    token: admin,
    body: { scope: 'org', org_id: t.org, document: { rules: [{ id: 'org-off', effect: 'deny', match: { resource: { model: [MODEL] } } }] } },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const t0 = Date.now();
  let denied = false;
  while (!denied && Date.now() - t0 < 1500) {
    try {
      await sdk(t.key).chat.completions.create(chat('again', { max_tokens: 2 }));
      await new Promise((res) => setTimeout(res, 50));
    } catch (e) {
      assert.ok(e instanceof OpenAI.PermissionDeniedError, e.constructor.name);
      assert.match(e.message, /org-off/);
      denied = true;
    }
  }
  assert.ok(denied, 'still allowed 1.5 s after the policy change');
});

function writeRegistry() {
  const mockUrl = sql(db.dsn, `SELECT url FROM model_backends LIMIT 1`)[0][0];
  const file = `${scratchPath('registry')}.json`;
  const doc = {
    version: 'v1',
    models: [{ id: randomUUID(), name: MODEL, context_length: 8192, fallback_model: null, tags: [],
      backends: [{ id: randomUUID(), url: mockUrl, weight: 1, upstream_model: null }] }],
  };
  require('node:fs').writeFileSync(file, JSON.stringify(doc));
  return file;
}
