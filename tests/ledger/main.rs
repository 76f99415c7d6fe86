//! The ledger's guarantees: insert-only storage, tamper detection,
//! idempotency keys and two writers on one database.

mod idempotency_keys;
mod insert_only;
mod two_writers;
mod verify_tamper;
