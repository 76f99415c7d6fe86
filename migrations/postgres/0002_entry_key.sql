-- Idempotency keys: a client's retry (same MSH-10 from the same sender, same
-- conditional-create identifier) maps to the entry it created the first time.
-- Written in the same transaction as the entry; insert-only like it.
CREATE TABLE entry_key (
    key TEXT   PRIMARY KEY,
    seq BIGINT NOT NULL REFERENCES entry (seq)
);

CREATE TRIGGER entry_key_no_update_delete BEFORE UPDATE OR DELETE ON entry_key
    FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER entry_key_no_truncate BEFORE TRUNCATE ON entry_key
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();

GRANT SELECT, INSERT ON entry_key TO vellum_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON entry_key FROM vellum_writer;
