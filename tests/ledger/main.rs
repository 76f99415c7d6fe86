//! The ledger's guarantees: insert-only storage, tamper detection,
//! idempotency keys.

mod evidence;
mod idempotency_keys;
mod insert_only;
mod verify_tamper;
