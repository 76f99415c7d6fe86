//! The five roles and sets of them.

use std::fmt;
use std::str::FromStr;

/// A role a principal holds. What each may do is [`super::policy`]'s table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Appends events (FHIR create and Bundles, the AI API, DICOM digests).
    Source,
    /// Reads, searches, reports, exports, verifies, proofs: everything.
    Auditor,
    /// QA reports, with patient identifiers pseudonymised.
    Qa,
    /// Reads only the events where they are an agent.
    Clinician,
    /// Checkpoints, keys, tokens, metrics.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Source,
        Role::Auditor,
        Role::Qa,
        Role::Clinician,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Auditor => "auditor",
            Role::Qa => "qa",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (roles: source, auditor, qa, clinician, admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownRole(s.trim().to_string()))
    }
}

/// A set of roles (a bit set: five roles).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    pub const EMPTY: RoleSet = RoleSet(0);

    /// The set with these bits (bit `n` = the role declared `n`th).
    pub const fn from_bits(bits: u8) -> RoleSet {
        RoleSet(bits & 0b1_1111)
    }

    pub fn all() -> RoleSet {
        Role::ALL.into_iter().collect()
    }

    pub fn of(roles: &[Role]) -> RoleSet {
        roles.iter().copied().collect()
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub fn intersects(self, other: RoleSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Comma-separated names (`source,auditor`), the form settings use.
    pub fn parse_list(s: &str) -> Result<RoleSet, UnknownRole> {
        s.split(',')
            .filter(|r| !r.trim().is_empty())
            .map(Role::from_str)
            .collect()
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        RoleSet(iter.into_iter().fold(0, |acc, r| acc | r.bit()))
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Role::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoleSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip() {
        let set = RoleSet::parse_list("auditor, source").unwrap();
        assert!(set.contains(Role::Source) && set.contains(Role::Auditor));
        assert!(!set.contains(Role::Admin));
        assert_eq!(set.to_string(), "source,auditor");
        assert_eq!(RoleSet::all().iter().count(), 5);
        assert!(RoleSet::parse_list("root").is_err());
        assert!(RoleSet::parse_list("").unwrap().is_empty());
    }
}
