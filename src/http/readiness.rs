//! The start-up verification's outcome, which `/readyz` reports: a server
//! whose ledger fails verification must not look healthy to a load
//! balancer or orchestrator.

use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyState {
    /// Still recomputing the chain.
    Running,
    Held,
    /// Tampering found at this seq.
    Tampered {
        seq: i64,
    },
    /// The store could not be read to the end.
    Unreadable,
}

#[derive(Debug)]
pub struct StartupVerify(Mutex<VerifyState>);

impl Default for StartupVerify {
    fn default() -> Self {
        StartupVerify(Mutex::new(VerifyState::Running))
    }
}

impl StartupVerify {
    pub fn set(&self, s: VerifyState) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    pub fn get(&self) -> VerifyState {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
