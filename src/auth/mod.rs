//! Who may do what: the roles, the credentials vellum accepts (bearer tokens
//! configured by their SHA-256, the development token, mTLS client
//! certificates mapped to a subject, OAuth2 / SMART JWTs) and the access
//! policy of every HTTP endpoint. Types and rules; the only I/O is the
//! token file and the JWK Set (file or URL). The HTTP middleware
//! (`crate::http::authn`) and the MLLP and syslog listeners apply them.

pub mod authenticator;
pub mod client_cert;
pub mod jwt;
pub mod key_scope;
pub mod policy;
pub mod principal;
pub mod role;
pub mod token;
pub mod token_file;

pub use authenticator::{AuthError, Authenticator};
pub use policy::{requirement, Requirement};
pub use principal::{Credential, Principal};
pub use role::{Role, RoleSet};
pub use token::{Grant, GrantLineError, TokenHash, TokenRegistry};
