-- Search index: every R4 AuditEvent search parameter of every entry, written
-- in the same transaction as the entry (DESIGN §5, issue 3), so searches read
-- index rows instead of parsing bodies. Derived data, but insert-only like
-- the ledger: a row is never changed once its entry has committed.
--
-- One row per (entry, parameter value):
--   token      param, sys = system (NULL when absent), val = code
--   string     param, val = normalised (lower case, accents folded), exact = as stored
--   reference  param, sys = target type, val = target id (or the whole reference
--              when it is not Type/id), exact = the reference as written;
--              "<param>:identifier" rows: sys = identifier.system, val = identifier.value
--   date       param ("date" = recorded, "_lastUpdated"), [low, high) in µs since the epoch
CREATE TABLE search_index (
    seq   INTEGER NOT NULL REFERENCES entry (seq),
    param TEXT    NOT NULL,
    sys   TEXT,
    val   TEXT,
    exact TEXT,
    low   INTEGER,
    high  INTEGER
);

CREATE INDEX search_index_value ON search_index (param, val, sys, seq);
CREATE INDEX search_index_date ON search_index (param, low, high, seq) WHERE low IS NOT NULL;
CREATE INDEX search_index_entry ON search_index (seq, param);

CREATE TRIGGER search_index_no_update BEFORE UPDATE ON search_index
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (UPDATE refused)');
END;

CREATE TRIGGER search_index_no_delete BEFORE DELETE ON search_index
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (DELETE refused)');
END;
