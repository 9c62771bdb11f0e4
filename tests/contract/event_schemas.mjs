// Every event schema in proto/events compiles (JSON Schema 2020-12), every example
// validates against its schema, and a few broken copies of each example are refused,
// so a schema that accepts anything fails here.
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'tests', 'e2e', 'package.json'));
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;

const dir = join(root, 'proto', 'events');
const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);
let failures = 0;
const fail = (msg) => { failures++; console.log('FAIL ' + msg); };

const schemas = readdirSync(dir).filter((f) => f.endsWith('.schema.json'));
if (schemas.length === 0) fail('no schemas in proto/events');
for (const file of schemas) {
  const name = file.replace(/\.schema\.json$/, '');
  const schema = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  let validate;
  try {
    validate = ajv.compile(schema);
  } catch (e) {
    fail(`${file}: does not compile: ${e.message}`);
    continue;
  }
  let example;
  try {
    example = JSON.parse(readFileSync(join(dir, 'examples', `${name}.json`), 'utf8'));
  } catch (e) {
    fail(`${name}: no readable example in proto/events/examples/ (${e.message})`);
    continue;
  }
  if (!validate(example)) {
    fail(`${name}: example invalid: ${ajv.errorsText(validate.errors)}`);
    continue;
  }
  // Negative cases: each required field missing, and an unknown field added.
  for (const req of schema.required ?? []) {
    const copy = structuredClone(example);
    delete copy[req];
    if (validate(copy)) fail(`${name}: accepted an event without required '${req}'`);
  }
  const extra = { ...structuredClone(example), no_such_field_xyz: 1 };
  if (validate(extra) && schema.additionalProperties === false)
    fail(`${name}: accepted an unknown field`);
  if (!/\.v\d+$/.test(name)) fail(`${name}: event names carry their version (.vN)`);
  console.log(`ok ${name}`);
}
process.exit(failures ? 1 : 0);
