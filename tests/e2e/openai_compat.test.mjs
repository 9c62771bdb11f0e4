// OpenAI compatibility through the platform, with the official openai SDK:
// n > 1 (chat and completions, streaming and not), every "prompt" form of the
// legacy completions endpoint (a string, strings, token ids, arrays of token
// ids), OpenAI-shaped 400s naming the parameter, and budgets that reserve for
// every completion a request asks for (n x prompts), so that the settle can
// never book more than was reserved.
//
//   SDK -> ias-ingress -> ias-router -> ias-mockllm, with ias-users on a fresh
//   database and the real Redis and RabbitMQ of the test stack.
//
//   IAS_BIN_DIR=... IAS_PG_DSN=... IAS_REDIS_URL=... IAS_AMQP_URL=... \
//     node --test tests/e2e/openai_compat.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { root, binDir, stackEnv, createDb, sql, startService, scratchPath, seedTenant as seedTenantIn, budgetOf, stopAll, startInferencePath, settledBudget, expectBadRequest } from '../lib/harness.mjs';

const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
const env = stackEnv();
const bins = ['ingress', 'router', 'users', 'mockllm', 'migrate'];
const skip = !env || bins.some((b) => !existsSync(join(binDir, `ias-${b}`)))
  ? 'needs the test stack (IAS_PG_DSN, IAS_REDIS_URL, IAS_AMQP_URL) and the service binaries' : false;

const MODEL = 'mock-gpt';
const CONTEXT = 8192;
const INTERNAL = randomBytes(16).toString('hex');
let OpenAI, db, ingress;
const procs = [];

const seedTenant = (opts = {}) => seedTenantIn(db.dsn, opts);
const sdk = (key) => new OpenAI({ apiKey: key, baseURL: `${ingress.url}/v1`, maxRetries: 0, timeout: 20000 });

/** The org's budget once the router's settle has landed (nothing reserved). */

async function collect(stream) {
  const chunks = [];
  for await (const ch of stream) chunks.push(ch);
  return chunks;
}

/** Text per choice index of a stream's chunks (chat deltas or completion text). */
function textByIndex(chunks) {
  const out = new Map();
  for (const ch of chunks) {
    for (const c of ch.choices) {
      out.set(c.index, (out.get(c.index) ?? '') + (c.delta?.content ?? c.text ?? ''));
    }
  }
  return out;
}


before(async () => {
  if (skip) return;
  ({ default: OpenAI } = await import(require.resolve('openai')));
  db = createDb('compat');
  ({ ingress } = await startInferencePath(db, procs, { model: MODEL, context: CONTEXT, internalToken: INTERNAL }));
});

after(async () => {
  if (skip) return;
  const stopErr = await stopAll(procs);
  db?.drop();
  if (stopErr) throw stopErr;
});

const messages = [{ role: 'user', content: 'hello there' }];
// mockllm's count: 2 words + 3 per message + 3
const CHAT_PROMPT = 8;

/** What ingress reserves for a request's prompt(s), an upper bound no
 * tokenizer exceeds (ias_openai_prompt_tokens_max): token ids exactly, text
 * the bytes the SDK sends plus 8 per message or prompt plus 64 for the chat
 * template. */
function promptMax(body) {
  const p = body.prompt;
  if (Array.isArray(p) && typeof p[0] === 'number') return p.length;
  const prompts = body.messages ? body.messages.length : Array.isArray(p) ? p.length : 1;
  return Buffer.byteLength(JSON.stringify(body)) + 8 * prompts + 64;
}

// ---- n > 1 ----

test('chat n: 2, non-streaming: two choices, usage sums both', { skip }, async () => {
  const t = seedTenant();
  const r = await sdk(t.key).chat.completions.create({ model: MODEL, messages, max_tokens: 5, n: 2 });
  assert.equal(r.choices.length, 2);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
  for (const c of r.choices) {
    assert.equal(c.message.role, 'assistant');
    assert.equal(c.message.content.split(' ').length, 5);
    assert.equal(c.finish_reason, 'length');
  }
  assert.notEqual(r.choices[0].message.content, r.choices[1].message.content);
  assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens],
    [CHAT_PROMPT, 10, CHAT_PROMPT + 10]);
  // choice 0 is what n = 1 answers
  const one = await sdk(t.key).chat.completions.create({ model: MODEL, messages, max_tokens: 5 });
  assert.equal(one.choices[0].message.content, r.choices[0].message.content);
});

