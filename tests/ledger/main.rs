//! The ledger's guarantees: insert-only storage, tamper detection,
//! idempotency keys.

mod idempotency_keys;
mod insert_only;
mod evidence;
mod verify_tamper;
