// POST /v1/embeddings through the platform, with the official openai SDK:
// every "input" form (a string, strings, token ids, arrays of token ids), float
// and base64 vectors (the SDK asks for base64 by default and decodes it),
// metering (the budget reserve, the settle and the usage.recorded.v1 event,
// checked against its schema) and OpenAI-shaped errors.
//
//   SDK -> ias-ingress -> ias-router -> ias-mockllm, with ias-users on a fresh
//   database and the real Redis and RabbitMQ of the test stack.
//
//   IAS_BIN_DIR=... IAS_PG_DSN=... IAS_REDIS_URL=... IAS_AMQP_URL=... \
//     node --test tests/e2e/embeddings.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { root, binDir, stackEnv, createDb, sql, startService, scratchPath, seedTenant as seedTenantIn, stopAll, eventValidator, subscribeEvents, startInferencePath, settledBudget, expectBadRequest, waitFor, budgetOf } from '../lib/harness.mjs';

const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
const env = stackEnv();
const bins = ['ingress', 'router', 'users', 'mockllm', 'migrate'];
const skip = !env || bins.some((b) => !existsSync(join(binDir, `ias-${b}`)))
  ? 'needs the test stack (IAS_PG_DSN, IAS_REDIS_URL, IAS_AMQP_URL) and the service binaries' : false;

const MODEL = 'mock-gpt';
const CONTEXT = 8192;
const DIMS = 16; // mockllm's vector size when no "dimensions" is given
const INTERNAL = randomBytes(16).toString('hex');
let OpenAI, db, ingress, amqp, validateUsage;
const procs = [];
const usage = [];

const seedTenant = (opts = {}) => seedTenantIn(db.dsn, opts);
const sdk = (key) => new OpenAI({ apiKey: key, baseURL: `${ingress.url}/v1`, maxRetries: 0, timeout: 20000 });

/** What ingress reserves for a text request's inputs, an upper bound no
 * tokenizer exceeds (ias_openai_prompt_tokens_max): the bytes the SDK sends
 * (it adds encoding_format when the caller did not) plus 8 per input plus 64. */
function inputMax(body) {
  const sent = { ...body, encoding_format: body.encoding_format || 'base64' };
  const inputs = Array.isArray(body.input) ? body.input.length : 1;
  return Buffer.byteLength(JSON.stringify(sent)) + 8 * inputs + 64;
}

/** The org's budget once the router's settle has landed (nothing reserved). */


const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
/** A base64 embedding as OpenAI and vLLM send it: little-endian float32. */
function decode(b64) {
  const buf = Buffer.from(b64, 'base64');
  return Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(4 * i));
}


before(async () => {
  if (skip) return;
  ({ default: OpenAI } = await import(require.resolve('openai')));
  validateUsage = eventValidator('usage.recorded.v1');

  db = createDb('embed');
  ({ ingress } = await startInferencePath(db, procs, { model: MODEL, context: CONTEXT, internalToken: INTERNAL }));
  amqp = await subscribeEvents(['usage.recorded'], (e) => usage.push(e.body));
});

after(async () => {
  if (skip) return;
  const stopErr = await stopAll(procs);
  await amqp?.close();
  db?.drop();
  if (stopErr) throw stopErr;
});

test('a string: one unit vector, deterministic; float and base64 agree', { skip }, async () => {
  const t = seedTenant();
  const c = sdk(t.key);
  const f = await c.embeddings.create({ model: MODEL, input: 'hello world', encoding_format: 'float' });
  assert.equal(f.object, 'list');
  assert.equal(f.model, MODEL);
  assert.equal(f.data.length, 1);
  assert.equal(f.data[0].object, 'embedding');
  assert.equal(f.data[0].index, 0);
  assert.equal(f.data[0].embedding.length, DIMS);
  assert.ok(Math.abs(norm(f.data[0].embedding) - 1) < 1e-5);
  // mockllm counts words + 1, as for a completion prompt
  assert.deepEqual(f.usage, { prompt_tokens: 3, total_tokens: 3 });

  // No encoding_format: the SDK asks for base64 and decodes it.
  const d = await c.embeddings.create({ model: MODEL, input: 'hello world' });
  assert.deepEqual(d.data[0].embedding, f.data[0].embedding);
  // Asked for explicitly, base64 comes back as the string: little-endian float32.
  const b = await c.embeddings.create({ model: MODEL, input: 'hello world', encoding_format: 'base64' });
  assert.equal(typeof b.data[0].embedding, 'string');
  assert.deepEqual(decode(b.data[0].embedding), f.data[0].embedding);

  const other = await c.embeddings.create({ model: MODEL, input: 'hello there', encoding_format: 'float' });
  assert.notDeepEqual(other.data[0].embedding, f.data[0].embedding);
});

