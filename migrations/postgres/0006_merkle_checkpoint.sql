-- The Merkle tree's complete subtrees above the leaves (level >= 1; level 0
-- is entry.leaf_hash), written once when their last leaf is appended, and
-- signed checkpoints. Both insert-only, like entry.
CREATE TABLE merkle_node (
    level INTEGER NOT NULL CHECK (level > 0),
    idx   BIGINT  NOT NULL CHECK (idx >= 0),
    hash  BYTEA   NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);
CREATE TRIGGER merkle_node_no_update_delete BEFORE UPDATE OR DELETE ON merkle_node
    FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER merkle_node_no_truncate BEFORE TRUNCATE ON merkle_node
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();

CREATE TABLE checkpoint (
    tree_size  BIGINT PRIMARY KEY CHECK (tree_size >= 0),
    note       TEXT   NOT NULL,
    created_at TEXT   NOT NULL
);
CREATE TRIGGER checkpoint_no_update_delete BEFORE UPDATE OR DELETE ON checkpoint
    FOR EACH ROW EXECUTE FUNCTION vellum_refuse_change();
CREATE TRIGGER checkpoint_no_truncate BEFORE TRUNCATE ON checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION vellum_refuse_change();

GRANT SELECT, INSERT ON merkle_node, checkpoint TO vellum_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON merkle_node, checkpoint FROM vellum_writer;
