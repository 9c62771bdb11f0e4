// ias-admin against a real users service (which serves /api/v1/* itself;
// ingress only proxies), real PostgreSQL, Redis and RabbitMQ: bootstrap,
// login with stored and refreshed tokens, orgs, users, models, budgets, keys
// shown once, exit codes 0/1/2, parseable JSON output, no secret on screen.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { binDir, stackEnv, createDb, startService, sql } from '../lib/harness.mjs';

const env = stackEnv();
const cliBin = join(binDir, 'ias-admin');
const haveBins = existsSync(cliBin) && existsSync(join(binDir, 'ias-users'));
const skip = !env ? 'no test stack (IAS_PG_DSN, IAS_REDIS_URL, IAS_AMQP_URL)'
  : !haveBins ? `ias-admin or ias-users missing in ${binDir}` : false;

const ADMIN_EMAIL = 'root@example.com';
const ADMIN_PW = 'Sup3r-Secret!pw';
const ORGADMIN_EMAIL = 'lead@demo.example.com';
const ORGADMIN_PW = 'Team-Lead#2026x';
const JWT_SECRET = randomBytes(32).toString('hex');
const has = (name) => existsSync(join(binDir, `ias-${name}`));

let db;
let users;
let cfgAdmin;
let cfgLead;
let cfgNobody;
const extra = {}; // pdp, accounting, audit when built; stopped in after()

/** Runs the CLI; returns { code, out, err }. */
function cli(args, { cfg = cfgAdmin, input, baseUrl, token } = {}) {
  const r = spawnSync(cliBin, args, {
    input: input ?? '',
    encoding: 'utf8',
    timeout: 30000,
    env: {
      PATH: process.env.PATH,
      HOME: cfg,
      IAS_CONFIG_DIR: cfg,
      IAS_BASE_URL: baseUrl ?? users.url,
      ASAN_OPTIONS: process.env.ASAN_OPTIONS ?? 'detect_leaks=1',
      ...(token ? { IAS_ACCESS_TOKEN: token } : {}),
    },
  });
  if (r.error) throw r.error;
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function ok(args, opts) {
  const r = cli(args, opts);
  assert.equal(r.code, 0, `ias-admin ${args.join(' ')} -> ${r.code}\n${r.err}`);
  assert.doesNotMatch(r.err, /AddressSanitizer|LeakSanitizer|runtime error/);
  return r;
}

function json(args, opts) {
  return JSON.parse(ok([...args, '-o', 'json'], opts).out);
}

function creds(dir) {
  return JSON.parse(readFileSync(join(dir, 'credentials'), 'utf8'));
}

before(async () => {
  if (skip) return;
  db = createDb('admincli');
  users = await startService('users', {
    ...env,
    IAS_PG_DSN: db.dsn,
    IAS_JWT_SECRET: JWT_SECRET,
  });
  const base = mkdtempSync(join(tmpdir(), 'ias-admin-cli-'));
  cfgAdmin = join(base, 'admin');
  cfgLead = join(base, 'lead');
  cfgNobody = join(base, 'nobody');
});

after(async () => {
  if (skip) return;
  for (const svc of Object.values(extra)) await svc.stop();
  if (users) await users.stop();
  db?.drop();
  if (cfgAdmin) rmSync(join(cfgAdmin, '..'), { recursive: true, force: true });
});

test('usage errors exit 2 with a message and a short usage on stderr', { skip }, () => {
  for (const args of [[], ['frobnicate'], ['orgs', 'frobnicate'], ['orgs'], ['orgs', 'create'],
    ['orgs', 'list', '--bogus'], ['keys', 'revoke'], ['budgets', 'set', 'x'],
    ['orgs', 'list', '--output', 'yaml'], ['users', 'set-limit', 'u', 'lots']]) {
    const r = cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, /ias-admin: /);
    assert.equal(r.out, '');
  }
  assert.match(cli(['orgs', 'frobnicate']).err, /unknown subcommand 'frobnicate'[\s\S]*Usage: ias-admin orgs/);
  assert.match(cli(['budgets', 'set', 'x']).err, /missing required flag --monthly-tokens/);
  // --help and help work on every level and exit 0.
  assert.match(ok(['--help']).out, /Commands:[\s\S]*orgs/);
  assert.match(ok(['help', 'keys']).out, /revoke/);
  assert.match(ok(['keys', 'create', '--help']).out, /--expires-at/);
  assert.match(ok(['help', 'login']).out, /--password-stdin/);
  // Completion candidates come from the same tables as the parser.
  assert.deepEqual(ok(['__complete', 'keys']).out.split('\n').filter((w) => !w.startsWith('-')),
    ['list', 'create', 'get', 'revoke', '']);
  assert.match(ok(['__complete', 'policies', 'apply']).out, /^--file$/m);
});

