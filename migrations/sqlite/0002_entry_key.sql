-- Idempotency keys: a client's retry (same MSH-10 from the same sender, same
-- conditional-create identifier) maps to the entry it created the first time.
-- Written in the same transaction as the entry; insert-only like it.
CREATE TABLE entry_key (
    key TEXT    PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES entry (seq)
);

CREATE TRIGGER entry_key_no_update BEFORE UPDATE ON entry_key
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (UPDATE refused)');
END;

CREATE TRIGGER entry_key_no_delete BEFORE DELETE ON entry_key
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (DELETE refused)');
END;
