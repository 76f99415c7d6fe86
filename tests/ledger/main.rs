//! The ledger's guarantees: insert-only storage, tamper detection,
//! idempotency keys, witnesses.

mod evidence;
mod idempotency_keys;
mod insert_only;
mod verify_tamper;
mod witness;
