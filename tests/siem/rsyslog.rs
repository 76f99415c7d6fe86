//! Debian's rsyslogd as the receiver, run as a user process
//! (`rsyslogd -n -f CONF -i PIDFILE`): imtcp with octet-counted framing,
//! plain or with the GnuTLS driver requiring a client certificate our test
//! CA signed; every message written to a file as `MSGID<TAB>SD<TAB>MSG`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vellum_testkit::tls::Pki;

use crate::Received;

/// rsyslogd on PATH, else where Debian installs it (/usr/sbin is not on
/// every user's PATH).
fn rsyslogd() -> PathBuf {
    if vellum_testkit::on_path("rsyslogd") {
        return PathBuf::from("rsyslogd");
    }
    PathBuf::from("/usr/sbin/rsyslogd")
}

pub fn available() -> bool {
    let found = vellum_testkit::on_path("rsyslogd") || rsyslogd().is_file();
    vellum_testkit::tool_available("rsyslogd (rsyslog, rsyslog-gnutls)", found)
}

pub struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
}

impl Rsyslog {
    /// Starts rsyslogd on 127.0.0.1:`port` (TLS with `pki`'s server
    /// certificate when given) and waits until it accepts connections.
    pub async fn start(port: u16, pki: Option<&Pki>) -> Rsyslog {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display().to_string();
        // Events are larger than rsyslog's 8 KiB default message size.
        let mut conf = format!("global(maxMessageSize=\"1m\" workDirectory=\"{d}\"");
        let module = match pki {
            None => "module(load=\"imtcp\")".to_string(),
            Some(pki) => {
                conf.push_str(&format!(
                    " defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" \
                     defaultNetstreamDriverKeyFile=\"{}\"",
                    pki.path("ca.pem"),
                    pki.path("server.pem"),
                    pki.path("server.key")
                ));
                // x509/certvalid: the sender must present a certificate the
                // CA signed (mutual TLS).
                "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" \
                 streamDriver.authMode=\"x509/certvalid\")"
                    .to_string()
            }
        };
        conf.push_str(")\n");
        conf.push_str(&module);
        conf.push_str(&format!(
            "\ninput(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\" \
             supportOctetCountedFraming=\"on\")\n\
             template(name=\"feed\" type=\"string\" string=\"%msgid%\\t%structured-data%\\t%msg%\\n\")\n\
             action(type=\"omfile\" file=\"{d}/received.log\" template=\"feed\")\n"
        ));
        std::fs::write(dir.path().join("rsyslog.conf"), conf).expect("write rsyslog.conf");
        let child = Command::new(rsyslogd())
            .args(["-n", "-f"])
            .arg(dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let r = Rsyslog { child, dir };
        crate::wait_until(
            "rsyslogd accepts connections",
            Duration::from_secs(30),
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
        r
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("received.log")
    }

    /// The messages written so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(self.file()).unwrap_or_default();
        whole_lines(&text).filter_map(parse_line).collect()
    }

    /// The seq of the last whole message written (reads only the file's
    /// tail, so polling it stays cheap while a large feed arrives).
    pub fn last_seq(&self) -> Option<i64> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(self.file()).ok()?;
        let len = f.metadata().ok()?.len();
        // A record is far smaller than this; rsyslog writes whole lines.
        f.seek(SeekFrom::Start(len.saturating_sub(256 * 1024)))
            .ok()?;
        let mut tail = Vec::new();
        f.read_to_end(&mut tail).ok()?;
        let text = String::from_utf8_lossy(&tail).into_owned();
        let last = whole_lines(&text).rev().find_map(parse_line);
        last.map(|r| r.seq)
    }

    /// Every message's MSGID, in arrival order.
    pub fn msgids(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.file()).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split('\t').next().map(String::from))
            .collect()
    }
}

/// The lines rsyslog has finished writing (a long record may reach the
/// file in two writes).
fn whole_lines(text: &str) -> impl DoubleEndedIterator<Item = &str> {
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
}

/// `MSGID<TAB>[vellum@32473 seq="N" chain="HEX"]<TAB>MSG`; a line that is
/// not one (a partly written last line) is left for the next read.
fn parse_line(line: &str) -> Option<Received> {
    let mut parts = line.splitn(3, '\t');
    let (_msgid, sd, msg) = (parts.next()?, parts.next()?, parts.next()?);
    let param = |name: &str| {
        let start = sd.find(&format!(" {name}=\""))? + name.len() + 3;
        let len = sd.get(start..)?.find('"')?;
        sd.get(start..start + len).map(String::from)
    };
    if !sd.starts_with("[vellum@32473 ") || !msg.ends_with('}') {
        return None;
    }
    Some(Received {
        seq: param("seq")?.parse().ok()?,
        chain: param("chain")?,
        body: msg.to_string(),
    })
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
