-- How far each SIEM feed destination has acknowledged the stream: one row
-- per acknowledged batch (the position is the highest seq of a
-- destination). Insert-only, like entry.
CREATE TABLE export_progress (
    destination TEXT   NOT NULL,
    acked_seq   BIGINT NOT NULL CHECK (acked_seq >= 0),
    recorded_at TEXT   NOT NULL,
    PRIMARY KEY (destination, acked_seq)
);
CREATE TRIGGER export_progress_no_update_delete BEFORE UPDATE OR DELETE ON export_progress
    FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER export_progress_no_truncate BEFORE TRUNCATE ON export_progress
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();

GRANT SELECT, INSERT ON export_progress TO vellum_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON export_progress FROM vellum_writer;
