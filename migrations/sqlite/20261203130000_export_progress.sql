-- How far each SIEM feed destination has acknowledged the stream: one row
-- per acknowledged batch (the position is the highest seq of a
-- destination). Insert-only, like entry: a position never moves back by an
-- edit, and the rows are the history of what was delivered when.
CREATE TABLE export_progress (
    destination TEXT    NOT NULL,
    acked_seq   INTEGER NOT NULL CHECK (acked_seq >= 0),
    recorded_at TEXT    NOT NULL,
    PRIMARY KEY (destination, acked_seq)
) WITHOUT ROWID;

CREATE TRIGGER export_progress_no_update BEFORE UPDATE ON export_progress
BEGIN
    SELECT RAISE(ABORT, 'vellum: export progress is insert-only (UPDATE refused)');
END;

CREATE TRIGGER export_progress_no_delete BEFORE DELETE ON export_progress
BEGIN
    SELECT RAISE(ABORT, 'vellum: export progress is insert-only (DELETE refused)');
END;
