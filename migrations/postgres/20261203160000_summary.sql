-- Report summary rows, derived from the entries' bodies and written in the
-- same transaction as the entry; insert-only. Row layout: see
-- migrations/sqlite/20261203160000_summary.sql.
CREATE TABLE summary_event (
    seq          BIGINT PRIMARY KEY REFERENCES entry (seq),
    kind         TEXT   COLLATE "C" NOT NULL,
    event_id     TEXT   COLLATE "C" NOT NULL,
    recorded     TEXT   NOT NULL,
    recorded_us  BIGINT NOT NULL,
    model        TEXT   COLLATE "C",
    version      TEXT   COLLATE "C",
    site         TEXT   COLLATE "C",
    actor        TEXT   COLLATE "C",
    refers_to    TEXT   COLLATE "C",
    action       TEXT   COLLATE "C",
    tta_ms       BIGINT,
    latency_ms   BIGINT,
    cpu_fallback BOOLEAN,
    digest_check TEXT,
    study_uid    TEXT,
    pixel_sha256 TEXT,
    patient      TEXT
);
CREATE INDEX summary_event_kind ON summary_event (kind, model, version, recorded_us);
CREATE INDEX summary_event_refers ON summary_event (refers_to, seq) WHERE refers_to IS NOT NULL;

CREATE TABLE summary_finding (
    seq        BIGINT NOT NULL REFERENCES summary_event (seq),
    ord        INTEGER NOT NULL,
    code       TEXT   COLLATE "C" NOT NULL,
    confidence TEXT,
    PRIMARY KEY (seq, ord)
);
CREATE INDEX summary_finding_code ON summary_finding (code, seq);

CREATE TABLE summary_backfill (
    upto       BIGINT PRIMARY KEY,
    created_at TEXT   NOT NULL
);

CREATE TRIGGER summary_event_no_update_delete BEFORE UPDATE OR DELETE ON summary_event
    FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER summary_event_no_truncate BEFORE TRUNCATE ON summary_event
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER summary_finding_no_update_delete BEFORE UPDATE OR DELETE ON summary_finding
    FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER summary_finding_no_truncate BEFORE TRUNCATE ON summary_finding
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER summary_backfill_no_update_delete BEFORE UPDATE OR DELETE ON summary_backfill
    FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER summary_backfill_no_truncate BEFORE TRUNCATE ON summary_backfill
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();

GRANT SELECT, INSERT ON summary_event, summary_finding, summary_backfill TO vellum_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON summary_event, summary_finding, summary_backfill FROM vellum_writer;
