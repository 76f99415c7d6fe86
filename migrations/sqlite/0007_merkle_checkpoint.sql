-- The Merkle tree's complete subtrees above the leaves (level >= 1; level 0
-- is entry.leaf_hash), written once when their last leaf is appended, and
-- signed checkpoints. Both insert-only, like entry.
CREATE TABLE merkle_node (
    level INTEGER NOT NULL CHECK (level > 0),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

CREATE TRIGGER merkle_node_no_update BEFORE UPDATE ON merkle_node
BEGIN
    SELECT RAISE(ABORT, 'vellum: the Merkle tree is insert-only (UPDATE refused)');
END;

CREATE TRIGGER merkle_node_no_delete BEFORE DELETE ON merkle_node
BEGIN
    SELECT RAISE(ABORT, 'vellum: the Merkle tree is insert-only (DELETE refused)');
END;

CREATE TABLE checkpoint (
    tree_size  INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    note       TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);

CREATE TRIGGER checkpoint_no_update BEFORE UPDATE ON checkpoint
BEGIN
    SELECT RAISE(ABORT, 'vellum: checkpoints are insert-only (UPDATE refused)');
END;

CREATE TRIGGER checkpoint_no_delete BEFORE DELETE ON checkpoint
BEGIN
    SELECT RAISE(ABORT, 'vellum: checkpoints are insert-only (DELETE refused)');
END;