test('bootstrap, then login stores tokens 0600 and never prints them', { skip }, () => {
  const b = json(['bootstrap', 'create-super-admin', '--email', ADMIN_EMAIL, '--password-stdin'],
    { input: `${ADMIN_PW}\n` });
  assert.equal(b.email, ADMIN_EMAIL);
  assert.equal(b.role, 'system_admin');
  // Only while no system admin exists: now a 409, exit 1, title and detail shown.
  const again = cli(['bootstrap', 'create-super-admin', '--email', 'x@example.com',
    '--password', ADMIN_PW]);
  assert.equal(again.code, 1);
  assert.match(again.err, /^error: .*\(HTTP 409\): .+/m);

  const bad = cli(['login', '--email', ADMIN_EMAIL, '--password-stdin'], { input: 'Wrong-pass-123!\n' });
  assert.equal(bad.code, 1);
  assert.match(bad.err, /HTTP 401/);

  const r = ok(['login', '--email', ADMIN_EMAIL, '--password-stdin'], { input: `${ADMIN_PW}\n` });
  assert.match(r.out, /Logged in/);
  const st = statSync(join(cfgAdmin, 'credentials'));
  assert.equal(st.mode & 0o777, 0o600);
  const c = creds(cfgAdmin);
  const p = c.profiles[users.url];
  assert.equal(c.current, users.url);
  assert.ok(p.access_token.length > 20 && p.refresh_token.length > 10);
  assert.ok(p.expires_at > Date.now() / 1000);
  for (const text of [r.out, r.err, readFileSync(join(cfgAdmin, 'credentials'), 'utf8')]) {
    assert.ok(!text.includes(ADMIN_PW), 'the password leaked');
  }
  assert.ok(!r.out.includes(p.access_token) && !r.err.includes(p.refresh_token));
});

// The prompt on a terminal: a pseudo-terminal through python3's pty module
// (node has none); the typed password must not be echoed back.
const PTY_LOGIN = `
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b''
def drain(until):
    global out
    end = time.time() + 10
    while until not in out and time.time() < end:
        try:
            d = os.read(fd, 4096)
        except OSError:
            break
        if not d:
            break
        out += d
drain(b'Password: ')
os.write(fd, sys.stdin.read().encode() + b'\\n')
drain(b'\\0')
for _ in range(100):
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.1)
else:
    os.kill(pid, 9)
    _, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors='replace'))
sys.exit(os.WEXITSTATUS(st))
`;

