// End-to-end: the official openai SDK against a real ias-mockllm process.
//
//   cd tests/e2e && npm install && IAS_BIN_DIR=build/asan/bin node --test
//
// IAS_BIN_DIR (default build/asan/bin) is taken relative to the repository root
// unless absolute. The test starts the binary on a free port, waits for /health,
// and at the end stops that child (by its PID) with SIGTERM and requires a clean
// exit: under ASan/LSan a leak or memory error makes the exit status non-zero.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const binDir = path.resolve(repoRoot, process.env.IAS_BIN_DIR ?? 'build/asan/bin');
const binary = path.join(binDir, 'ias-mockllm');
const MODEL = 'mock-gpt';

let child;
let childExit; // promise of {code, signal}
let stderr = '';
let baseURL;
let client;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitHealthy(url, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`ias-mockllm exited early:\n${stderr}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`ias-mockllm not healthy after ${ms} ms:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function metrics() {
  const res = await fetch(`${baseURL.replace(/\/v1$/, '')}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

function metricValue(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

before(async () => {
  assert.ok(existsSync(binary), `${binary} not found: build it (make build/asan/bin/ias-mockllm)`);
  const port = await freePort();
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('IAS_')) delete env[k];
  Object.assign(env, { IAS_PORT: String(port), IAS_WORKERS: '2', IAS_LOG_LEVEL: 'warn' });
  child = spawn(binary, [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  childExit = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  baseURL = `http://127.0.0.1:${port}/v1`;
  await waitHealthy(`http://127.0.0.1:${port}/health`, 15000);
  client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: 20000 });
});

after(async () => {
  if (!child || child.exitCode !== null) return;
  process.kill(child.pid, 'SIGTERM');
  const { code, signal } = await childExit;
  assert.equal(signal, null, `ias-mockllm died by ${signal}:\n${stderr}`);
  assert.equal(code, 0, `ias-mockllm exit status ${code}:\n${stderr}`);
  assert.doesNotMatch(stderr, /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/);
});

const prompt = [
  { role: 'system', content: 'You are terse.' }, // 3 words
  { role: 'user', content: 'Say hello to the world' }, // 5 words
];
// Documented mock count: words (8) + 3 per message (6) + 3.
const PROMPT_TOKENS = 17;

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

test('models list has the mock model, vLLM style', async () => {
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  const m = list.data[0];
  assert.equal(m.id, MODEL);
  assert.equal(m.object, 'model');
  assert.equal(m.owned_by, 'ias-mock');
  assert.equal(m.max_model_len, 8192);
  assert.ok(Number.isInteger(m.created));
});

test('non-streaming chat: exact usage, deterministic text', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 7 });
  assert.match(r.id, /^chatcmpl-[0-9a-f]{32}$/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(c.finish_reason, 'length');
  assert.equal(c.logprobs, null);
  assert.equal(c.stop_reason, null);
  assert.equal(c.message.content.split(' ').length, 7);
  assert.deepEqual(
    { prompt: r.usage.prompt_tokens, completion: r.usage.completion_tokens, total: r.usage.total_tokens },
    { prompt: PROMPT_TOKENS, completion: 7, total: PROMPT_TOKENS + 7 },
  );

  const again = await client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 7 });
  assert.equal(again.choices[0].message.content, c.message.content);
  assert.notEqual(again.id, r.id);
  const seeded = await client.chat.completions.create(
    { model: MODEL, messages: prompt, max_tokens: 7 },
    { headers: { 'X-Mock-Seed': '42' } },
  );
  assert.notEqual(seeded.choices[0].message.content, c.message.content);
});

test('streaming chat with include_usage: same text, one token per chunk, exact usage', async () => {
  const full = await client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 9 });
  const chunks = await collect(
    await client.chat.completions.create({
      model: MODEL,
      messages: prompt,
      max_tokens: 9,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );
  const id = chunks[0].id;
  assert.match(id, /^chatcmpl-[0-9a-f]{32}$/);
  for (const ch of chunks) {
    assert.equal(ch.id, id);
    assert.equal(ch.object, 'chat.completion.chunk');
    assert.equal(ch.model, MODEL);
  }
  // First: the role with empty content.
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  // Last: usage only, no choices; before it, nothing carries usage (as vLLM).
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, { prompt_tokens: PROMPT_TOKENS, total_tokens: PROMPT_TOKENS + 9, completion_tokens: 9 });
  for (const ch of chunks.slice(0, -1)) assert.equal(ch.usage, undefined);
  // One token per chunk; the last token's chunk carries finish_reason "length".
  const tokens = chunks.slice(1, -1);
  assert.equal(tokens.length, 9);
  tokens.forEach((ch, i) => {
    assert.match(ch.choices[0].delta.content, i === 0 ? /^\S+$/ : /^ \S+$/);
    assert.equal(ch.choices[0].finish_reason, i === 8 ? 'length' : null);
  });
  const text = chunks.map((ch) => ch.choices[0]?.delta?.content ?? '').join('');
  assert.equal(text, full.choices[0].message.content);
});

