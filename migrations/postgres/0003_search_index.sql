-- Search index: every R4 AuditEvent search parameter of every entry, written
-- in the same transaction as the entry (DESIGN §5, issue 3). Insert-only like
-- the ledger. Row layout: see migrations/sqlite/0004_search_index.sql.
-- Text columns use the "C" collation so prefix ranges (string search) are
-- plain byte ranges whatever the database's locale.
CREATE TABLE search_index (
    seq   BIGINT NOT NULL REFERENCES entry (seq),
    param TEXT   COLLATE "C" NOT NULL,
    sys   TEXT   COLLATE "C",
    val   TEXT   COLLATE "C",
    exact TEXT   COLLATE "C",
    low   BIGINT,
    high  BIGINT
);

CREATE INDEX search_index_value ON search_index (param, val, sys, seq);
CREATE INDEX search_index_date ON search_index (param, low, high, seq) WHERE low IS NOT NULL;
CREATE INDEX search_index_entry ON search_index (seq, param);

CREATE TRIGGER search_index_no_update_delete BEFORE UPDATE OR DELETE ON search_index
    FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER search_index_no_truncate BEFORE TRUNCATE ON search_index
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();

GRANT SELECT, INSERT ON search_index TO vellum_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON search_index FROM vellum_writer;