test('login prompts for the password on a terminal without echo', { skip: skip || spawnSync('python3', ['-V']).status !== 0 }, () => {
  const r = spawnSync('python3', ['-c', PTY_LOGIN, cliBin, 'login', '--email', ADMIN_EMAIL], {
    input: ADMIN_PW, encoding: 'utf8', timeout: 30000,
    env: { PATH: process.env.PATH, HOME: cfgAdmin, IAS_CONFIG_DIR: cfgAdmin, IAS_BASE_URL: users.url },
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Password: [\s\S]*Logged in/);
  assert.ok(!r.stdout.includes(ADMIN_PW), 'the password was echoed');
});

test('orgs: create, list as table and JSON, get by name, update; API errors exit 1', { skip }, () => {
  const org = json(['orgs', 'create', 'demo-team', '--display-name', 'Demo Team', '--tags', 'a,b']);
  assert.equal(org.name, 'demo-team');
  assert.deepEqual(org.tags, ['a', 'b']);
  json(['orgs', 'create', '--name', 'other-team']);

  const table = ok(['orgs', 'list']).out.split('\n').filter(Boolean);
  assert.match(table[0], /^ID\s+NAME\s+DISPLAY NAME\s+RPS LIMIT\s+CREATED$/);
  const row = table.find((l) => l.includes(' demo-team '));
  assert.ok(row, table.join('\n'));
  // Aligned: every row starts its NAME column where the header does.
  const col = table[0].indexOf('NAME');
  for (const l of table.slice(1)) assert.match(l.slice(col), /^(demo|other)-team /);
  assert.ok(table.every((l) => !l.endsWith(' ')));

  const list = json(['orgs', 'list']);
  assert.deepEqual(list.data.map((o) => o.name).sort(), ['demo-team', 'other-team']);

  const got = json(['orgs', 'get', 'demo-team']);
  assert.equal(got.id, org.id);
  const upd = json(['orgs', 'update', org.id, '--description', 'the demo', '--rps-limit', '50']);
  assert.equal(upd.description, 'the demo');
  assert.equal(upd.rate_limit_rps, 50);
  assert.match(ok(['orgs', 'get', org.id]).out, /^description\s+the demo$/m);

  const dup = cli(['orgs', 'create', 'demo-team']);
  assert.equal(dup.code, 1);
  assert.match(dup.err, /^error: .+\(HTTP 409\)/m);
  const missing = cli(['orgs', 'get', '00000000-0000-4000-8000-000000000000']);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /HTTP 404/);
  const badName = cli(['orgs', 'create', 'Not A Slug']);
  assert.equal(badName.code, 1);
  assert.match(badName.err, /HTTP 400/);
});

test('users, models and budgets', { skip }, () => {
  const u = json(['users', 'invite', '--org', 'demo-team', '--email', ORGADMIN_EMAIL,
    '--role', 'org_admin', '--password-stdin'], { input: `${ORGADMIN_PW}\n` });
  assert.equal(u.email, ORGADMIN_EMAIL);
  assert.equal(u.role, 'org_admin');
  const plain = json(['users', 'invite', '--org', 'demo-team', '--email', 'dev@demo.example.com',
    '--password', 'Dev-User#2026xx']);
  assert.match(ok(['users', 'list', 'demo-team']).out, /lead@demo\.example\.com\s+org_admin/);
  const limited = json(['users', 'set-limit', plain.id, '5000']);
  assert.equal(limited.monthly_token_limit, 5000);
  assert.equal(json(['users', 'set-role', plain.id, 'org_admin']).role, 'org_admin');
  assert.equal(cli(['users', 'set-role', plain.id, 'emperor']).code, 1);
  ok(['users', 'reset-password', plain.id, '--password-stdin'], { input: 'Fresh-Pass#2026x\n' });
  // Writes without a body still print JSON with -o json.
  assert.equal(typeof json(['users', 'remove', plain.id]), 'object');
  assert.ok(!json(['users', 'list', 'demo-team']).data.some((x) => x.id === plain.id));

  const m = json(['models', 'add', 'mock-gpt', '--context-length', '8192', '--input-rate', '0.5',
    '--output-rate', '1.5', '--backend', 'http://127.0.0.1:8090,http://127.0.0.1:8091',
    '--weights', '3,1']);
  assert.equal(m.name, 'mock-gpt');
  assert.equal(m.backends.length, 2);
  // Weights follow --backend order (the server may list backends in any order).
  assert.deepEqual(Object.fromEntries(m.backends.map((b) => [b.url, b.weight])),
    { 'http://127.0.0.1:8090': 3, 'http://127.0.0.1:8091': 1 });
  assert.equal(Number(m.input_rate_per_1k), 0.5);
  assert.match(ok(['models', 'list']).out, /mock-gpt\s+true\s+8192/);
  assert.equal(json(['models', 'disable', 'mock-gpt']).enabled, false);
  assert.equal(json(['models', 'update', 'mock-gpt', '--enabled', 'true']).enabled, true);
  assert.deepEqual(json(['orgs', 'models', 'demo-team', '--set', 'mock-gpt']).data.map((x) => x.name),
    ['mock-gpt']);
  assert.match(ok(['orgs', 'models', 'demo-team']).out, /^MODEL ID\s+NAME\s+ENABLED\s+SINCE\n\S+\s+mock-gpt\s+true\s/);

  const b = json(['budgets', 'set', 'demo-team', '--monthly-tokens', '1000000',
    '--alert-thresholds', '50,80,90']);
  assert.equal(b.monthly_token_limit, 1000000);
  assert.match(ok(['budgets', 'get', 'demo-team']).out, /^MONTHLY TOKENS\s+1000000$/m);
});

