-- The ledger: one row per AuditEvent, numbered without gaps, hash-chained.
-- Insert-only: the triggers below refuse UPDATE and DELETE, and an INSERT
-- must extend the chain by exactly one (no gaps, no back-filling).
CREATE TABLE entry (
    seq          INTEGER PRIMARY KEY CHECK (seq > 0),
    id           TEXT    NOT NULL UNIQUE,
    body         TEXT    NOT NULL,
    body_sha256  BLOB    NOT NULL CHECK (length(body_sha256) = 32),
    chain_hash   BLOB    NOT NULL CHECK (length(chain_hash) = 32),
    leaf_hash    BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    last_updated TEXT    NOT NULL
);

CREATE TRIGGER entry_insert_extends_chain BEFORE INSERT ON entry
WHEN NEW.seq <> COALESCE((SELECT MAX(seq) FROM entry), 0) + 1
BEGIN
    SELECT RAISE(ABORT, 'vellum: entry.seq must extend the chain by exactly one');
END;

CREATE TRIGGER entry_no_update BEFORE UPDATE ON entry
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (UPDATE refused)');
END;

CREATE TRIGGER entry_no_delete BEFORE DELETE ON entry
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (DELETE refused)');
END;
