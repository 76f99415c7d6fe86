-- RFC 3161 time-stamp tokens of checkpoints: one per checkpoint and TSA,
-- the token exactly as the TSA returned it (DER CMS SignedData).
-- Insert-only, like entry and checkpoint.
CREATE TABLE time_seal (
    tree_size  INTEGER NOT NULL REFERENCES checkpoint (tree_size),
    tsa        TEXT    NOT NULL,
    token      BLOB    NOT NULL,
    gen_time   TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (tree_size, tsa)
);

CREATE TRIGGER time_seal_no_update BEFORE UPDATE ON time_seal
BEGIN
    SELECT RAISE(ABORT, 'vellum: time seals are insert-only (UPDATE refused)');
END;

CREATE TRIGGER time_seal_no_delete BEFORE DELETE ON time_seal
BEGIN
    SELECT RAISE(ABORT, 'vellum: time seals are insert-only (DELETE refused)');
END;
