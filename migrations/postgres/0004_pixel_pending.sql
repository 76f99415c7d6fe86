-- Pending pixel digests (issue 4): internal `_pixel-pending` search_index
-- rows; see migrations/sqlite/0005_pixel_pending.sql for the why and the
-- back-fill rule (only entries already indexed; later ones are indexed by
-- the Rust back-fill after the migrations).
--
-- The chain lock: another instance must not append (with the old code,
-- which writes no `_pixel-pending` rows) between MAX(seq) and this insert.
SELECT pg_advisory_xact_lock(130177982821741); -- store::postgres::CHAIN_LOCK_KEY

-- `json`, not `jsonb`: canonical bodies may hold escapes jsonb refuses.
INSERT INTO search_index (seq, param, val)
SELECT DISTINCT e.seq, '_pixel-pending',
       substr(ent.value -> 'what' -> 'identifier' ->> 'value', 9)
FROM entry e
CROSS JOIN LATERAL json_array_elements(
    CASE WHEN json_typeof(e.body::json -> 'entity') = 'array'
         THEN e.body::json -> 'entity' END) AS ent(value)
WHERE e.body LIKE '%pixel-sha256-pending%'
  AND e.seq <= (SELECT COALESCE(MAX(seq), 0) FROM search_index)
  AND ent.value -> 'what' -> 'identifier' ->> 'system' = 'urn:dicom:uid'
  AND left(ent.value -> 'what' -> 'identifier' ->> 'value', 8) = 'urn:oid:'
  AND length(ent.value -> 'what' -> 'identifier' ->> 'value') > 8
  AND EXISTS (
      SELECT 1 FROM json_array_elements(
          CASE WHEN json_typeof(ent.value -> 'what' -> 'identifier' -> 'type' -> 'coding') = 'array'
               THEN ent.value -> 'what' -> 'identifier' -> 'type' -> 'coding' END) AS c(value)
      WHERE c.value ->> 'code' = '110180')
  AND EXISTS (
      SELECT 1 FROM json_array_elements(
          CASE WHEN json_typeof(ent.value -> 'detail') = 'array'
               THEN ent.value -> 'detail' END) AS d(value)
      WHERE d.value ->> 'type' = 'pixel-sha256-pending');