test('chat n: 2, streaming: interleaved choices, usage sums both', { skip }, async () => {
  const t = seedTenant({ budget: 100000 });
  const c = sdk(t.key);
  const full = await c.chat.completions.create({ model: MODEL, messages, max_tokens: 4, n: 2 });
  const chunks = await collect(await c.chat.completions.create({
    model: MODEL, messages, max_tokens: 4, n: 2, stream: true, stream_options: { include_usage: true },
  }));
  // a role event per choice, then one token of each choice per round
  assert.deepEqual(chunks.slice(0, 2).map((ch) => [ch.choices[0].index, ch.choices[0].delta.role]),
    [[0, 'assistant'], [1, 'assistant']]);
  assert.deepEqual(chunks.slice(2, 6).map((ch) => ch.choices[0].index), [0, 1, 0, 1]);
  const text = textByIndex(chunks);
  assert.equal(text.get(0), full.choices[0].message.content);
  assert.equal(text.get(1), full.choices[1].message.content);
  const finishes = chunks.flatMap((ch) => ch.choices.filter((x) => x.finish_reason).map((x) => [x.index, x.finish_reason]));
  assert.deepEqual(finishes, [[0, 'length'], [1, 'length']]);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, { prompt_tokens: CHAT_PROMPT, completion_tokens: 8, total_tokens: CHAT_PROMPT + 8 });
  // billed: both calls, every choice
  const b = await settledBudget(t.org);
  assert.deepEqual(b, { used: 2 * (CHAT_PROMPT + 8), reserved: 0 });
});

// ---- prompt forms ----

test('completions: an array of strings, with n', { skip }, async () => {
  const t = seedTenant();
  const c = sdk(t.key);
  const r = await c.completions.create({ model: MODEL, prompt: ['one two', 'three'], max_tokens: 3 });
  assert.equal(r.object, 'text_completion');
  assert.deepEqual(r.choices.map((x) => x.index), [0, 1]);
  for (const x of r.choices) assert.equal(x.text.split(' ').length, 3);
  // each prompt once: (2 + 1) + (1 + 1) BOS
  assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens], [5, 6]);
  // each prompt alone gives the same text as its choice
  const alone = await c.completions.create({ model: MODEL, prompt: 'three', max_tokens: 3 });
  assert.equal(alone.choices[0].text, r.choices[1].text);

  // n per prompt: index = prompt * n + sample
  const rn = await c.completions.create({ model: MODEL, prompt: ['one two', 'three'], max_tokens: 3, n: 2 });
  assert.deepEqual(rn.choices.map((x) => x.index), [0, 1, 2, 3]);
  assert.equal(rn.choices[0].text, r.choices[0].text);
  assert.equal(rn.choices[2].text, r.choices[1].text);
  assert.deepEqual([rn.usage.prompt_tokens, rn.usage.completion_tokens], [5, 12]);

  const chunks = await collect(await c.completions.create({
    model: MODEL, prompt: ['one two', 'three'], max_tokens: 3, n: 2, stream: true, stream_options: { include_usage: true },
  }));
  const text = textByIndex(chunks);
  assert.deepEqual([...text.keys()].sort(), [0, 1, 2, 3]);
  for (const x of rn.choices) assert.equal(text.get(x.index), x.text);
  assert.deepEqual([chunks.at(-1).usage.prompt_tokens, chunks.at(-1).usage.completion_tokens], [5, 12]);
});

