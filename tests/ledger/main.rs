//! The ledger's guarantees: insert-only storage, tamper detection,
//! idempotency keys, witnesses.
//! idempotency keys, RFC 3161 time seals of checkpoints.

mod evidence;
mod idempotency_keys;
mod insert_only;
mod time_seal;
mod verify_tamper;
mod witness;
