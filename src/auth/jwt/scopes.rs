//! OAuth2 scopes mapped to vellum roles (`auth.jwt_scope_roles`): lines
//! `<scope>=<role,role…>`. A token's roles are the union of the roles of
//! every scope it carries that the table names; scopes it does not name
//! grant nothing. Scopes are compared exactly (SMART scopes are
//! case-sensitive).

use super::super::role::RoleSet;

/// The default table, in SMART App Launch v2 (`.c`, `.rs`) and v1
/// (`.write`, `.read`) syntax, plus two vellum scopes for the roles SMART
/// has no word for.
pub const DEFAULT_SCOPE_ROLES: &[&str] = &[
    "system/AuditEvent.c=source",
    "system/AuditEvent.write=source",
    "system/AuditEvent.rs=auditor",
    "system/AuditEvent.read=auditor",
    "user/AuditEvent.rs=clinician",
    "user/AuditEvent.read=clinician",
    "system/vellum.qa=qa",
    "system/vellum.admin=admin",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeLineError {
    #[error("expected `<scope>=<role,role…>`")]
    Shape,
    #[error("unknown role `{0}`")]
    Role(String),
}

/// The configured scope → roles table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRoles(Vec<(String, RoleSet)>);

impl Default for ScopeRoles {
    fn default() -> Self {
        // The default lines are constants known to parse.
        ScopeRoles::parse(DEFAULT_SCOPE_ROLES.iter().copied()).unwrap_or(ScopeRoles(Vec::new()))
    }
}

impl ScopeRoles {
    /// The table of these lines; an error names the line (from 1).
    pub fn parse<'a>(
        lines: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, (usize, ScopeLineError)> {
        lines
            .into_iter()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let (scope, roles) = l.split_once('=').ok_or((i + 1, ScopeLineError::Shape))?;
                let scope = scope.trim();
                if scope.is_empty() || scope.contains(char::is_whitespace) {
                    return Err((i + 1, ScopeLineError::Shape));
                }
                let roles =
                    RoleSet::parse_list(roles).map_err(|e| (i + 1, ScopeLineError::Role(e.0)))?;
                Ok((scope.to_string(), roles))
            })
            .collect::<Result<_, _>>()
            .map(ScopeRoles)
    }

    /// The roles a space-separated `scope` claim grants.
    pub fn roles(&self, scope_claim: &str) -> RoleSet {
        scope_claim
            .split_ascii_whitespace()
            .flat_map(|s| {
                self.0
                    .iter()
                    .filter(move |(scope, _)| scope == s)
                    .flat_map(|(_, roles)| roles.iter())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn scopes_grant_the_union_of_their_roles() {
        let t = ScopeRoles::default();
        assert_eq!(
            t.roles("launch system/AuditEvent.c  system/AuditEvent.rs"),
            RoleSet::of(&[Role::Source, Role::Auditor])
        );
        assert_eq!(
            t.roles("system/AuditEvent.write"),
            RoleSet::of(&[Role::Source])
        );
        assert!(t.roles("system/Patient.rs SYSTEM/AUDITEVENT.RS").is_empty());
        let custom = ScopeRoles::parse(["a=qa,admin", " ", "b = clinician"]).unwrap();
        assert_eq!(
            custom.roles("b a"),
            RoleSet::of(&[Role::Qa, Role::Admin, Role::Clinician])
        );
        assert_eq!(
            ScopeRoles::parse(["x=wizard"]),
            Err((1, ScopeLineError::Role("wizard".into())))
        );
        assert_eq!(
            ScopeRoles::parse(["a=qa", "nothing"]),
            Err((2, ScopeLineError::Shape))
        );
    }
}