test('completions: token ids, and arrays of token ids', { skip }, async () => {
  const t = seedTenant({ budget: 100000 });
  const c = sdk(t.key);
  const r = await c.completions.create({ model: MODEL, prompt: [101, 2023, 2003], max_tokens: 4 });
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].text.split(' ').length, 4);
  // token ids count exactly: one each, no BOS
  assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens], [3, 4]);
  // deterministic, seeded from the ids
  const again = await c.completions.create({ model: MODEL, prompt: [101, 2023, 2003], max_tokens: 4 });
  assert.equal(again.choices[0].text, r.choices[0].text);

  const many = await c.completions.create({ model: MODEL, prompt: [[101, 2023, 2003], [7, 8]], max_tokens: 2 });
  assert.deepEqual(many.choices.map((x) => x.index), [0, 1]);
  assert.equal(many.choices[0].text, r.choices[0].text.split(' ').slice(0, 2).join(' '));
  assert.deepEqual([many.usage.prompt_tokens, many.usage.completion_tokens], [5, 4]);

  const chunks = await collect(await c.completions.create({
    model: MODEL, prompt: [[101, 2023, 2003], [7, 8]], max_tokens: 2, stream: true, stream_options: { include_usage: true },
  }));
  const text = textByIndex(chunks);
  assert.equal(text.get(0), many.choices[0].text);
  assert.equal(text.get(1), many.choices[1].text);
  assert.equal(chunks.at(-1).usage.prompt_tokens, 5);

  // echo mode shows what the model server received: the ids, untouched
  const echo = await c.completions.create({ model: MODEL, prompt: [5, 6, 7] }, { headers: { 'X-Mock-Echo': '1' } });
  assert.equal(echo.choices[0].text, '5 6 7');
  const b = await settledBudget(t.org);
  assert.equal(b.reserved, 0);
});

test('invalid n and prompt forms: BadRequestError naming the parameter', { skip }, async () => {
  const t = seedTenant();
  const c = sdk(t.key);
  await assert.rejects(c.chat.completions.create({ model: MODEL, messages, n: 0 }),
    expectBadRequest('n', /Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead\./));
  await assert.rejects(c.chat.completions.create({ model: MODEL, messages, n: 129 }),
    expectBadRequest('n', /Expected a value <= 128, but got 129 instead\./));
  await assert.rejects(c.chat.completions.create({ model: MODEL, messages, n: 1.5 }),
    expectBadRequest('n', /Invalid type for 'n': expected an integer, but got a decimal instead\./));
  await assert.rejects(c.completions.create({ model: MODEL, prompt: 'x', n: 129 }), expectBadRequest('n'));
  await assert.rejects(c.completions.create({ model: MODEL, prompt: 'x', n: 3, best_of: 2 }),
    expectBadRequest('best_of', /best_of must be greater than or equal to n \(3\)/));
  await assert.rejects(c.completions.create({ model: MODEL, prompt: 'x', best_of: 2, stream: true }),
    expectBadRequest('best_of', /cannot be used with stream/));
  await assert.rejects(c.completions.create({ model: MODEL, prompt: ['a', 'b', 3] }),
    expectBadRequest('prompt[2]', /Invalid type for 'prompt\[2\]': expected a string, but got an integer instead\./));
  await assert.rejects(c.completions.create({ model: MODEL, prompt: [1, 'a'] }),
    expectBadRequest('prompt[1]', /expected an integer, but got a string/));
  await assert.rejects(c.completions.create({ model: MODEL, prompt: [[1, 2], []] }),
    expectBadRequest('prompt[1]', /Invalid 'prompt\[1\]': empty array/));
  await assert.rejects(c.completions.create({ model: MODEL, prompt: [[1, 2], [3, 'x']] }),
    expectBadRequest('prompt[1][1]', /expected an integer, but got a string/));
  await assert.rejects(c.completions.create({ model: MODEL, prompt: [-1] }),
    expectBadRequest('prompt[0]', /Expected a value >= 0, but got -1 instead\./));
  await assert.rejects(c.completions.create({ model: MODEL, prompt: [] }), expectBadRequest('prompt', /empty array/));
});

// ---- budgets ----

