// Checks the deployment manifests against the code and the Kubernetes schemas:
//   node deploy_validate.mjs <compose.json> <name>=<rendered.json>...   (JSON made by deploy.sh)
//   node deploy_validate.mjs --self-test <compose.json> base=<rendered.json>
// Every rendered object must validate against the Kubernetes OpenAPI schemas
// (kubernetes-models); every HTTP service in services/ must have, in base and every
// overlay, a Deployment, Service, ServiceAccount, ConfigMap, Secret reference,
// /ready + /health probes, NetworkPolicy and PodDisruptionBudget, the hardening the
// issue asks for, a grace period longer than its drain, and configuration whose names
// the service actually declares. The compose file must run the same services.
// --self-test breaks copies of good objects and expects each break to be reported,
// so a checker that accepts anything fails.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const modelsDir = join(root, 'tests', 'e2e', 'node_modules', 'kubernetes-models');

// ---- what the code says: services, default ports, declared variables -------------
function macroRows() {
  // IAS_*_CFG_ROWS macros in libcommon headers and the variable names they declare.
  const out = new Map();
  const dir = join(root, 'libcommon', 'include', 'ias');
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.h'))) {
    const text = readFileSync(join(dir, f), 'utf8');
    const re = /#define\s+(IAS_\w+_CFG_ROWS)\b((?:.*\\\n)*.*)/g;
    for (let m; (m = re.exec(text));) {
      out.set(m[1], new Set([...m[2].matchAll(/\{\s*"(IAS_[A-Z0-9_]+)"/g)].map((x) => x[1])));
    }
  }
  return out;
}