test('streaming chat without include_usage has no usage chunk', async () => {
  const chunks = await collect(
    await client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 4, stream: true }),
  );
  assert.equal(chunks.length, 1 + 4);
  for (const ch of chunks) {
    assert.equal(ch.usage, undefined);
    assert.equal(ch.choices.length, 1);
  }
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
});

test('X-Mock-Tokens: natural end with EOS, finish_reason stop', async () => {
  const opts = { headers: { 'X-Mock-Tokens': '3' } };
  const r = await client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 10 }, opts);
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].message.content.split(' ').length, 3);
  // vLLM counts the EOS token: 3 words + 1.
  assert.equal(r.usage.completion_tokens, 4);

  const chunks = await collect(
    await client.chat.completions.create(
      { model: MODEL, messages: prompt, max_tokens: 10, stream: true, stream_options: { include_usage: true } },
      opts,
    ),
  );
  const eos = chunks.at(-2).choices[0];
  assert.equal(eos.delta.content, '');
  assert.equal(eos.finish_reason, 'stop');
  assert.equal(chunks.at(-1).usage.completion_tokens, 4);
  assert.equal(chunks.map((ch) => ch.choices[0]?.delta?.content ?? '').join(''), r.choices[0].message.content);
});

test('X-Mock-Echo repeats the last user message', async () => {
  const r = await client.chat.completions.create(
    {
      model: MODEL,
      messages: [
        { role: 'user', content: 'first question' },
        { role: 'assistant', content: 'an answer' },
        { role: 'user', content: [{ type: 'text', text: 'my  card is\n4111 1111' }] },
      ],
    },
    { headers: { 'X-Mock-Echo': '1' } },
  );
  assert.equal(r.choices[0].message.content, 'my card is 4111 1111');
  assert.equal(r.choices[0].finish_reason, 'stop');
  // words 2 + 2 + 5, + 3 per message, + 3
  assert.equal(r.usage.prompt_tokens, 9 + 9 + 3);
});

test('legacy completions, streaming and not', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'once upon a time', max_tokens: 4 });
  assert.match(r.id, /^cmpl-[0-9a-f]{32}$/);
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].index, 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.choices[0].logprobs, null);
  assert.equal(r.choices[0].text.split(' ').length, 4);
  // 4 words + 1 (BOS)
  assert.deepEqual(
    [r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens],
    [5, 4, 9],
  );

  const chunks = await collect(
    await client.completions.create({
      model: MODEL,
      prompt: 'once upon a time',
      max_tokens: 4,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );
  assert.equal(chunks.length, 4 + 1);
  for (const ch of chunks) assert.equal(ch.object, 'text_completion');
  assert.equal(chunks.slice(0, -1).map((ch) => ch.choices[0].text).join(''), r.choices[0].text);
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.equal(chunks.at(-1).usage.total_tokens, 9);
});

test('n choices and every prompt form, vLLM-shaped', async () => {
  // chat n: 3, natural end: each choice 2 words + EOS; usage sums the choices, prompt once
  const opts = { headers: { 'X-Mock-Tokens': '2' } };
  const r = await client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 5, n: 3 }, opts);
  assert.deepEqual(r.choices.map((c) => [c.index, c.finish_reason]), [[0, 'stop'], [1, 'stop'], [2, 'stop']]);
  assert.equal(new Set(r.choices.map((c) => c.message.content)).size, 3);
  assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens], [PROMPT_TOKENS, 9]);
  const chunks = await collect(await client.chat.completions.create(
    { model: MODEL, messages: prompt, max_tokens: 5, n: 3, stream: true, stream_options: { include_usage: true } }, opts));
  // roles first, then rounds of one event per choice: 2 words + EOS each
  const order = chunks.slice(0, -1).map((ch) => ch.choices[0].index);
  assert.deepEqual(order, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
  for (const c of r.choices) {
    const text = chunks.map((ch) => (ch.choices[0]?.index === c.index ? ch.choices[0].delta.content ?? '' : '')).join('');
    assert.equal(text, c.message.content);
  }
  assert.equal(chunks.at(-1).usage.completion_tokens, 9);

  // completions: strings, token ids, arrays of token ids; index = prompt x n + j
  const s = await client.completions.create({ model: MODEL, prompt: ['once upon', 'a time'], max_tokens: 2, n: 2 });
  assert.deepEqual(s.choices.map((c) => c.index), [0, 1, 2, 3]);
  const single = await client.completions.create({ model: MODEL, prompt: 'a time', max_tokens: 2 });
  assert.equal(s.choices[2].text, single.choices[0].text);
  assert.deepEqual([s.usage.prompt_tokens, s.usage.completion_tokens], [6, 8]);
  const ids = await client.completions.create({ model: MODEL, prompt: [9, 8, 7, 6], max_tokens: 3 });
  assert.deepEqual([ids.usage.prompt_tokens, ids.usage.completion_tokens], [4, 3]);
  const nested = await client.completions.create({ model: MODEL, prompt: [[9, 8, 7, 6], [1]], max_tokens: 3 });
  assert.equal(nested.choices[0].text, ids.choices[0].text);
  assert.deepEqual([nested.usage.prompt_tokens, nested.usage.completion_tokens], [5, 6]);
  const echo = await client.completions.create({ model: MODEL, prompt: [[1, 22], [333]] }, { headers: { 'X-Mock-Echo': '1' } });
  assert.deepEqual(echo.choices.map((c) => c.text), ['1 22', '333']);

  // cut-after counts tokens over all choices, after every role event
  const cut = await client.chat.completions.create(
    { model: MODEL, messages: prompt, max_tokens: 5, n: 2, stream: true }, { headers: { 'X-Mock-Fault': 'cut-after=3' } });
  const got = [];
  await assert.rejects(async () => { for await (const ch of cut) got.push(ch); });
  assert.equal(got.length, 2 + 3);
});