test('an array of strings, token ids, arrays of token ids; dimensions', { skip }, async () => {
  const t = seedTenant({ budget: 100000 });
  const c = sdk(t.key);
  const one = await c.embeddings.create({ model: MODEL, input: 'three', encoding_format: 'float' });
  const arr = await c.embeddings.create({ model: MODEL, input: ['one two', 'three'], encoding_format: 'float' });
  assert.deepEqual(arr.data.map((x) => x.index), [0, 1]);
  assert.deepEqual(arr.data[1].embedding, one.data[0].embedding);
  assert.deepEqual(arr.usage, { prompt_tokens: 5, total_tokens: 5 });

  // token ids count one each
  const ids = await c.embeddings.create({ model: MODEL, input: [101, 2023, 2003] });
  assert.equal(ids.data.length, 1);
  assert.equal(ids.data[0].embedding.length, DIMS);
  assert.equal(ids.usage.prompt_tokens, 3);
  const many = await c.embeddings.create({ model: MODEL, input: [[101, 2023, 2003], [7, 8]] });
  assert.deepEqual(many.data.map((x) => x.index), [0, 1]);
  assert.deepEqual(many.data[0].embedding, ids.data[0].embedding);
  assert.equal(many.usage.prompt_tokens, 5);

  const small = await c.embeddings.create({ model: MODEL, input: ['a', 'b'], dimensions: 4 });
  for (const x of small.data) assert.equal(x.embedding.length, 4);

  // billed: the prompt tokens the backend reported, nothing else
  const b = await settledBudget(t.org);
  assert.deepEqual(b, { used: 2 + 5 + 3 + 5 + 4, reserved: 0 }); // "three" = 1 word + 1
});

test('usage.recorded.v1: prompt_tokens as billed, completion 0, stream false', { skip }, async () => {
  const t = seedTenant({ budget: 1000 });
  const r = await sdk(t.key).embeddings.create({ model: MODEL, input: ['alpha beta gamma', 'delta'] });
  assert.equal(r.usage.prompt_tokens, 6);
  const ev = await waitFor(() => usage.find((e) => e.org_id === t.org));
  assert.ok(ev, 'usage event');
  assert.ok(validateUsage(ev), JSON.stringify(validateUsage.errors));
  assert.equal(ev.model, MODEL);
  assert.equal(ev.prompt_tokens, 6);
  assert.equal(ev.completion_tokens, 0);
  assert.equal(ev.stream, false);
  assert.equal(ev.aborted, false);
  assert.equal(ev.status, 200);
  assert.equal(ev.user_id, t.user);
  assert.deepEqual(await settledBudget(t.org), { used: 6, reserved: 0 });
});

test('a budget too small for the input: 429 insufficient_quota, nothing booked', { skip }, async () => {
  // Ingress reserves an upper bound of the input (see inputMax): a budget that
  // covers a small input's exactly refuses 400 bytes of input.
  const small = { model: MODEL, input: 'hello world' };
  const t = seedTenant({ budget: inputMax(small) });
  await assert.rejects(sdk(t.key).embeddings.create({ model: MODEL, input: 'word '.repeat(80) }), (e) => {
    assert.ok(e instanceof OpenAI.RateLimitError, `${e.constructor.name} ${e.message}`);
    assert.equal(e.code, 'insufficient_quota');
    return true;
  });
  assert.deepEqual(budgetOf(t.org), { used: 0, reserved: 0 });
  // The small input fits the same budget; the settle books what was billed (3).
  const ok = await sdk(t.key).embeddings.create(small);
  assert.equal(ok.usage.prompt_tokens, 3);
  assert.deepEqual(await settledBudget(t.org), { used: 3, reserved: 0 });
});

test('errors: unknown model 404, missing or malformed input 400 naming it', { skip }, async () => {
  const t = seedTenant();
  const c = sdk(t.key);
  await assert.rejects(c.embeddings.create({ model: 'no-such-model', input: 'x' }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, e.constructor.name);
    assert.equal(e.code, 'model_not_found');
    assert.equal(e.param, 'model');
    return true;
  });
  await assert.rejects(c.embeddings.create({ model: MODEL }), expectBadRequest('input', /'input' is a required property/));
  await assert.rejects(c.embeddings.create({ model: MODEL, input: [] }), expectBadRequest('input', /empty array/));
  await assert.rejects(c.embeddings.create({ model: MODEL, input: ['a', 3] }),
    expectBadRequest('input[1]', /expected a string, but got an integer/));
  await assert.rejects(c.embeddings.create({ model: MODEL, input: [[1], [-1]] }),
    expectBadRequest('input[1][0]', /Expected a value >= 0/));
  await assert.rejects(c.embeddings.create({ model: MODEL, input: Array(2049).fill('a') }),
    expectBadRequest('input', /maximum length 2048/));
  await assert.rejects(c.embeddings.create({ model: MODEL, input: 'x', encoding_format: 'int8' }),
    expectBadRequest('encoding_format'));
  await assert.rejects(c.embeddings.create({ model: MODEL, input: 'x', dimensions: 0 }), expectBadRequest('dimensions'));
  await assert.rejects(sdk('sk-not-an-ias-key').embeddings.create({ model: MODEL, input: 'x' }), OpenAI.AuthenticationError);
  // a backend failure is retried, then answered in OpenAI's shape
  await assert.rejects(c.embeddings.create({ model: MODEL, input: 'x' }, { headers: { 'X-Mock-Fault': 'status=503' } }),
    (e) => e.status === 502 || e.status === 503);
});
