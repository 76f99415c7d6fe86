-- Report summary rows: one compact, typed row per radiology AI event
-- (inference, override, rendering, model deployment) and one per finding of
-- an inference, derived from the entry's body above the ledger and written
-- by the single writer in the same transaction as the entry, so reports
-- aggregate these rows instead of parsing every body. Derived data: `vellum
-- verify` re-derives them from the bodies and reports any missing, extra or
-- different row; insert-only like the ledger.
--
-- summary_event: kind = inference | override | rendering | deployment;
-- recorded = the event's `recorded` as written, recorded_us = the same in µs
-- since the epoch (for range filters); refers_to = the inference an override
-- or rendering names; actor = the requesting user; patient = the patient
-- entity's `what` as JSON.
CREATE TABLE summary_event (
    seq          INTEGER PRIMARY KEY REFERENCES entry (seq),
    kind         TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    recorded     TEXT    NOT NULL,
    recorded_us  INTEGER NOT NULL,
    model        TEXT,
    version      TEXT,
    site         TEXT,
    actor        TEXT,
    refers_to    TEXT,
    action       TEXT,
    tta_ms       INTEGER,
    latency_ms   INTEGER,
    cpu_fallback INTEGER,
    digest_check TEXT,
    study_uid    TEXT,
    pixel_sha256 TEXT,
    patient      TEXT
);
CREATE INDEX summary_event_kind ON summary_event (kind, model, version, recorded_us);
CREATE INDEX summary_event_refers ON summary_event (refers_to, seq) WHERE refers_to IS NOT NULL;

-- One row per finding detail of an inference, in the body's order (ord);
-- confidence as its exact decimal text.
CREATE TABLE summary_finding (
    seq        INTEGER NOT NULL REFERENCES summary_event (seq),
    ord        INTEGER NOT NULL,
    code       TEXT    NOT NULL,
    confidence TEXT,
    PRIMARY KEY (seq, ord)
) WITHOUT ROWID;
CREATE INDEX summary_finding_code ON summary_finding (code, seq);

-- The back-fill of entries stored before summary rows existed: one row once
-- every entry up to `upto` has its rows.
CREATE TABLE summary_backfill (
    upto       INTEGER PRIMARY KEY,
    created_at TEXT    NOT NULL
);

CREATE TRIGGER summary_event_no_update BEFORE UPDATE ON summary_event
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (UPDATE refused)');
END;
CREATE TRIGGER summary_event_no_delete BEFORE DELETE ON summary_event
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (DELETE refused)');
END;
CREATE TRIGGER summary_finding_no_update BEFORE UPDATE ON summary_finding
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (UPDATE refused)');
END;
CREATE TRIGGER summary_finding_no_delete BEFORE DELETE ON summary_finding
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (DELETE refused)');
END;
CREATE TRIGGER summary_backfill_no_update BEFORE UPDATE ON summary_backfill
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (UPDATE refused)');
END;
CREATE TRIGGER summary_backfill_no_delete BEFORE DELETE ON summary_backfill
BEGIN
    SELECT RAISE(ABORT, 'vellum: the ledger is insert-only (DELETE refused)');
END;
-- `INSERT OR REPLACE` would delete the old row without a DELETE trigger on
-- connections without recursive_triggers: refuse the conflicting insert.
CREATE TRIGGER summary_event_not_replaced BEFORE INSERT ON summary_event
WHEN EXISTS (SELECT 1 FROM summary_event WHERE seq = NEW.seq)
BEGIN
    SELECT RAISE(ABORT, 'vellum: summary_event.seq already exists (insert-only)');
END;
CREATE TRIGGER summary_finding_not_replaced BEFORE INSERT ON summary_finding
WHEN EXISTS (SELECT 1 FROM summary_finding WHERE seq = NEW.seq AND ord = NEW.ord)
BEGIN
    SELECT RAISE(ABORT, 'vellum: summary_finding row already exists (insert-only)');
END;
