-- Date index in sort order: (param, low, seq) is the order of `_sort=date`
-- (ties in ledger order), so a date-sorted search walks it and stops at a
-- full page instead of sorting every row of the range (docs/performance.md,
-- search latency). `high` stays in the index for the
-- range conditions. Replaces (param, low, high, seq): same columns, so no
-- extra cost per append. Index rows are derived data; the table's rows stay
-- insert-only.
DROP INDEX search_index_date;
CREATE INDEX search_index_date ON search_index (param, low, seq, high) WHERE low IS NOT NULL;