export function discoverServices() {
  const macros = macroRows();
  const services = [];
  const dir = join(root, 'services');
  for (const name of readdirSync(dir).sort()) {
    const main = join(dir, name, 'main.c');
    if (!existsSync(main)) continue;
    const mainText = readFileSync(main, 'utf8');
    const port = mainText.match(/IAS_SERVICE_CFG_ROWS\s*\(\s*"(\d+)"\s*\)/);
    if (!port) continue; // not an HTTP service (migrate, CLI tools)
    if (name === 'mockllm') continue; // the model server: an example in the dev overlay, not base
    const declared = new Set();
    const required = new Set();
    for (const f of readdirSync(join(dir, name)).filter((x) => x.endsWith('.c'))) {
      const text = readFileSync(join(dir, name, f), 'utf8');
      for (const m of text.matchAll(/\{\s*"(IAS_[A-Z0-9_]+)"\s*,\s*IAS_CFG_[A-Z]+\s*,\s*(NULL|")/g)) {
        declared.add(m[1]);
        if (m[2] === 'NULL') required.add(m[1]);
      }
      for (const [macro, names] of macros) if (text.includes(macro)) names.forEach((n) => declared.add(n));
    }
    services.push({ name, port: Number(port[1]), declared, required });
  }
  return services;
}

// ---- schema validation -------------------------------------------------------------
const classCache = new Map();
async function modelClass(apiVersion, kind) {
  const gv = apiVersion.includes('/') ? apiVersion : `v1`;
  const file = join(modelsDir, ...gv.split('/'), 'index.js');
  if (!existsSync(file)) return null;
  if (!classCache.has(file)) classCache.set(file, await import(pathToFileURL(file)));
  return classCache.get(file)[kind] ?? null;
}

async function schemaErrors(obj) {
  const Cls = await modelClass(String(obj.apiVersion), String(obj.kind));
  if (!Cls) return [`unknown apiVersion/kind ${obj.apiVersion}/${obj.kind}`];
  const copy = structuredClone(obj);
  // Kubernetes decodes Secret data as base64 ignoring line breaks; kustomize wraps long values.
  if (copy.kind === 'Secret' && copy.data) for (const k of Object.keys(copy.data)) copy.data[k] = String(copy.data[k]).replace(/\s+/g, '');
  try {
    new Cls(copy).validate();
    return [];
  } catch (e) {
    return [String(e.message || e)];
  }
}

// ---- policy checks on one rendered set ----------------------------------------------
const byKind = (objs, kind) => objs.filter((o) => o.kind === kind);
const find = (objs, kind, name) => objs.find((o) => o.kind === kind && o.metadata?.name === name);
// Generated ConfigMaps/Secrets carry a hash suffix (name-<10 chars>).
const findGen = (objs, kind, name) =>
  find(objs, kind, name) ?? objs.find((o) => o.kind === kind && new RegExp(`^${name}-[a-z0-9]{10}$`).test(o.metadata?.name ?? ''));
const matches = (sel, labels) => Object.entries(sel ?? {}).every(([k, v]) => labels?.[k] === v);
const selects = (ls, labels) => {
  if (!ls) return false;
  if (!matches(ls.matchLabels, labels)) return false;
  for (const e of ls.matchExpressions ?? []) {
    const has = labels && e.key in labels;
    if (e.operator === 'In' && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === 'NotIn' && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
};
const durationS = (s) => {
  const m = String(s).match(/^(\d+)(ms|s|m|h)?$/);
  if (!m) return NaN;
  const n = Number(m[1]);
  return { ms: n / 1000, s: n, m: n * 60, h: n * 3600, undefined: n / 1000 }[m[2]];
};

function checkHardening(where, podSpec, errs) {
  const psc = podSpec.securityContext ?? {};
  if (podSpec.automountServiceAccountToken !== false) errs.push(`${where}: automountServiceAccountToken must be false`);
  for (const c of podSpec.containers ?? []) {
    const sc = c.securityContext ?? {};
    const at = `${where} container ${c.name}`;
    if (!(sc.runAsNonRoot ?? psc.runAsNonRoot)) errs.push(`${at}: runAsNonRoot not set`);
    if (sc.allowPrivilegeEscalation !== false) errs.push(`${at}: allowPrivilegeEscalation must be false`);
    if (sc.readOnlyRootFilesystem !== true) errs.push(`${at}: readOnlyRootFilesystem must be true`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) errs.push(`${at}: capabilities must drop ALL`);
    if ((sc.seccompProfile ?? psc.seccompProfile)?.type !== 'RuntimeDefault') errs.push(`${at}: seccompProfile must be RuntimeDefault`);
    const r = c.resources ?? {};
    if (!r.requests?.cpu || !r.requests?.memory || !r.limits?.memory) errs.push(`${at}: needs cpu/memory requests and a memory limit`);
  }
}

function envOf(objs, podSpec, container) {
  // Variables a container gets: its env, plus every key of referenced ConfigMaps/Secrets
  // that exist in this rendered set (operator-made Secrets are absent: null).
  const vars = new Map();
  for (const e of container.env ?? []) vars.set(e.name, 'env');
  const refs = [];
  for (const f of container.envFrom ?? []) {
    if (f.configMapRef) refs.push(['ConfigMap', f.configMapRef.name]);
    if (f.secretRef) refs.push(['Secret', f.secretRef.name]);
  }
  return { vars, refs: refs.map(([k, n]) => ({ kind: k, name: n, obj: find(objs, k, n) })) };
}

export function checkSet(name, objs, services, secretExample) {
  const errs = [];
  const isOverlay = name !== 'base';
  // unique kind/name
  const seen = new Set();
  for (const o of objs) {
    const key = `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
    if (seen.has(key)) errs.push(`${name}: duplicate ${key}`);
    seen.add(key);
    if (isOverlay && !o.metadata?.namespace) errs.push(`${name}: ${o.kind}/${o.metadata?.name} has no namespace`);
  }
  const deny = byKind(objs, 'NetworkPolicy').find(
    (p) => Object.keys(p.spec?.podSelector ?? {}).length === 0 && !p.spec.ingress && !p.spec.egress &&
      ['Ingress', 'Egress'].every((t) => p.spec.policyTypes?.includes(t)));
  if (!deny) errs.push(`${name}: no default-deny NetworkPolicy (podSelector {}, Ingress+Egress, no rules)`);

  for (const s of services) {
    const dn = `ias-${s.name}`;
    const d = find(objs, 'Deployment', dn);
    if (!d) { errs.push(`${name}: ${s.name}: no Deployment ${dn}`); continue; }
    const tpl = d.spec?.template ?? {};
    const labels = tpl.metadata?.labels ?? {};
    const podSpec = tpl.spec ?? {};
    if (!matches(d.spec?.selector?.matchLabels, labels)) errs.push(`${name}: ${dn}: selector does not match its pod labels`);
    const c = (podSpec.containers ?? [])[0];
    if (!c) { errs.push(`${name}: ${dn}: no container`); continue; }
    const port = (c.ports ?? []).find((p) => p.name === 'http');
    if (!port) errs.push(`${name}: ${dn}: no container port named http`);
    else if (port.containerPort !== s.port) errs.push(`${name}: ${dn}: containerPort ${port.containerPort}, service default is ${s.port}`);
    const probe = (p, path) => p?.httpGet?.path === path && (p.httpGet.port === 'http' || p.httpGet.port === s.port);
    if (!probe(c.readinessProbe, '/ready')) errs.push(`${name}: ${dn}: readinessProbe must be GET /ready on the http port`);
    if (!probe(c.livenessProbe, '/health')) errs.push(`${name}: ${dn}: livenessProbe must be GET /health on the http port`);
    checkHardening(`${name}: ${dn}`, podSpec, errs);
    if (podSpec.serviceAccountName !== dn || !find(objs, 'ServiceAccount', dn)) errs.push(`${name}: ${dn}: needs its own ServiceAccount ${dn}`);

    // configuration: ConfigMap + Secret reference; names the service declares
    const { vars, refs } = envOf(objs, podSpec, c);
    const cm = refs.find((r) => r.kind === 'ConfigMap');
    const sec = refs.find((r) => r.kind === 'Secret');
    if (!cm || !cm.obj) errs.push(`${name}: ${dn}: envFrom must reference an existing ConfigMap`);
    if (!sec) errs.push(`${name}: ${dn}: envFrom must reference a Secret`);
    const provided = new Map(vars);
    for (const r of refs) for (const k of Object.keys(r.obj?.data ?? {})) provided.set(k, `${r.kind} ${r.name}`);
    if (sec && !sec.obj) {
      // operator-made Secret: its keys are the example's
      const ex = secretExample.find((o) => o.metadata?.name === dn);
      if (!ex) errs.push(`${name}: ${dn}: Secret ${sec.name} is not in deploy/k8s/examples/secrets.example.yaml`);
      for (const k of Object.keys(ex?.stringData ?? {})) provided.set(k, `Secret ${sec.name} (example)`);
    }
    for (const v of s.required) if (!provided.has(v)) errs.push(`${name}: ${dn}: required ${v} is provided by no ConfigMap/Secret/env`);
    for (const [v, from] of provided) {
      if (v.startsWith('IAS_') && !s.declared.has(v)) errs.push(`${name}: ${dn}: ${from} sets ${v}, which ias-${s.name} does not declare`);
    }
    if (cm?.obj && Number(cm.obj.data?.IAS_PORT ?? s.port) !== s.port) errs.push(`${name}: ${dn}: IAS_PORT differs from the container port`);
    if (cm?.obj && cm.obj.data?.IAS_BIND !== '0.0.0.0') errs.push(`${name}: ${dn}: IAS_BIND must be 0.0.0.0 in a pod`);

    // graceful stop: preStop sleep + drain must fit in the grace period
    const drain = durationS(cm?.obj?.data?.IAS_DRAIN_TIMEOUT ?? '25s');
    const pre = c.lifecycle?.preStop?.exec?.command;
    const preS = pre && pre[0] === 'sleep' ? Number(pre[1]) : NaN;
    if (!(preS > 0)) errs.push(`${name}: ${dn}: needs a preStop sleep so endpoints go before SIGTERM`);
    const grace = podSpec.terminationGracePeriodSeconds ?? 30;
    if (!(grace > drain + (preS || 0))) errs.push(`${name}: ${dn}: terminationGracePeriodSeconds ${grace} <= preStop ${preS} + IAS_DRAIN_TIMEOUT ${drain}`);
    // writable paths exist as volumes (read-only root)
    const mounts = (c.volumeMounts ?? []).map((m) => m.mountPath);
    if (!mounts.includes('/tmp')) errs.push(`${name}: ${dn}: /tmp must be a volume (read-only root filesystem)`);
    const spool = cm?.obj?.data?.IAS_SPOOL_DIR;
    if (s.declared.has('IAS_SPOOL_DIR') && !spool) errs.push(`${name}: ${dn}: declares IAS_SPOOL_DIR: set it in the ConfigMap to a volume (the root is read-only)`);
    if (spool && !mounts.includes(spool)) errs.push(`${name}: ${dn}: IAS_SPOOL_DIR ${spool} is not a mounted volume`);

    // Service
    const svc = find(objs, 'Service', dn);
    if (!svc) errs.push(`${name}: ${s.name}: no Service ${dn}`);
    else {
      if (!matches(svc.spec?.selector, labels) || Object.keys(svc.spec?.selector ?? {}).length === 0) errs.push(`${name}: Service ${dn} does not select the pods`);
      const sp = (svc.spec?.ports ?? [])[0];
      if (!sp || sp.port !== s.port || (sp.targetPort !== 'http' && sp.targetPort !== s.port)) errs.push(`${name}: Service ${dn}: want port ${s.port} -> http`);
    }
    // NetworkPolicy selecting the pods, with ingress rules
    const nps = byKind(objs, 'NetworkPolicy').filter((p) => Object.keys(p.spec?.podSelector ?? {}).length > 0 && selects(p.spec.podSelector, labels));
    const inRules = nps.filter((p) => p.spec.policyTypes?.includes('Ingress')).flatMap((p) => p.spec.ingress ?? []);
    if (nps.length === 0 || inRules.length === 0) errs.push(`${name}: ${s.name}: no NetworkPolicy with ingress rules selects ${dn}`);
    const open = inRules.some((r) => !r.from || r.from.length === 0 || r.from.some((f) => f.ipBlock));
    if (s.name === 'ingress' && !open) errs.push(`${name}: ias-ingress must be reachable from outside`);
    if (s.name !== 'ingress' && open) errs.push(`${name}: ${dn} is reachable from outside the namespace; only ingress may be`);
    // PodDisruptionBudget
    if (!byKind(objs, 'PodDisruptionBudget').some((p) => selects(p.spec?.selector, labels))) errs.push(`${name}: ${s.name}: no PodDisruptionBudget`);
  }
  // HPAs on the hot path
  for (const h of ['ingress', 'router']) {
    const hpa = byKind(objs, 'HorizontalPodAutoscaler').find((x) => x.spec?.scaleTargetRef?.name === `ias-${h}`);
    if (!hpa) errs.push(`${name}: no HorizontalPodAutoscaler for ias-${h}`);
    else if (!find(objs, 'Deployment', `ias-${h}`)) errs.push(`${name}: HPA ias-${h} targets a missing Deployment`);
    else if (!(hpa.spec.minReplicas <= hpa.spec.maxReplicas)) errs.push(`${name}: HPA ias-${h}: minReplicas > maxReplicas`);
  }
  // model servers: only the router may connect
  const mp = byKind(objs, 'NetworkPolicy').find((p) => p.spec?.podSelector?.matchLabels?.['ias.dev/model-server'] === 'true');
  const fromRouterOnly = (rules) => rules.length > 0 && rules.every((r) => (r.from ?? []).length > 0 &&
    r.from.every((f) => !f.ipBlock && !f.namespaceSelector && selects(f.podSelector, { 'app.kubernetes.io/name': 'ias-router' }) &&
      !selects(f.podSelector, { 'app.kubernetes.io/name': 'ias-ingress' })));
  if (!mp || !fromRouterOnly(mp.spec.ingress ?? [])) errs.push(`${name}: model servers (ias.dev/model-server=true) must be reachable only from the router`);
  // datastores: only from the services that use them
  for (const [ds, port] of [['postgresql', 5432], ['redis', 6379], ['rabbitmq', 5672]]) {
    const p = byKind(objs, 'NetworkPolicy').find((x) => x.spec?.podSelector?.matchLabels?.['app.kubernetes.io/name'] === ds);
    const rules = p?.spec?.ingress ?? [];
    if (!p || rules.length === 0 || rules.some((r) => !(r.from ?? []).length || r.from.some((f) => f.ipBlock || f.namespaceSelector) ||
      !(r.ports ?? []).every((x) => x.port === port))) errs.push(`${name}: ${ds} must be reachable only from named ias pods on ${port}`);
  }
  // migration Job
  const job = find(objs, 'Job', 'ias-migrate');
  if (!job) errs.push(`${name}: no Job ias-migrate`);
  else {
    checkHardening(`${name}: Job ias-migrate`, job.spec.template.spec, errs);
    if (!(job.spec.template.spec.containers?.[0]?.args ?? []).includes('up')) errs.push(`${name}: Job ias-migrate must run "up"`);
  }
  // hardening of every other ias workload, and Services select something
  for (const d of byKind(objs, 'Deployment')) {
    const pl = d.spec?.template?.metadata?.labels ?? {};
    if (pl['app.kubernetes.io/part-of'] === 'ias' && !services.some((s) => d.metadata.name === `ias-${s.name}`)) {
      checkHardening(`${name}: ${d.metadata.name}`, d.spec.template.spec, errs);
    }
  }
  const pods = [...byKind(objs, 'Deployment'), ...byKind(objs, 'Job')].map((w) => w.spec?.template?.metadata?.labels ?? {});
  for (const svc of byKind(objs, 'Service')) {
    if (!pods.some((l) => matches(svc.spec?.selector, l))) errs.push(`${name}: Service ${svc.metadata.name} selects no pod`);
  }
  if (isOverlay) {
    for (const o of [...byKind(objs, 'Deployment'), ...byKind(objs, 'Job')]) {
      for (const c of o.spec.template.spec.containers ?? []) {
        if (c.image && /^ias-[a-z]+$/.test(c.image)) errs.push(`${name}: ${o.metadata.name}: image ${c.image} has no tag (set it in the overlay's images)`);
      }
    }
  }
  return errs;
}

// ---- compose ------------------------------------------------------------------------
export function checkCompose(compose, services) {
  const errs = [];
  const cs = compose.services ?? {};
  for (const ds of ['postgres', 'redis', 'rabbitmq']) {
    if (!cs[ds]?.healthcheck?.test) errs.push(`compose: ${ds} needs a healthcheck`);
  }
  if (!/^postgres:15/.test(cs.postgres?.image ?? '')) errs.push('compose: postgres must be postgres:15');
  if (!/^redis:7/.test(cs.redis?.image ?? '')) errs.push('compose: redis must be redis:7');
  if (!/^rabbitmq:3.*management/.test(cs.rabbitmq?.image ?? '')) errs.push('compose: rabbitmq must be rabbitmq:3 with the management plugin');
  const mig = cs.migrate;
  if (!mig || mig.build?.target !== 'migrate' || mig.depends_on?.postgres?.condition !== 'service_healthy') {
    errs.push('compose: migrate must build --target migrate and wait for a healthy postgres');
  }
  for (const s of [...services.map((x) => x.name), 'mockllm']) {
    const c = cs[s];
    if (!c) { errs.push(`compose: no service ${s}`); continue; }
    if (c.build?.args?.SERVICE !== s) errs.push(`compose: ${s} must build with SERVICE=${s}`);
    if (!c.healthcheck?.test) errs.push(`compose: ${s} needs a healthcheck`);
    if (c.read_only !== true || !/^10001/.test(String(c.user ?? ''))) errs.push(`compose: ${s} must run as 10001 with a read-only root`);
    if (s === 'mockllm') continue;
    const dep = c.depends_on ?? {};
    if (dep.migrate?.condition !== 'service_completed_successfully') errs.push(`compose: ${s} must wait for migrate to complete`);
    for (const ds of ['postgres', 'redis', 'rabbitmq']) {
      if (dep[ds]?.condition !== 'service_healthy') errs.push(`compose: ${s} must wait for a healthy ${ds}`);
    }
    const svc = services.find((x) => x.name === s);
    const env = c.environment ?? {};
    for (const v of svc.required) if (!(v in env)) errs.push(`compose: ${s}: required ${v} not set`);
    if (String(env.IAS_PORT ?? svc.port) !== String(svc.port)) errs.push(`compose: ${s}: IAS_PORT is not ${svc.port}`);
  }
  const published = Object.entries(cs).filter(([, c]) => (c.ports ?? []).some((p) => !String(p.host_ip ?? p).startsWith('127.0.0.1')));
  for (const [n] of published) if (n !== 'ingress') errs.push(`compose: ${n} publishes a port beyond loopback; only ingress may`);
  return errs;
}

// ---- main -----------------------------------------------------------------------------
async function main(argv) {
  const selfTest = argv[0] === '--self-test';
  if (selfTest) argv = argv.slice(1);
  const [composeFile, ...sets] = argv;
  const services = discoverServices();
  const secretExample = JSON.parse(process.env.IAS_SECRET_EXAMPLE_JSON ?? '[]');
  const compose = JSON.parse(readFileSync(composeFile, 'utf8'));
  const rendered = sets.map((s) => {
    const [n, f] = s.split('=');
    return [n, JSON.parse(readFileSync(f, 'utf8')).filter(Boolean)];
  });
  console.log(`services checked: ${services.map((s) => `${s.name}:${s.port}`).join(' ') || '(none with main.c yet)'}`);
  let passed = 0;
  let failed = 0;
  const report = (ok, what, errs = []) => {
    if (ok) passed++; else failed++;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
    for (const e of errs.slice(0, 40)) console.log(`       ${e}`);
  };

  if (!selfTest) {
    const ce = checkCompose(compose, services);
    report(ce.length === 0, 'docker-compose.yml runs every service with healthchecks and ordered start', ce);
    for (const [n, objs] of rendered) {
      const se = [];
      for (const o of objs) for (const e of await schemaErrors(o)) se.push(`${o.kind}/${o.metadata?.name}: ${e}`);
      report(se.length === 0, `${n}: ${objs.length} objects valid against the Kubernetes schemas`, se);
      const pe = checkSet(n, objs, services, secretExample);
      report(pe.length === 0, `${n}: deployments, services, probes, policies and hardening`, pe);
    }
    for (const o of secretExample) {
      const e = await schemaErrors(o);
      report(e.length === 0, `examples/secrets.example.yaml: Secret ${o.metadata?.name} valid`, e);
    }
  } else {
    // Each mutation of a good set must produce at least one error.
    const base = rendered.find(([n]) => n === 'base')?.[1];
    if (!base) throw new Error('--self-test needs base=<file>');
    const svc = services.length ? services : [{ name: 'router', port: 8081, declared: new Set(), required: new Set() }];
    const target = `ias-${svc[0].name}`;
    const dep = (objs) => find(objs, 'Deployment', target);
    const cases = [
      ['readinessProbe removed', (o) => { delete dep(o).spec.template.spec.containers[0].readinessProbe; }],
      ['liveness on /ready', (o) => { dep(o).spec.template.spec.containers[0].livenessProbe.httpGet.path = '/ready'; }],
      ['privilege escalation allowed', (o) => { dep(o).spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation = true; }],
      ['writable root', (o) => { delete dep(o).spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem; }],
      ['grace period too short', (o) => { dep(o).spec.template.spec.terminationGracePeriodSeconds = 10; }],
      ['Service removed', (o) => o.splice(o.indexOf(find(o, 'Service', target)), 1)],
      ['NetworkPolicy removed', (o) => o.splice(o.indexOf(find(o, 'NetworkPolicy', target)), 1)],
      ['default deny removed', (o) => o.splice(o.indexOf(find(o, 'NetworkPolicy', 'ias-default-deny')), 1)],
      ['router opened to the world', (o) => { find(o, 'NetworkPolicy', 'ias-router').spec.ingress.push({ ports: [{ port: 'http' }] }); }],
      ['model servers open to ingress', (o) => { find(o, 'NetworkPolicy', 'ias-model-servers').spec.ingress.push({ from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ias-ingress' } } }] }); }],
      ['PDB removed', (o) => o.splice(o.indexOf(find(o, 'PodDisruptionBudget', target)), 1)],
      ['router HPA removed', (o) => o.splice(o.indexOf(byKind(o, 'HorizontalPodAutoscaler').find((h) => h.metadata.name === 'ias-router')), 1)],
      ['wrong container port', (o) => { dep(o).spec.template.spec.containers[0].ports[0].containerPort = 9999; }],
      ['undeclared variable in ConfigMap', (o) => { find(o, 'ConfigMap', target).data.IAS_NO_SUCH_SETTING = '1'; }],
      ['migration Job removed', (o) => o.splice(o.indexOf(find(o, 'Job', 'ias-migrate')), 1)],
    ];
    for (const [what, mutate] of cases) {
      const copy = structuredClone(base);
      mutate(copy);
      const errs = checkSet('base', copy, svc, secretExample);
      report(errs.length > 0, `self-test: ${what} is refused${errs.length ? ` (${errs[0]})` : ''}`);
    }
    const bad = structuredClone(dep(base));
    bad.spec.replicas = 'two';
    bad.spec.template.spec.containers[0].ports[0].containerPort = 'http';
    report((await schemaErrors(bad)).length > 0, 'self-test: schema refuses replicas "two" and a string containerPort');
    report((await schemaErrors({ apiVersion: 'apps/v1', kind: 'Deploymnt', metadata: { name: 'x' } })).length > 0, 'self-test: unknown kind refused');
    const c2 = structuredClone(compose);
    delete c2.services[svc[0].name === 'mockllm' ? 'ingress' : svc[0].name].healthcheck;
    c2.services.migrate.depends_on = {};
    report(checkCompose(c2, svc).length >= 2, 'self-test: compose without a healthcheck / migrate ordering refused');
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main(process.argv.slice(2)).catch((e) => {
  console.error(e);
  process.exit(1);
});
