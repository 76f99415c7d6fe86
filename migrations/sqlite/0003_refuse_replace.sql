-- `REPLACE INTO` (or `INSERT OR REPLACE`) resolves a UNIQUE conflict by
-- deleting the old row, and SQLite fires DELETE triggers for that only when
-- the connection enabled recursive_triggers. vellum's own connections do;
-- other clients (the sqlite3 shell) may not. Refuse the conflicting insert
-- itself, so no connection setting can turn an INSERT into a DELETE.
CREATE TRIGGER entry_id_not_reused BEFORE INSERT ON entry
WHEN EXISTS (SELECT 1 FROM entry WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'vellum: entry.id already exists (the ledger is insert-only)');
END;

CREATE TRIGGER entry_key_not_reused BEFORE INSERT ON entry_key
WHEN EXISTS (SELECT 1 FROM entry_key WHERE key = NEW.key)
BEGIN
    SELECT RAISE(ABORT, 'vellum: entry_key.key already exists (the ledger is insert-only)');
END;
