-- Witnesses (C2SP tlog-witness / tlog-cosignature), both insert-only like
-- entry. witnessed_checkpoint: the checkpoints of other logs this vellum
-- cosigned as their witness; the newest per origin is the state every new
-- checkpoint of that log must be consistent with. witness_cosignature: the
-- cosignature lines other witnesses returned for this log's checkpoints.
CREATE TABLE witnessed_checkpoint (
    origin     TEXT   NOT NULL,
    tree_size  BIGINT NOT NULL CHECK (tree_size >= 0),
    root       BYTEA  NOT NULL CHECK (length(root) = 32),
    note       TEXT   NOT NULL,
    created_at TEXT   NOT NULL,
    PRIMARY KEY (origin, tree_size)
);
CREATE TRIGGER witnessed_checkpoint_no_update_delete BEFORE UPDATE OR DELETE
    ON witnessed_checkpoint FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER witnessed_checkpoint_no_truncate BEFORE TRUNCATE ON witnessed_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();

CREATE TABLE witness_cosignature (
    tree_size  BIGINT NOT NULL CHECK (tree_size >= 0),
    -- The witness's vkey name and key ID, `<name>+<hex id>`.
    witness    TEXT   NOT NULL,
    line       TEXT   NOT NULL,
    created_at TEXT   NOT NULL,
    PRIMARY KEY (tree_size, witness)
);
CREATE TRIGGER witness_cosignature_no_update_delete BEFORE UPDATE OR DELETE
    ON witness_cosignature FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER witness_cosignature_no_truncate BEFORE TRUNCATE ON witness_cosignature
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();

GRANT SELECT, INSERT ON witnessed_checkpoint, witness_cosignature TO vellum_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON witnessed_checkpoint, witness_cosignature FROM vellum_writer;
