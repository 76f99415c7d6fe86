//! The authenticated caller of one request.

use super::role::{Role, RoleSet};

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token configured by its SHA-256.
    Token,
    /// The development token (`VELLUM_DEV_TOKEN`).
    DevToken,
    /// A TLS client certificate mapped to a subject.
    ClientCertificate,
    /// An OAuth2 / SMART Backend Services JWT.
    Jwt,
}

impl Credential {
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::Token => "token",
            Credential::DevToken => "dev-token",
            Credential::ClientCertificate => "client-certificate",
            Credential::Jwt => "jwt",
        }
    }
}

/// Who is calling and with which roles. Handlers find it in the request's
/// extensions once the authentication middleware has let the request in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The configured subject: a service name, a user id, or for a
    /// clinician the identifier they appear under as an agent
    /// (`system|value`, or `value` for any system).
    pub subject: String,
    pub roles: RoleSet,
    pub credential: Credential,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(role)
    }

    /// Whether reads must be limited to events naming the caller as an
    /// agent: a clinician without a role that reads everything.
    pub fn reads_only_own_events(&self) -> bool {
        self.has(Role::Clinician) && !self.has(Role::Auditor)
    }

    /// Whether patient identifiers must be pseudonymised for the caller:
    /// QA staff without a role that sees identifiers.
    pub fn sees_pseudonyms_only(&self) -> bool {
        self.has(Role::Qa) && !self.has(Role::Auditor)
    }

    /// The scope idempotency keys are built in: two senders can never
    /// answer each other's retries.
    pub fn key_scope(&self) -> &str {
        &self.subject
    }
}
