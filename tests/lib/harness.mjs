// Shared by the node integration and e2e suites: real binaries, real servers.
// Everything started here is stopped by PID (never by name) when the test ends.
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { createHash, randomBytes } from 'node:crypto';

export const root = process.env.IAS_REPO_ROOT || join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const binDir = process.env.IAS_BIN_DIR || join(root, 'build', 'asan', 'bin');
export const logDir = join(root, 'build', 'test-logs', 'services');

/** The test stack's variables, or null when the suite runs without one (tests skip). */
export function stackEnv() {
  const { IAS_PG_DSN, IAS_REDIS_URL, IAS_AMQP_URL } = process.env;
  if (!IAS_PG_DSN || !IAS_REDIS_URL || !IAS_AMQP_URL) return null;
  return { IAS_PG_DSN, IAS_REDIS_URL, IAS_AMQP_URL };
}

export function uniqueName(prefix) {
  return `${prefix}_${process.pid}_${Date.now()}_${randomBytes(3).toString('hex')}`;
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Runs SQL through psql; returns rows as arrays of strings. */
export function sql(dsn, query, params = []) {
  const args = [dsn, '-X', '-q', '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1'];
  params.forEach((p, i) => args.push('-v', `p${i + 1}=${p}`));
  const out = execFileSync('psql', [...args, '-c', query], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.length > 0).map((l) => l.split('\t'));
}

/** A fresh database on the test server, migrated to the latest version. */
export function createDb(prefix = 't') {
  const base = stackEnv()?.IAS_PG_DSN;
  if (!base) throw new Error('IAS_PG_DSN is not set');
  const name = uniqueName(prefix).toLowerCase();
  sql(base, `CREATE DATABASE ${name}`);
  const u = new URL(base);
  u.pathname = `/${name}`;
  const dsn = u.toString();
  execFileSync(join(binDir, 'ias-migrate'), ['up'], {
    env: { ...process.env, IAS_PG_DSN: dsn, IAS_MIGRATIONS_DIR: join(root, 'migrations') },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return { dsn, name, drop: () => dropDb(base, name) };
}

/* FORCE cannot end a backend of a role the caller lacks (an autovacuum worker
 * before the stack granted pg_signal_backend); such a worker finishes soon. */
function dropDb(base, name) {
  for (let attempt = 1; ; attempt++) {
    try {
      sql(base, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      return;
    } catch (e) {
      if (attempt >= 20) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 250);
    }
  }
}

async function waitHttp(url, child, deadlineMs) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode} before ${url} answered`);
    try {
      const r = await fetch(url);
      if (r.status === 200) return;
    } catch { /* not listening yet */ }
    if (Date.now() > end) throw new Error(`${url} did not answer 200 within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts build/asan/bin/ias-<name> on a free port with env, waits for /ready.
 * Returns { url, port, pid, logFile, stop(signal) } ; stop() resolves with the exit code
 * and fails the caller's expectations if the process reported a sanitizer error.
 */
export async function startService(name, env = {}, { ready = '/ready', timeoutMs = 15000 } = {}) {
  const port = env.IAS_PORT ? Number(env.IAS_PORT) : await freePort();
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, `${uniqueName(name)}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(join(binDir, `ias-${name}`), [], {
    env: { ...process.env, IAS_WORKERS: '2', IAS_LOG_LEVEL: 'info', ...env, IAS_PORT: String(port) },
    stdio: ['ignore', fd, fd],
  });
  const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig)));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHttp(url + ready, child, timeoutMs);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${name}: ${e.message}\n--- ${logFile}\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
  }
  return {
    url, port, pid: child.pid, logFile, child, exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      const code = await exited;
      const log = readFileSync(logFile, 'utf8');
      if (/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/.test(log)) {
        throw new Error(`${name}: sanitizer report in ${logFile}\n${log.slice(-4000)}`);
      }
      return code;
    },
  };
}

/** JSON request helper: returns { status, headers, body } (body parsed when JSON). */
export async function api(base, method, path, { token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const r = await fetch(base + path, { method, headers: h, body: payload });
  const text = await r.text();
  let parsed = text;
  try { parsed = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, body: parsed };
}

// Scratch space for spools and files the services write: one directory per
// test process, removed when the process exits, so runs leave nothing in /tmp.
let scratchRoot = null;
/** A fresh path (not created) under this process's scratch directory. */
export function scratchPath(prefix) {
  if (!scratchRoot) {
    scratchRoot = mkdtempSync(join(tmpdir(), 'ias-test-'));
    process.once('exit', () => rmSync(scratchRoot, { recursive: true, force: true }));
  }
  return join(scratchRoot, uniqueName(prefix));
}

/** A fresh API key in ias's format with the prefix and SHA-256 the users tables store. */
export function newKey() {
  const alnum = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let prefix = '';
  for (const b of randomBytes(8)) prefix += alnum[b % alnum.length];
  const key = `ias_${prefix}.${randomBytes(32).toString('base64url')}`;
  return { key, prefix, sha: createHash('sha256').update(key).digest('hex') };
}

/**
 * An org with one org_user and one API key, written straight into the users
 * tables of dsn (row-level security opened with ias.org_id '*'). Limits null =
 * none; models: the model names the org may use, null = every model.
 * Returns { org, user, keyId, key, prefix, sha }.
 */
export function seedTenant(dsn, { budget = null, userLimit = null, orgRps = null, keyRps = null, models = null } = {}) {
  const rls = (q) => sql(dsn, `SET ias.org_id TO '*'; ${q}`);
  const lit = (v) => (v === null || v === undefined ? 'NULL' : String(v));
  const name = uniqueName('o').toLowerCase().replace(/_/g, '-').slice(0, 60);
  const [[org]] = rls(`INSERT INTO orgs (name, rate_limit_rps) VALUES ('${name}', ${lit(orgRps)}) RETURNING id`);
  const [[user]] = rls(`INSERT INTO users (org_id, email, password_hash, role_id, monthly_token_limit)
    VALUES ('${org}', '${name}@example.com', 'x', '00000000-0000-0000-0000-000000000003', ${lit(userLimit)}) RETURNING id`);
  const k = newKey();
  const [[keyId]] = rls(`INSERT INTO api_keys (org_id, user_id, name, prefix, key_hash, rate_limit_rps)
    VALUES ('${org}', '${user}', 'test', '${k.prefix}', '${k.sha}', ${lit(keyRps)}) RETURNING id`);
  if (budget !== null) rls(`INSERT INTO org_budgets (org_id, monthly_token_limit) VALUES ('${org}', ${budget})`);
  if (models === null) {
    rls(`INSERT INTO org_allowed_models (org_id, model_id) SELECT '${org}', id FROM models`);
  } else {
    for (const m of models) {
      rls(`INSERT INTO org_allowed_models (org_id, model_id) SELECT '${org}', id FROM models WHERE name = '${m}'`);
    }
  }
  return { org, user, keyId, ...k };
}

/** redis-cli against IAS_REDIS_URL (its db index included): the raw reply text
 * without the final newline (an absent field of HMGET stays an empty line). */
export function redisCli(...args) {
  const u = new URL(process.env.IAS_REDIS_URL);
  return execFileSync('redis-cli', ['-h', u.hostname, '-p', u.port || '6379', '-n', u.pathname.slice(1) || '0', ...args],
    { encoding: 'utf8' }).replace(/\n$/, '');
}

/** The UTC month of the budget keys (ias:budget:{org}:{yyyymm}). */
export const budgetMonth = () => new Date().toISOString().slice(0, 7).replace('-', '');

/** An org's (or with user, that user's) budget counters of this month, read in
 * one command: two HGETs could straddle a settle. */
export function budgetOf(org, user = null) {
  const key = `ias:budget:${org}:${budgetMonth()}${user ? `:u:${user}` : ''}`;
  const [used, reserved] = redisCli('HMGET', key, 'used', 'reserved').split('\n');
  return { used: Number(used || 0), reserved: Number(reserved || 0) };
}

/** Stops every service started, newest first, even when one fails to stop;
 * returns the first failure (or null) for the caller to throw after its own
 * clean-up. */
export async function stopAll(procs) {
  let first = null;
  for (const p of [...procs].reverse()) {
    try { await p.stop(); } catch (e) { first ??= e; }
  }
  return first;
}

// The npm packages the suites share live in tests/e2e (its package.json).
const e2eRequire = createRequire(join(root, 'tests', 'e2e', 'package.json'));
let ajv = null;
const validators = new Map();

/** A validator of proto/events/<name>.schema.json (draft 2020-12, strict, every
 * format checked); v.errorsText() says why the last value failed. One per name:
 * a schema's $id may be compiled only once. */
export function eventValidator(name) {
  if (validators.has(name)) return validators.get(name);
  if (!ajv) {
    const Ajv2020 = e2eRequire('ajv/dist/2020').default;
    const addFormats = e2eRequire('ajv-formats').default;
    ajv = new Ajv2020({ strict: true, allErrors: true });
    addFormats(ajv);
  }
  const v = ajv.compile(JSON.parse(readFileSync(join(root, 'proto', 'events', `${name}.schema.json`), 'utf8')));
  v.errorsText = () => ajv.errorsText(v.errors);
  validators.set(name, v);
  return v;
}

/** The events of one AMQP message: one, or a pack (content type
 * application/x-ndjson: one JSON event per line, their message ids in the
 * x-ias-message-ids header; docs/architecture/events.md). */
export function unpackEvents(m) {
  const text = m.content.toString();
  if (m.properties.contentType !== 'application/x-ndjson') return [{ text, messageId: m.properties.messageId }];
  const ids = m.properties.headers?.['x-ias-message-ids'] || [];
  const lines = text.split('\n');
  if (lines.length !== ids.length) throw new Error(`pack of ${lines.length} events with ${ids.length} message ids`);
  return lines.map((line, i) => ({ text: line, messageId: String(ids[i]) }));
}

/** Subscribes a private queue to ias.events for the routing keys (patterns
 * allowed) and calls onEvent({ key, body, messageId, type }) for every event,
 * packs unpacked. Returns { channel, close }. */
export async function subscribeEvents(keys, onEvent) {
  const amqplib = e2eRequire('amqplib');
  const conn = await amqplib.connect(process.env.IAS_AMQP_URL);
  const channel = await conn.createChannel();
  await channel.assertExchange('ias.events', 'topic', { durable: true });
  const q = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  for (const k of keys) await channel.bindQueue(q.queue, 'ias.events', k);
  await channel.consume(q.queue, (m) => {
    for (const one of unpackEvents(m)) {
      onEvent({ key: m.fields.routingKey, body: JSON.parse(one.text), messageId: one.messageId, type: m.properties.type });
    }
    channel.ack(m);
  });
  return { channel, close: () => conn.close() };
}

/** The inference path in front of one mockllm: the mock registered as model
 * (context tokens) in db, then users, router and ingress (no pdp: ingress's
 * built-in allowed-models decision; X-Mock-* headers reach the mock). Every
 * process started is pushed to procs. */
export async function startInferencePath(db, procs, { model, context, internalToken }) {
  const mock = await startService('mockllm', { IAS_MOCK_CONTEXT: String(context) });
  procs.push(mock);
  sql(db.dsn, `INSERT INTO models (name, context_length) VALUES ('${model}', ${context})`);
  sql(db.dsn, `INSERT INTO model_backends (model_id, url) SELECT id, '${mock.url}' FROM models`);
  const common = { IAS_INTERNAL_TOKEN: internalToken, IAS_JWT_SECRET: randomBytes(32).toString('hex') };
  const users = await startService('users', { ...common, IAS_PG_DSN: db.dsn, IAS_SPOOL_DIR: scratchPath('users') });
  procs.push(users);
  const router = await startService('router', { ...common, IAS_USERS_URL: users.url, IAS_SPOOL_DIR: scratchPath('router') });
  procs.push(router);
  const ingress = await startService('ingress', {
    ...common, IAS_USERS_URL: users.url, IAS_ROUTER_URL: router.url, IAS_PDP_URL: '', IAS_FORWARD_HEADER_PREFIX: 'X-Mock-',
  });
  procs.push(ingress);
  return { mock, users, router, ingress };
}

/** Polls fn (sync or async) every stepMs until it returns something truthy or
 * ms have passed; returns its last value. */
export async function waitFor(fn, ms = 5000, stepMs = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** The org's budget counters once the router's settle has landed (nothing
 * reserved), or as they are after 10 s. */
export async function settledBudget(org) {
  const b = await waitFor(() => { const x = budgetOf(org); return x.reserved === 0 ? x : null; }, 10000, 25);
  return b ?? budgetOf(org);
}

/** For assert.rejects: the OpenAI SDK's BadRequestError (400) naming param,
 * its message matching message when given. */
export function expectBadRequest(param, message) {
  return (e) => {
    if (e?.constructor?.name !== 'BadRequestError' || e.status !== 400) {
      throw new Error(`expected BadRequestError 400, got ${e?.constructor?.name}: ${e?.message}`);
    }
    if (e.param !== param) throw new Error(`param ${JSON.stringify(e.param)}, expected ${JSON.stringify(param)}`);
    if (message && !message.test(e.message)) throw new Error(`message ${JSON.stringify(e.message)} does not match ${message}`);
    return true;
  };
}
