//! What the feed sends for one committed entry: the RFC 5424 syslog
//! message and the JSON Lines record, and which entries it sends at all.

use serde_json::Value;
use vellum_ledger::store::StoredEntry;

/// The structured-data ID of the `seq` and `chain` parameters.
pub const SD_ID: &str = "vellum@32473";
/// PRI of every message: facility 13 (log audit), severity 6 (informational).
const PRI: u8 = 13 * 8 + 6;

/// One entry as the feed sends it.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub seq: i64,
    /// Lowercase hex of the entry's chain hash.
    pub chain: String,
    /// The exact stored body (canonical JSON).
    pub body: &'a str,
    /// Commit time (`meta.lastUpdated`), RFC 3339 UTC with microseconds.
    pub time: &'a str,
    /// The profile's short name (`audit-log-access`), if the event names one.
    pub profile: Option<String>,
}

/// The short name of a profile URL (`…/StructureDefinition/<name>|<version>`).
fn short_name(url: &str) -> &str {
    let url = url.split('|').next().unwrap_or(url);
    url.rsplit('/').next().unwrap_or(url)
}

/// Which entries a destination receives (`export.profiles`, `export.types`;
/// both empty: every entry).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub profiles: Vec<String>,
    pub types: Vec<String>,
}

impl Filter {
    fn accepts(&self, event: &Value) -> bool {
        let profiles_ok = self.profiles.is_empty()
            || profiles(event).any(|p| self.profiles.iter().any(|want| want == short_name(p)));
        let types_ok = self.types.is_empty() || {
            let t = &event["type"];
            let code = t["code"].as_str().unwrap_or_default();
            let system = t["system"].as_str().unwrap_or_default();
            self.types.iter().any(|want| match want.split_once('|') {
                Some((s, c)) => s == system && c == code,
                None => want == code,
            })
        };
        profiles_ok && types_ok
    }

    /// The record of `entry`, or `None` when the filter leaves it out. A
    /// body that is not JSON (never stored by vellum) is sent unfiltered.
    pub fn record<'a>(&self, entry: &'a StoredEntry) -> Option<Record<'a>> {
        let event: Value = serde_json::from_str(&entry.body).unwrap_or(Value::Null);
        if !event.is_null() && !self.accepts(&event) {
            return None;
        }
        let profile = profiles(&event).next().map(|p| short_name(p).to_string());
        Some(Record {
            seq: entry.seq,
            chain: hex::encode(&entry.chain_hash),
            body: &entry.body,
            time: &entry.last_updated,
            profile,
        })
    }
}

fn profiles(event: &Value) -> impl Iterator<Item = &str> {
    event["meta"]["profile"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// RFC 5424 header fields that may hold only printable US-ASCII (no
/// space), at most `max` characters; `-` when nothing is left.
pub fn header_field(v: &str, max: usize) -> String {
    let s: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// The fields every message of this process carries.
#[derive(Debug, Clone)]
pub struct SyslogHeader {
    pub hostname: String,
    pub procid: String,
}

impl SyslogHeader {
    /// This host's name (Linux: /proc/sys/kernel/hostname) and process id.
    pub fn of_this_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        SyslogHeader {
            hostname: header_field(host.trim(), 255),
            procid: std::process::id().to_string(),
        }
    }
}

impl Record<'_> {
    /// The RFC 5424 message: `<110>1 TIME HOST vellum PID MSGID
    /// [vellum@32473 seq="N" chain="HEX"] BODY` (no BOM: the body is
    /// JSON, UTF-8 by definition).
    pub fn syslog_message(&self, h: &SyslogHeader) -> String {
        let msgid = header_field(self.profile.as_deref().unwrap_or("-"), 32);
        format!(
            "<{PRI}>1 {} {} vellum {} {msgid} [{SD_ID} seq=\"{}\" chain=\"{}\"] {}",
            header_field(self.time, 64),
            h.hostname,
            h.procid,
            self.seq,
            self.chain,
            self.body
        )
    }

    /// The message with RFC 6587 octet-counting framing (`LEN SP MSG`).
    pub fn syslog_frame(&self, h: &SyslogHeader, out: &mut Vec<u8>) {
        let msg = self.syslog_message(h);
        out.extend_from_slice(msg.len().to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(msg.as_bytes());
    }

    /// One JSON Lines record: `{"seq":N,"chain":"HEX","event":{…}}` and a
    /// line feed (the body is embedded as stored, byte for byte).
    pub fn json_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"chain\":\"");
        out.extend_from_slice(self.chain.as_bytes());
        out.extend_from_slice(b"\",\"event\":");
        out.extend_from_slice(self.body.as_bytes());
        out.extend_from_slice(b"}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> StoredEntry {
        StoredEntry {
            seq: 7,
            id: "x".into(),
            body: body.into(),
            body_sha256: vec![0; 32],
            chain_hash: vec![0xab; 32],
            leaf_hash: vec![0; 32],
            last_updated: "2026-12-03T10:00:00.000001Z".into(),
        }
    }

    const ACCESS: &str = r#"{"meta":{"profile":["https://vellum-audit.org/fhir/StructureDefinition/audit-log-access"]},"resourceType":"AuditEvent","type":{"code":"rest","system":"http://terminology.hl7.org/CodeSystem/audit-event-type"}}"#;

    #[test]
    fn syslog_message_carries_seq_chain_and_the_exact_body() {
        let e = entry(ACCESS);
        let r = Filter::default().record(&e).unwrap();
        let h = SyslogHeader {
            hostname: "pacs-audit".into(),
            procid: "42".into(),
        };
        let chain = "ab".repeat(32);
        assert_eq!(
            r.syslog_message(&h),
            format!(
                "<110>1 2026-12-03T10:00:00.000001Z pacs-audit vellum 42 audit-log-access \
                 [vellum@32473 seq=\"7\" chain=\"{chain}\"] {ACCESS}"
            )
        );
        let mut frame = Vec::new();
        r.syslog_frame(&h, &mut frame);
        let text = String::from_utf8(frame).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        let mut line = Vec::new();
        r.json_line(&mut line);
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["chain"], chain.as_str());
        assert_eq!(v["event"]["type"]["code"], "rest");
        assert!(line.ends_with(b"}\n"));
    }

    #[test]
    fn filters_by_profile_short_name_and_type() {
        let e = entry(ACCESS);
        let only = |profiles: &[&str], types: &[&str]| Filter {
            profiles: profiles.iter().map(|s| s.to_string()).collect(),
            types: types.iter().map(|s| s.to_string()).collect(),
        };
        assert!(only(&["audit-log-access"], &[]).record(&e).is_some());
        assert!(only(&["radiology-ai-inference"], &[]).record(&e).is_none());
        assert!(only(&[], &["rest"]).record(&e).is_some());
        assert!(only(
            &[],
            &["http://terminology.hl7.org/CodeSystem/audit-event-type|rest"]
        )
        .record(&e)
        .is_some());
        assert!(only(&[], &["110113"]).record(&e).is_none());
        assert!(only(&["audit-log-access"], &["110113"])
            .record(&e)
            .is_none());
    }

    #[test]
    fn header_fields_are_printable_ascii_or_a_dash() {
        assert_eq!(header_field("a b\u{e9}c", 32), "abc");
        assert_eq!(header_field("", 32), "-");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
    }
}
