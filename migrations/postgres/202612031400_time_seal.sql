-- RFC 3161 time-stamp tokens of checkpoints: one per checkpoint and TSA,
-- the token exactly as the TSA returned it (DER CMS SignedData).
-- Insert-only, like entry and checkpoint.
CREATE TABLE time_seal (
    tree_size  BIGINT NOT NULL REFERENCES checkpoint (tree_size),
    tsa        TEXT   NOT NULL,
    token      BYTEA  NOT NULL,
    gen_time   TEXT   NOT NULL,
    created_at TEXT   NOT NULL,
    PRIMARY KEY (tree_size, tsa)
);
CREATE TRIGGER time_seal_no_update_delete BEFORE UPDATE OR DELETE ON time_seal
    FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER time_seal_no_truncate BEFORE TRUNCATE ON time_seal
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();

GRANT SELECT, INSERT ON time_seal TO vellum_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON time_seal FROM vellum_writer;
