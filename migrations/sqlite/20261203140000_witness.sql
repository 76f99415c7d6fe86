-- Witnesses (C2SP tlog-witness / tlog-cosignature), both insert-only like
-- entry. witnessed_checkpoint: the checkpoints of other logs this vellum
-- cosigned as their witness; the newest per origin is the state every new
-- checkpoint of that log must be consistent with. witness_cosignature: the
-- cosignature lines other witnesses returned for this log's checkpoints.
CREATE TABLE witnessed_checkpoint (
    origin     TEXT    NOT NULL,
    tree_size  INTEGER NOT NULL CHECK (tree_size >= 0),
    root       BLOB    NOT NULL CHECK (length(root) = 32),
    note       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (origin, tree_size)
) WITHOUT ROWID;

CREATE TRIGGER witnessed_checkpoint_no_update BEFORE UPDATE ON witnessed_checkpoint
BEGIN
    SELECT RAISE(ABORT, 'vellum: witnessed checkpoints are insert-only (UPDATE refused)');
END;

CREATE TRIGGER witnessed_checkpoint_no_delete BEFORE DELETE ON witnessed_checkpoint
BEGIN
    SELECT RAISE(ABORT, 'vellum: witnessed checkpoints are insert-only (DELETE refused)');
END;

CREATE TABLE witness_cosignature (
    tree_size  INTEGER NOT NULL CHECK (tree_size >= 0),
    -- The witness's vkey name and key ID, `<name>+<hex id>`.
    witness    TEXT    NOT NULL,
    line       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (tree_size, witness)
) WITHOUT ROWID;

CREATE TRIGGER witness_cosignature_no_update BEFORE UPDATE ON witness_cosignature
BEGIN
    SELECT RAISE(ABORT, 'vellum: cosignatures are insert-only (UPDATE refused)');
END;

CREATE TRIGGER witness_cosignature_no_delete BEFORE DELETE ON witness_cosignature
BEGIN
    SELECT RAISE(ABORT, 'vellum: cosignatures are insert-only (DELETE refused)');
END;