test('a budget that covers one completion but not k refuses k (429 insufficient_quota)', { skip }, async () => {
  // Each budget covers the request's prompt (ingress's bound of it) plus
  // max_tokens once, not its k completions of max_tokens.
  const cases = [
    ['chat n: 4', (c, b) => c.chat.completions.create(b), { model: MODEL, messages, max_tokens: 50, n: 4 }],
    ['4 prompts', (c, b) => c.completions.create(b), { model: MODEL, prompt: ['a', 'b', 'c', 'd'], max_tokens: 50 }],
    ['2 prompts x n: 2', (c, b) => c.completions.create(b), { model: MODEL, prompt: ['a', 'b'], max_tokens: 50, n: 2 }],
    ['token ids x n: 3', (c, b) => c.completions.create(b), { model: MODEL, prompt: [1, 2, 3, 4, 5], max_tokens: 40, n: 3 }],
    // best_of candidates are generated and billed, though only n come back
    ['best_of: 4', (c, b) => c.completions.create(b), { model: MODEL, prompt: 'a', max_tokens: 50, best_of: 4 }],
  ];
  for (const [name, call, body] of cases) {
    const t = seedTenant({ budget: promptMax(body) + body.max_tokens });
    await assert.rejects(call(sdk(t.key), body), (e) => {
      assert.ok(e instanceof OpenAI.RateLimitError, `${name}: ${e.constructor.name} ${e.message}`);
      assert.equal(e.code, 'insufficient_quota', name);
      return true;
    });
    assert.deepEqual(budgetOf(t.org), { used: 0, reserved: 0 }, name);
  }
  // The same kind of budget takes one completion of 50.
  const one = { model: MODEL, prompt: 'a', max_tokens: 50 };
  const t = seedTenant({ budget: promptMax(one) + 50 });
  const ok = await sdk(t.key).completions.create(one);
  assert.equal(ok.usage.completion_tokens, 50);
  const b = await settledBudget(t.org);
  assert.deepEqual(b, { used: ok.usage.total_tokens, reserved: 0 });
});

test('no max_tokens: the clamp shares the grant among the k completions, usage stays within the budget', { skip }, async () => {
  // A budget of the prompt's bound + 40 for four prompts: the grant is all of
  // it, so each completion gets 40 / 4 = 10 tokens; the mock bills 4 x 2
  // prompt + 4 x 10.
  const four = { model: MODEL, prompt: ['a', 'b', 'c', 'd'] };
  const budget = promptMax(four) + 40;
  const t = seedTenant({ budget });
  const r = await sdk(t.key).completions.create(four);
  assert.equal(r.choices.length, 4);
  for (const x of r.choices) {
    assert.equal(x.finish_reason, 'length');
    assert.equal(x.text.split(' ').length, 10);
  }
  assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens], [8, 40]);
  const b = await settledBudget(t.org);
  assert.deepEqual(b, { used: 48, reserved: 0 });
  assert.ok(b.used <= budget);

  // chat n: 3, streamed, budget = bound + 51: 51 / 3 = 17 tokens each
  const chat = { model: MODEL, messages, n: 3, stream: true, stream_options: { include_usage: true } };
  const ubudget = promptMax(chat) + 51;
  const u = seedTenant({ budget: ubudget });
  const chunks = await collect(await sdk(u.key).chat.completions.create(chat));
  const text = textByIndex(chunks);
  assert.equal(text.size, 3);
  for (const s of text.values()) assert.equal(s.split(' ').length, 17);
  const usage = chunks.at(-1).usage;
  assert.deepEqual([usage.prompt_tokens, usage.completion_tokens], [CHAT_PROMPT, 51]);
  const bu = await settledBudget(u.org);
  assert.deepEqual(bu, { used: CHAT_PROMPT + 51, reserved: 0 });
  assert.ok(bu.used <= ubudget);

  // What is left (the bound - 8) cannot cover the prompt's bound plus one
  // token per completion.
  await assert.rejects(sdk(u.key).chat.completions.create(chat), (e) => {
    assert.ok(e instanceof OpenAI.RateLimitError, e.constructor.name);
    assert.equal(e.code, 'insufficient_quota');
    return true;
  });
});
