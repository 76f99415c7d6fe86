//! W3C Trace Context: the `traceparent` request header
//! (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), so the
//! request span can be joined with the caller's trace. Anything not in
//! exactly that form is ignored (and never logged).

use actix_web::http::header::HeaderMap;

use crate::intake::trace::TraceParentValue;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four fields; a later version may add more.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let lower_hex = |p: &str| p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ![version, trace, parent, flags].iter().all(|p| lower_hex(p)) {
            return None;
        }
        let mut t = TraceParent {
            trace_id: [0; 16],
            parent_id: [0; 8],
            flags: 0,
        };
        hex::decode_to_slice(trace, &mut t.trace_id).ok()?;
        hex::decode_to_slice(parent, &mut t.parent_id).ok()?;
        let mut f = [0u8; 1];
        hex::decode_to_slice(flags, &mut f).ok()?;
        t.flags = f[0];
        // All-zero ids are invalid by the specification.
        if t.trace_id == [0; 16] || t.parent_id == [0; 8] {
            return None;
        }
        Some(t)
    }

    pub fn from_headers(h: &HeaderMap) -> Option<Self> {
        Self::parse(h.get("traceparent")?.to_str().ok()?)
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn parent_id_hex(&self) -> String {
        hex::encode(self.parent_id)
    }

    /// The request's valid `traceparent`, in the form the stored event
    /// records (a malformed one is ignored: nothing is recorded).
    pub fn for_event(req: &actix_web::HttpRequest) -> Option<TraceParentValue> {
        let t = Self::from_headers(req.headers())?;
        Some(TraceParentValue::new(&t.trace_id, &t.parent_id, t.flags))
    }
}

#[cfg(test)]
mod tests {
    use super::TraceParent;

    #[test]
    fn the_specification_example_parses() {
        let t = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id_hex(), "00f067aa0ba902b7");
        assert_eq!(t.flags, 1);
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-patient=123-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
