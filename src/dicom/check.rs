//! The one rule for a study digest a sender supplied against vellum's own
//! (DICOM pixel digests): vellum never replaces the sender's value; it
//! records whether the two agree. Used by event enrichment and by the AI
//! API's inference builder.

/// How a sender's digest relates to vellum's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestCheck {
    /// Both present and equal.
    Agree,
    /// Both present and different: recorded and counted, never replaced.
    Mismatch,
    /// Only vellum's: it is recorded as the digest.
    VellumOnly,
    /// Only the sender's: recorded, unverified.
    SenderOnly,
    /// Neither.
    Neither,
}

impl DigestCheck {
    pub fn of<T: PartialEq + ?Sized>(sender: Option<&T>, vellum: Option<&T>) -> Self {
        match (sender, vellum) {
            (Some(s), Some(v)) if s == v => DigestCheck::Agree,
            (Some(_), Some(_)) => DigestCheck::Mismatch,
            (None, Some(_)) => DigestCheck::VellumOnly,
            (Some(_), None) => DigestCheck::SenderOnly,
            (None, None) => DigestCheck::Neither,
        }
    }

    /// The code recorded in AI inference events (`digest-check` detail).
    pub fn code(self) -> &'static str {
        match self {
            DigestCheck::Agree => "agree",
            DigestCheck::Mismatch => "mismatch",
            DigestCheck::VellumOnly => "vellum-only",
            DigestCheck::SenderOnly => "unverified",
            DigestCheck::Neither => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        assert_eq!(DigestCheck::of(Some("a"), Some("a")), DigestCheck::Agree);
        assert_eq!(DigestCheck::of(Some("a"), Some("b")), DigestCheck::Mismatch);
        assert_eq!(DigestCheck::of(None, Some("b")), DigestCheck::VellumOnly);
        assert_eq!(DigestCheck::of(Some("a"), None), DigestCheck::SenderOnly);
        assert_eq!(DigestCheck::of::<str>(None, None), DigestCheck::Neither);
    }
}