test('keys: shown once with a warning, listed without the secret, revoked', { skip }, () => {
  ok(['login', '--email', ORGADMIN_EMAIL, '--password-stdin'],
    { cfg: cfgLead, input: `${ORGADMIN_PW}\n` });
  const r = ok(['keys', 'create', '--name', 'ci'], { cfg: cfgLead });
  const key = r.out.match(/^KEY\s+(ias_\S+)$/m)?.[1];
  assert.ok(key, r.out);
  assert.match(r.err, /will not be shown again/);
  const created = json(['keys', 'create', '--name', 'second'], { cfg: cfgLead });
  assert.match(created.key, /^ias_[a-z0-9]{8}\./);

  const mine = json(['keys', 'list'], { cfg: cfgLead }).data;
  assert.equal(mine.length, 2);
  const listed = ok(['keys', 'list'], { cfg: cfgLead }).out;
  assert.ok(!listed.includes(key.split('.')[1]) && !listed.includes(created.key.split('.')[1]));
  // An org admin names their own org too (the org list shows them only theirs).
  assert.match(ok(['users', 'list', 'demo-team'], { cfg: cfgLead }).out, /lead@demo\.example\.com/);
  assert.equal(cli(['users', 'list', 'other-team'], { cfg: cfgLead }).code, 1);
  // The system admin sees the org's keys by org name.
  assert.equal(json(['keys', 'list', '--org', 'demo-team']).data.length, 2);

  const id = mine.find((k) => k.name === 'ci').id;
  assert.match(ok(['keys', 'revoke', id], { cfg: cfgLead }).out, /revoked/);
  const after = json(['keys', 'get', id], { cfg: cfgLead });
  assert.equal(after.status, 'revoked');
  assert.ok(!JSON.stringify(after).includes(key.split('.')[1]));
  assert.equal(cli(['keys', 'revoke', 'not-a-uuid'], { cfg: cfgLead }).code, 2);
  const second = mine.find((k) => k.name === 'second').id;
  assert.equal(typeof json(['keys', 'revoke', second], { cfg: cfgLead }), 'object');
  assert.equal(json(['keys', 'get', second], { cfg: cfgLead }).status, 'revoked');
  // An org admin is not a system admin: registry writes are refused (exit 1).
  const denied = cli(['models', 'remove', 'mock-gpt'], { cfg: cfgLead });
  assert.equal(denied.code, 1);
  assert.match(denied.err, /HTTP 403/);
});

test('an expired or rejected access token is refreshed with the refresh token', { skip }, () => {
  const file = join(cfgAdmin, 'credentials');
  const before1 = creds(cfgAdmin);
  const p = before1.profiles[users.url];
  // Expired by the clock: refreshed before the request.
  p.expires_at = 1;
  writeFileSync(file, JSON.stringify(before1), { mode: 0o600 });
  ok(['orgs', 'list']);
  const after1 = creds(cfgAdmin).profiles[users.url];
  assert.notEqual(after1.refresh_token, p.refresh_token, 'refresh token rotated');
  assert.ok(after1.expires_at > Date.now() / 1000);
  assert.equal(statSync(file).mode & 0o777, 0o600);

  // Rejected by the server (401): refreshed once and retried.
  const before2 = creds(cfgAdmin);
  before2.profiles[users.url].access_token = 'garbage';
  writeFileSync(file, JSON.stringify(before2), { mode: 0o600 });
  ok(['orgs', 'list']);
  assert.notEqual(creds(cfgAdmin).profiles[users.url].access_token, 'garbage');

  // A reused (rotated) refresh token ends the session: exit 1 with a hint.
  const stale = creds(cfgAdmin);
  stale.profiles[users.url].access_token = 'garbage';
  stale.profiles[users.url].refresh_token = p.refresh_token;
  writeFileSync(file, JSON.stringify(stale), { mode: 0o600 });
  const r = cli(['orgs', 'list']);
  assert.equal(r.code, 1);
  assert.match(r.err, /login/);
  ok(['login', '--email', ADMIN_EMAIL, '--password-stdin'], { input: `${ADMIN_PW}\n` });
});

