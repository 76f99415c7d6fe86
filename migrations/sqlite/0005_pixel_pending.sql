-- Pending pixel digests (issue 4): from now on every entry whose study entity
-- carries a `pixel-sha256-pending` detail gets an internal `_pixel-pending`
-- search_index row (val = Study Instance UID), written with the entry
-- (src/fhir/search_index.rs). The digest worker's work is those rows without
-- a `pixel-digest:<event id>|<uid>` idempotency key (the follow-up event).
--
-- Back-fill for entries stored before this migration. Only entries already
-- indexed (seq <= MAX(search_index.seq)): entries after that have no index
-- rows yet and get all of them, `_pixel-pending` included, from the Rust
-- back-fill that runs after the migrations (store::sqlite::backfill_index,
-- which resumes after MAX(seq) and so must not see rows for later seqs).
-- The conditions are those of dicom::enrich::pending_study.
INSERT INTO search_index (seq, param, val)
SELECT DISTINCT e.seq, '_pixel-pending',
       substr(json_extract(ent.value, '$.what.identifier.value'), 9)
FROM entry e, json_each(e.body, '$.entity') ent
WHERE e.body LIKE '%pixel-sha256-pending%'
  AND e.seq <= (SELECT COALESCE(MAX(seq), 0) FROM search_index)
  AND json_extract(ent.value, '$.what.identifier.system') = 'urn:dicom:uid'
  AND substr(json_extract(ent.value, '$.what.identifier.value'), 1, 8) = 'urn:oid:'
  AND length(json_extract(ent.value, '$.what.identifier.value')) > 8
  AND EXISTS (SELECT 1 FROM json_each(ent.value, '$.what.identifier.type.coding') c
              WHERE json_extract(c.value, '$.code') = '110180')
  AND EXISTS (SELECT 1 FROM json_each(ent.value, '$.detail') d
              WHERE json_extract(d.value, '$.type') = 'pixel-sha256-pending');
