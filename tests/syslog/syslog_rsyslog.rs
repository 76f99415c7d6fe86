//! rsyslog (Debian's `rsyslogd`, run as a user process) as a real sender:
//! it reads audit messages from files (imfile) and forwards them with omfwd
//! as RFC 5424, octet-counted, over plain TCP and over TLS (OpenSSL driver,
//! mutual TLS with certificates the test makes). vellum stores every one.

use std::process::{Child, Command, Stdio};

use vellum::config::GrantLines;
use vellum_testkit::tls::Pki;
use vellum_testkit::*;

use crate::common::*;

/// `rsyslogd -n` in the foreground, killed when the test ends.
struct Rsyslogd(Child);

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &std::path::Path, pki: &Pki, tcp: u16, tls: u16) -> String {
    let d = dir.display();
    let forward = |port: u16, tls_options: &str| {
        format!(
            r#"action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"{tls_options})"#
        )
    };
    format!(
        r#"global(workDirectory="{d}/work" maxMessageSize="64k"
       DefaultNetstreamDriverCAFile="{ca}"
       DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}")
module(load="imfile")
ruleset(name="plain") {{ {plain} }}
ruleset(name="tls") {{ {secure} }}
input(type="imfile" File="{d}/plain.log" Tag="DCM4CHEE" Facility="authpriv" Severity="info" ruleset="plain")
input(type="imfile" File="{d}/tls.log" Tag="DCM4CHEE" Facility="authpriv" Severity="info" ruleset="tls")
"#,
        ca = pki.path("ca.pem"),
        cert = pki.path("client.pem"),
        key = pki.path("client.key"),
        plain = forward(tcp, ""),
        secure = forward(
            tls,
            r#" StreamDriver="ossl" StreamDriverMode="1"
       StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="localhost""#
        ),
    )
}

backend_tests! {
    async fn rsyslog_forwards_over_tcp_and_mutual_tls_and_every_message_is_stored(backend) {
        if !tool_available("rsyslogd (rsyslog, rsyslog-openssl)", on_path("rsyslogd")) {
            return;
        }
        let db = TestDb::new(backend).await;
        let pki = Pki::new();
        let app = spawn_syslog_app(&db.url, |raw| {
            raw.syslog.tls_addr = "127.0.0.1:0".into();
            raw.syslog.tls_cert = Some(pki.path("server.pem"));
            raw.syslog.tls_key = Some(pki.path("server.key"));
            raw.syslog.tls_client_ca = Some(pki.path("ca.pem"));
            // rsyslog's certificate (the test PKI's client) may send.
            raw.auth.clients = GrantLines(vec!["CN=sender.example source".into()]);
        })
        .await;
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("work")).expect("work dir");
        // Half of the fixtures over each transport (the same bytes twice
        // would be stored once).
        let fixtures = valid_fixtures();
        let (plain, secure) = fixtures.split_at(fixtures.len() / 2);
        let lines = |f: &[(String, Vec<u8>)]| {
            f.iter().map(|(_, x)| one_line(x) + "\n").collect::<String>()
        };
        std::fs::write(dir.path().join("plain.log"), lines(plain)).expect("plain.log");
        std::fs::write(dir.path().join("tls.log"), lines(secure)).expect("tls.log");
        let conf = dir.path().join("rsyslog.conf");
        std::fs::write(&conf, config(dir.path(), &pki, app.tcp.unwrap(), app.tls.unwrap()))
            .expect("rsyslog.conf");

        let _rsyslogd = Rsyslogd(
            Command::new("rsyslogd")
                .arg("-n")
                .arg("-f")
                .arg(&conf)
                .arg("-i")
                .arg(dir.path().join("rsyslogd.pid"))
                .stdout(Stdio::null())
                .spawn()
                .expect("start rsyslogd"),
        );
        let events = app.wait_for(fixtures.len()).await;
        assert_eq!(events.len(), fixtures.len(), "{backend:?}: not every forwarded message was stored");
        let by = |t: &str| {
            events
                .iter()
                .filter(|e| message_detail(e, "syslog-transport").unwrap()["valueString"] == t)
                .count()
        };
        assert_eq!((by("tcp"), by("tls")), (plain.len(), secure.len()), "{backend:?}");
        for e in &events {
            assert!(!is_parse_failure(e), "{e}");
            assert_eq!(message_detail(e, "syslog-app-name").unwrap()["valueString"], "DCM4CHEE");
            // authpriv.info = 10 × 8 + 6.
            assert_eq!(message_detail(e, "syslog-pri").unwrap()["valueString"], "86");
        }
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
    }
}