test('unknown model: 404 NotFoundError', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: prompt }),
    (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, `got ${err?.constructor?.name}`);
      assert.equal(err.status, 404);
      assert.equal(err.param, 'model');
      assert.match(err.message, /The model `no-such-model` does not exist\./);
      return true;
    },
  );
});

test('invalid request: 400 BadRequestError naming the parameter', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 'five' }),
    (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}`);
      assert.equal(err.status, 400);
      assert.equal(err.param, 'max_tokens');
      assert.match(err.message, /Invalid type for 'max_tokens': expected an integer, but got a string instead\./);
      return true;
    },
  );
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [] }), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.param, 'messages');
    return true;
  });
  // Over the context window, in vLLM's words.
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: prompt, max_tokens: 9000 }), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.match(err.message, /maximum context length is 8192 tokens/);
    return true;
  });
});

test('X-Mock-Fault status=503 gives a 503 in OpenAI shape', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: prompt }, { headers: { 'X-Mock-Fault': 'status=503' } }),
    (err) => {
      assert.ok(err instanceof OpenAI.InternalServerError, `got ${err?.constructor?.name}`);
      assert.equal(err.status, 503);
      return true;
    },
  );
});

test('X-Mock-Fault cut-after: the stream breaks after n tokens, no [DONE]', async () => {
  const stream = await client.chat.completions.create(
    { model: MODEL, messages: prompt, max_tokens: 10, stream: true, stream_options: { include_usage: true } },
    { headers: { 'X-Mock-Fault': 'cut-after=3' } },
  );
  const seen = [];
  // What the SDK really does on a truncated chunked body: it yields the chunks
  // it got, then iteration throws undici's "terminated" (socket closed).
  await assert.rejects(
    (async () => {
      for await (const ch of stream) seen.push(ch);
    })(),
    (err) => {
      assert.equal(err.name, 'TypeError');
      assert.match(err.message, /terminated/);
      return true;
    },
  );
  assert.equal(seen.length, 1 + 3); // role chunk + 3 tokens
  assert.ok(seen.every((ch) => ch.usage === undefined && ch.choices[0].finish_reason === null));
});

test('X-Mock-TTFT-Ms delays the first chunk', async () => {
  const t0 = performance.now();
  const stream = await client.chat.completions.create(
    { model: MODEL, messages: prompt, max_tokens: 2, stream: true },
    { headers: { 'X-Mock-TTFT-Ms': '400' } },
  );
  let first;
  for await (const ch of stream) {
    first ??= performance.now() - t0;
    assert.ok(ch);
  }
  assert.ok(first >= 399, `first chunk after ${first} ms`);
  assert.ok(first < 5000, `first chunk after ${first} ms`);
});

test('X-Mock-Fault hang: answers nothing; the server lets go when the client leaves', async () => {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), 300);
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: prompt }, { headers: { 'X-Mock-Fault': 'hang' }, signal: ac.signal }),
    (err) => {
      assert.ok(err instanceof OpenAI.APIUserAbortError, `got ${err?.constructor?.name}`);
      return true;
    },
  );
  clearTimeout(t);
  // The hung request, like the cut stream, is gone from the server: only the
  // /metrics request itself is in flight.
  let text;
  for (let i = 0; i < 40; i++) {
    text = await metrics();
    if (metricValue(text, 'ias_http_inflight') === 1 && metricValue(text, 'mockllm_streams_active') === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(metricValue(text, 'ias_http_inflight'), 1);
  assert.equal(metricValue(text, 'mockllm_streams_active'), 0);
  assert.ok(metricValue(text, 'mockllm_tokens_generated_total') > 0);
});