test('without a login: 401 with a hint; logout forgets the profile', { skip }, () => {
  const r = cli(['orgs', 'list'], { cfg: cfgNobody });
  assert.equal(r.code, 1);
  assert.match(r.err, /HTTP 401[\s\S]*ias-admin login/);
  // A trailing slash names the same server; another host name does not, and a
  // token is only sent to the server that issued it.
  ok(['orgs', 'list', '--base-url', `${users.url}/`]);
  const other = cli(['orgs', 'list', '--base-url', users.url.replace('127.0.0.1', 'localhost')]);
  assert.equal(other.code, 1);
  assert.match(other.err, /HTTP 401/);

  assert.match(ok(['logout'], { cfg: cfgLead }).out, /Logged out/);
  assert.equal(creds(cfgLead).profiles[users.url], undefined);
  assert.equal(cli(['keys', 'list'], { cfg: cfgLead }).code, 1);
  const down = cli(['orgs', 'list', '--base-url', 'http://127.0.0.1:1']);
  assert.equal(down.code, 1);
  assert.match(down.err, /Could(n't| not) connect/i);
});

// The other services behind ingress, addressed directly (ingress only proxies
// by path). Tokens are bound to the base URL of the login, so these calls
// pass the system admin's access token through IAS_ACCESS_TOKEN.
test('policies, usage and audit against pdp, accounting and audit', { skip: skip || (!has('pdp') && !has('accounting') && !has('audit')) }, async (t) => {
  const token = creds(cfgAdmin).profiles[users.url].access_token;
  const orgId = json(['orgs', 'get', 'demo-team']).id;
  const dir = mkdtempSync(join(tmpdir(), 'ias-admin-pol-'));
  try {
    if (has('pdp')) {
      extra.pdp = await startService('pdp', {
        IAS_PG_DSN: db.dsn, IAS_AMQP_URL: '', IAS_JWT_SECRET: JWT_SECRET, IAS_SPOOL_DIR: dir,
      });
      const o = { baseUrl: extra.pdp.url, token };
      const doc = { rules: [{ id: 'no-llama', effect: 'deny', match: { resource: { model: ['llama-3'] } } }] };
      writeFileSync(join(dir, 'policy.json'), JSON.stringify(doc));
      const sample = (model) => ({
        subject: { user_id: '00000000-0000-4000-8000-000000000001', org_id: orgId, role: 'org_user', allowed_models: ['mock-gpt', 'llama-3'] },
        action: 'inference', resource: { model, tags: [] },
        environment: { source_ip: '10.0.0.5', region: null, time: new Date().toISOString() },
      });
      writeFileSync(join(dir, 'requests.json'), JSON.stringify({ requests: [sample('mock-gpt'), sample('llama-3')] }));
      const dry = json(['policies', 'dry-run', '-f', join(dir, 'policy.json'), '--requests', join(dir, 'requests.json')], o);
      assert.deepEqual(dry.results.map((x) => x.decision), ['allow', 'deny']);
      // One file may carry the draft and its samples.
      writeFileSync(join(dir, 'both.json'), JSON.stringify({ document: doc, requests: [sample('llama-3')] }));
      assert.equal(json(['policies', 'dry-run', '-f', join(dir, 'both.json')], o).results[0].decision, 'deny');
      assert.equal(cli(['policies', 'dry-run', '-f', join(dir, 'policy.json')], o).code, 2);
      const applied = json(['policies', 'apply', '-f', join(dir, 'policy.json'), '--comment', 'first'], o);
      assert.equal(applied.active, true);
      const listed = json(['policies', 'list'], o).data;
      assert.ok(listed.some((p) => p.id === applied.id), JSON.stringify(listed));
      assert.match(ok(['policies', 'list'], o).out, /^ID\s+SCOPE\s+ORG\s+VERSION\s+ACTIVE/);
      // More versions than one page (the CLI asks for 200): it follows next_cursor.
      sql(db.dsn, `INSERT INTO policies (scope, org_id, version, document)
        SELECT 'org', '${orgId}', 1000 + g, '{"rules":[]}' FROM generate_series(1, 250) g`);
      const many = json(['policies', 'list', '--org', orgId], o).data;
      assert.equal(many.length, 250);
      assert.equal(new Set(many.map((p) => p.id)).size, 250);
      writeFileSync(join(dir, 'bad.json'), JSON.stringify({ rules: 'x' }));
      const bad = cli(['policies', 'apply', '-f', join(dir, 'bad.json')], o);
      assert.equal(bad.code, 1);
      assert.match(bad.err, /HTTP 400.*document\.rules/);
      assert.equal(cli(['policies', 'apply', '-f', join(dir, 'missing.json')], o).code, 2);
    }
    if (has('accounting')) {
      extra.accounting = await startService('accounting', {
        ...env, IAS_PG_DSN: db.dsn, IAS_JWT_SECRET: JWT_SECRET, IAS_CONSUME: 'false',
      });
      const o = { baseUrl: extra.accounting.url, token };
      const u = json(['usage', 'show', '--org', orgId, '--group-by', 'model'], o);
      assert.equal(u.org_id, orgId);
      assert.equal(u.group_by, 'model');
      assert.equal(u.totals.total_tokens, 0);
      assert.match(ok(['usage', 'show', '--org', orgId, '--from', '2026-01-01', '--to', '2026-02-01'], o).out,
        /Usage from 2026-01-01T00:00:00.000Z to 2026-02-01T00:00:00.000Z[\s\S]*REQUESTS\s+ERRORS/);
      assert.deepEqual(json(['usage', 'alerts', '--org', orgId], o).data, []);
      assert.deepEqual(json(['usage', 'events', '--org', orgId], o).data, []);
      const badRange = cli(['usage', 'show', '--group-by', 'colour'], o);
      assert.equal(badRange.code, 1);
      assert.match(badRange.err, /HTTP 400.*group_by/);
    }
    if (has('audit')) {
      extra.audit = await startService('audit', {
        ...env, IAS_PG_DSN: db.dsn, IAS_JWT_SECRET: JWT_SECRET,
        IAS_AUDIT_SIGNING_KEY: randomBytes(32).toString('base64'),
      });
      const o = { baseUrl: extra.audit.url, token };
      json(['audit', 'list'], o);
      const v = json(['audit', 'verify'], o);
      assert.equal(v.ok, true);
      assert.match(ok(['audit', 'verify'], o).out, /^ok\s+true$/m);
      assert.match(ok(['audit', 'checkpoints'], o).out, /^ID\s+SEQ\s+HASH/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The way operators use it: one base URL, ingress, which proxies /api/v1/* to
// the owning service by path; one login serves every command group.
test('through ingress: one login for users, pdp, accounting and audit', { skip: skip || !has('ingress') }, async () => {
  const ingress = await startService('ingress', {
    IAS_REDIS_URL: env.IAS_REDIS_URL, IAS_AMQP_URL: '', IAS_JWT_SECRET: JWT_SECRET,
    IAS_USERS_URL: users.url, IAS_ROUTER_URL: 'http://127.0.0.1:9',
    IAS_PDP_URL: extra.pdp?.url ?? '', IAS_ACCOUNTING_URL: extra.accounting?.url ?? '',
    IAS_AUDIT_URL: extra.audit?.url ?? '',
  });
  try {
    const cfg = mkdtempSync(join(tmpdir(), 'ias-admin-ingress-'));
    const o = { cfg, baseUrl: ingress.url };
    ok(['login', '--email', ADMIN_EMAIL, '--password-stdin'], { ...o, input: `${ADMIN_PW}\n` });
    assert.ok(json(['orgs', 'list'], o).data.some((x) => x.name === 'demo-team'));
    assert.match(ok(['models', 'list'], o).out, /mock-gpt/);
    if (extra.pdp) assert.ok(json(['policies', 'list'], o).data.length >= 1);
    if (extra.accounting) assert.equal(json(['usage', 'show', '--org', 'demo-team'], o).totals.requests, 0);
    if (extra.audit) assert.equal(json(['audit', 'verify'], o).ok, true);
    const missing = cli(['orgs', 'get', '00000000-0000-4000-8000-000000000000'], o);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /HTTP 404/);
    rmSync(cfg, { recursive: true, force: true });
  } finally {
    await ingress.stop();
  }
});
