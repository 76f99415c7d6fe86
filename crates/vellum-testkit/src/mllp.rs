//! MLLP test support: a plain tokio MLLP client, ACK parsing, HL7 v2
//! fixtures, and an in-process server with MLLP on port 0.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vellum::config::{RawSettings, Settings};
use vellum::startup::Application;

pub const VT: u8 = 0x0b;
pub const FS: u8 = 0x1c;
pub const CR: u8 = 0x0d;

/// A fixture message with `\r` segment separators.
pub fn fixture(name: &str) -> String {
    let path = crate::repo_root().join("fixtures/hl7v2").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim_end().replace("\r\n", "\r").replace('\n', "\r") + "\r"
}

/// `msg` with MSH-10 replaced by `control_id`.
pub fn with_control_id(msg: &str, control_id: &str) -> String {
    let (msh, rest) = msg.split_once('\r').unwrap_or((msg, ""));
    let mut fields: Vec<&str> = msh.split('|').collect();
    fields[9] = control_id;
    format!("{}\r{rest}", fields.join("|"))
}

pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut v = vec![VT];
    v.extend_from_slice(msg);
    v.extend_from_slice(&[FS, CR]);
    v
}

/// A parsed ACK: segments split on `\r`, fields on `|`.
#[derive(Debug, Clone)]
pub struct Ack {
    pub text: String,
    pub segments: Vec<Vec<String>>,
}

impl Ack {
    pub fn parse(text: &str) -> Ack {
        Ack {
            text: text.to_string(),
            segments: text
                .split(['\r', '\n'])
                .filter(|s| !s.is_empty())
                .map(|s| s.split('|').map(String::from).collect())
                .collect(),
        }
    }

    pub fn segment(&self, name: &str) -> Option<&Vec<String>> {
        self.segments.iter().find(|s| s[0] == name)
    }

    /// Field `n` of segment `name` (MSH numbering: MSH-3 is `field("MSH", 3)`).
    pub fn field(&self, name: &str, n: usize) -> &str {
        let idx = if name == "MSH" { n - 1 } else { n };
        self.segment(name)
            .and_then(|s| s.get(idx))
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn code(&self) -> &str {
        self.field("MSA", 1)
    }

    pub fn event_id(&self) -> &str {
        self.field("ZVL", 1)
    }
}

pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to MLLP");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn send(&mut self, msg: &str) {
        self.send_raw(&frame(msg.as_bytes())).await;
    }

    /// The next framed reply; `None` when the server closed the connection.
    pub async fn recv_timeout(&mut self, limit: Duration) -> Option<Ack> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(start) = self.buf.iter().position(|&b| b == VT) {
                if let Some(end) = self.buf[start..]
                    .windows(2)
                    .position(|w| w == [FS, CR])
                    .map(|e| e + start)
                {
                    let text = String::from_utf8_lossy(&self.buf[start + 1..end]).to_string();
                    self.buf.drain(..end + 2);
                    return Some(Ack::parse(&text));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .expect("an ACK within the time limit")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn recv(&mut self) -> Option<Ack> {
        self.recv_timeout(Duration::from_secs(20)).await
    }

    /// Like `call`, but `None` on any connection error (for crash tests).
    pub async fn try_call(&mut self, msg: &str) -> Option<Ack> {
        self.stream.write_all(&frame(msg.as_bytes())).await.ok()?;
        loop {
            if let Some(start) = self.buf.iter().position(|&b| b == VT) {
                if let Some(end) = self.buf[start..]
                    .windows(2)
                    .position(|w| w == [FS, CR])
                    .map(|e| e + start)
                {
                    let text = String::from_utf8_lossy(&self.buf[start + 1..end]).to_string();
                    self.buf.drain(..end + 2);
                    return Some(Ack::parse(&text));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn try_connect(port: u16) -> Option<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        Some(Client {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends one message and waits for its ACK.
    pub async fn call(&mut self, msg: &str) -> Ack {
        self.send(msg).await;
        self.recv().await.expect("an ACK, not a closed connection")
    }

    /// True when the server closes the connection within `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// An in-process vellum with MLLP on a free port.
pub struct MllpApp {
    pub http: String,
    pub mllp_port: u16,
    /// Every MLLP listener's port (`mllp_port` is the first).
    pub mllp_ports: Vec<u16>,
    pub client: reqwest::Client,
}

pub async fn spawn_mllp_app(db_url: &str, tweak: impl FnOnce(&mut RawSettings)) -> MllpApp {
    let mut raw = RawSettings {
        mllp_addr: "127.0.0.1:0".into(),
        ..crate::raw_settings_for(db_url)
    };
    tweak(&mut raw);
    let settings = Settings::validate(raw).expect("valid settings");
    let app = Application::build(&settings).await.expect("app builds");
    let port = app.port();
    let mllp_port = app.mllp_port().expect("MLLP is on");
    let mllp_ports = app.mllp_ports();
    tokio::spawn(app.run_until_stopped());
    MllpApp {
        http: format!("http://127.0.0.1:{port}"),
        mllp_port,
        mllp_ports,
        client: crate::authed_client(),
    }
}

/// GET /fhir/AuditEvent/{id}: (status, body, X-Vellum-Seq).
pub async fn read_event(
    client: &reqwest::Client,
    base: &str,
    id: &str,
) -> (u16, serde_json::Value, Option<String>) {
    let r = client
        .get(format!("{base}/fhir/AuditEvent/{id}"))
        .send()
        .await
        .expect("GET event");
    let status = r.status().as_u16();
    let seq = r
        .headers()
        .get("X-Vellum-Seq")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, body, seq)
}
