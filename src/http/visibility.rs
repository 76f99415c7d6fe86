//! What a clinician may see: only events naming them as an agent
//! (`agent.identifier` = their subject). The restriction is added to the
//! query itself, so counts, paging and reads by id all respect it.

use vellum_ledger::store::search::Condition;
use vellum_ledger::store::{StoreError, StoredEntry};
use vellum_ledger::Ledger;

use crate::fhir::search;

/// The conditions restricting a search to events where `subject` is an
/// agent. `subject` is `system|value` or a bare value (any system).
pub fn own_events(subject: &str) -> Vec<Condition> {
    let pairs = [("agent.identifier".to_string(), subject.to_string())];
    match search::parse(&pairs, true, 0) {
        Ok(sr) => sr.query.conditions,
        // A subject the token syntax cannot hold matches nothing; an empty
        // `_id` list is the query that says so.
        Err(_) => match search::parse(&[("_id".into(), "-".into())], true, 0) {
            Ok(sr) => sr.query.conditions,
            Err(_) => Vec::new(),
        },
    }
}

/// The event `id` if `subject` is one of its agents.
pub async fn read_own(
    ledger: &Ledger,
    id: &str,
    subject: &str,
) -> Result<Option<StoredEntry>, StoreError> {
    let Ok(mut sr) = search::parse(&[("_id".to_string(), id.to_string())], true, 0) else {
        return Ok(None);
    };
    sr.query.conditions.extend(own_events(subject));
    sr.query.head = ledger.head().await?.seq;
    sr.query.limit = 1;
    sr.query.cursor = None;
    Ok(ledger.search(&sr.query).await?.pop().map(|h| h.entry))
}
