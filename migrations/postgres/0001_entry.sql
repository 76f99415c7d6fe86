-- The ledger: one row per AuditEvent, numbered without gaps, hash-chained.
-- Insert-only: triggers refuse UPDATE, DELETE and TRUNCATE even for the
-- owner, and the role the server runs as (vellum_writer) has no such rights.
CREATE TABLE entry (
    seq          BIGINT PRIMARY KEY CHECK (seq > 0),
    id           TEXT   NOT NULL UNIQUE,
    body         TEXT   NOT NULL,
    body_sha256  BYTEA  NOT NULL CHECK (length(body_sha256) = 32),
    chain_hash   BYTEA  NOT NULL CHECK (length(chain_hash) = 32),
    leaf_hash    BYTEA  NOT NULL CHECK (length(leaf_hash) = 32),
    last_updated TEXT   NOT NULL
);

CREATE FUNCTION vellum_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vellum: the ledger is insert-only (% on % refused)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION vellum_entry_extends_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq <> COALESCE((SELECT MAX(seq) FROM entry), 0) + 1 THEN
        RAISE EXCEPTION 'vellum: entry.seq % does not extend the chain by exactly one', NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER entry_insert_extends_chain BEFORE INSERT ON entry
    FOR EACH ROW EXECUTE FUNCTION vellum_entry_extends_chain();
CREATE TRIGGER entry_no_update_delete BEFORE UPDATE OR DELETE ON entry
    FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER entry_no_truncate BEFORE TRUNCATE ON entry
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();

-- The role the server should run as: it can read and append, nothing else.
-- Roles are cluster-wide, so another database may have created it already.
DO $$
BEGIN
    CREATE ROLE vellum_writer NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO vellum_writer;
GRANT SELECT, INSERT ON entry TO vellum_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON entry FROM vellum_writer;
