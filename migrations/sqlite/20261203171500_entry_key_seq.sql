-- Idempotency keys in seq order: `verify` re-derives each entry's key from
-- its body and compares it with the stored ones, streaming both in seq
-- order. Covering (seq, key), so the walk never visits the table itself.
CREATE INDEX entry_key_seq ON entry_key (seq, key);
