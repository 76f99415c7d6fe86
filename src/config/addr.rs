//! Listen addresses as operators write them: `host:port`, `[v6]:port`,
//! `localhost:port`, a resolvable `name:port`, or a bare `port` (which
//! listens on loopback, 127.0.0.1, like the defaults). Environment
//! variables holding only digits arrive as numbers; they are accepted too.

use std::net::{SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// Parses one listen address for setting `key`.
pub fn listen_addr(key: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    let s = s.trim();
    let invalid = |why: String| ConfigError::Invalid {
        key,
        reason: format!(
            "{s:?}: {why} (expected host:port such as 127.0.0.1:8080 or [::1]:8080, or a port)"
        ),
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = s.parse().map_err(|_| invalid("not a port number".into()))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(invalid("no port".into()));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(format!("{port:?} is not a port number")))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(format!("cannot resolve {host:?}: {e}")))?
        .collect();
    // IPv4 first: what most operators mean by a name with both.
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| invalid(format!("{host:?} has no address")))
}

/// A string setting that may arrive as a number (`VELLUM_HTTP_ADDR=8080`).
pub fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        U(u64),
        I(i64),
    }
    Ok(match Either::deserialize(d)? {
        Either::S(s) => s,
        Either::U(n) => n.to_string(),
        Either::I(n) => n.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::listen_addr;

    #[test]
    fn operators_spellings_are_accepted() {
        let a = |s| listen_addr("http_addr", s).map(|a| a.to_string());
        assert_eq!(a("8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(a("localhost:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(a("0.0.0.0:80").unwrap(), "0.0.0.0:80");
        assert_eq!(a("[::1]:2575").unwrap(), "[::1]:2575");
        for bad in ["", "host", "127.0.0.1:99999", "99999", "localhost:x"] {
            let e = a(bad).unwrap_err().to_string();
            assert!(
                e.contains("http_addr") && e.contains("expected host:port"),
                "{e}"
            );
        }
    }
}
