// What the Kubernetes manifests rely on (deploy/k8s/base, docs/deployment/scaling.md):
// after SIGTERM a service stops taking new connections, lets an in-flight SSE stream
// finish cleanly within IAS_DRAIN_TIMEOUT and exits 0; a stream longer than the drain
// timeout is cut when it expires. Run against the real mockllm binary (no stack needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startService } from '../lib/harness.mjs';

// Starts a streaming completion; resolves with the whole body once the reply ends.
function stream(url, maxTokens) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model: 'mock-gpt', stream: true, max_tokens: maxTokens,
      messages: [{ role: 'user', content: 'count' }] });
    const req = http.request(`${url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; firstChunk(); });
      res.on('end', () => resolve({ status: res.statusCode, text, complete: res.complete }));
      res.on('aborted', () => resolve({ status: res.statusCode, text, complete: false }));
      res.on('error', () => resolve({ status: res.statusCode, text, complete: false }));
    });
    let started;
    const firstChunk = () => { if (started) { started(); started = null; } };
    req.started = new Promise((r) => { started = r; });
    req.on('error', reject);
    req.end(body);
    stream.last = req;
  });
}

async function connectRefused(port) {
  return new Promise((resolve) => {
    const req = http.get(`http://127.0.0.1:${port}/health`, (res) => { res.resume(); resolve(false); });
    req.on('error', () => resolve(true));
    req.setTimeout(1000, () => { req.destroy(); resolve(true); });
  });
}

test('SIGTERM drains an in-flight stream to its clean end, refuses new connections, exits 0', async () => {
  // 20 tokens at 20/s: about one second of streaming, well inside a 5 s drain
  const svc = await startService('mockllm', { IAS_MOCK_TOKENS_PER_S: '20', IAS_DRAIN_TIMEOUT: '5s' });
  const done = stream(svc.url, 20);
  await stream.last.started;
  const t0 = Date.now();
  svc.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await connectRefused(svc.port), true, 'a draining server must not accept new connections');
  const res = await done;
  assert.equal(res.status, 200);
  assert.match(res.text, /data: \[DONE\]/, 'the stream must finish normally during the drain');
  assert.equal(await svc.stop(), 0);
  assert.ok(Date.now() - t0 < 5000, 'the process exits once the stream is done, before the deadline');
});

test('a stream longer than IAS_DRAIN_TIMEOUT is cut at the deadline', async () => {
  // 200 tokens at 20/s would take 10 s; the drain allows 1 s
  const svc = await startService('mockllm', { IAS_MOCK_TOKENS_PER_S: '20', IAS_DRAIN_TIMEOUT: '1s' });
  const done = stream(svc.url, 200);
  await stream.last.started;
  const t0 = Date.now();
  svc.child.kill('SIGTERM');
  const res = await done;
  const elapsed = Date.now() - t0;
  assert.doesNotMatch(res.text, /data: \[DONE\]/, 'a cut stream must not look complete');
  assert.ok(elapsed < 4000, `cut after ${elapsed} ms, want about 1 s`);
  await svc.stop();
});
