//! Operating vellum: metrics, logs, readiness on a tampered ledger, the
//! command line's errors and conventions, and the PostgreSQL restore drill.
//! Every test runs the real binary on real sockets and databases.

mod cli;
mod deploy;
mod docs_walkthrough;
mod logs;
mod metrics;
mod restore_drill;
mod writer_role;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vellum_testkit::{free_port, vellum_bin};

/// `vellum serve` as a child process, its stdout (the log) going to a file.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub mllp_port: u16,
    pub log: tempfile::NamedTempFile,
}

pub fn serve(db_url: &str, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mllp_port = free_port();
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut cmd = Command::new(vellum_bin());
    cmd.arg("serve")
        .env("VELLUM_DATABASE_URL", db_url)
        .env("VELLUM_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("VELLUM_MLLP_ADDR", format!("127.0.0.1:{mllp_port}"))
        .env("VELLUM_LOG", "info")
        .env("VELLUM_DEV_TOKEN", vellum_testkit::DEV_TOKEN)
        .env("VELLUM_AUTH_RECORD_READS", "false")
        .env_remove("RUST_LOG")
        .stdout(Stdio::from(log.reopen().expect("log handle")))
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Server {
        child: cmd.spawn().expect("spawn vellum serve"),
        base: format!("http://127.0.0.1:{port}"),
        mllp_port,
        log,
    }
}

impl Server {
    /// Polls `/readyz` until it answers; returns (status, body) of the
    /// first answer that `done` accepts (panics after 30 s).
    pub async fn readyz_until(&mut self, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("vellum exited early: {status}\n{}", self.log_text());
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                if done(status, &body) {
                    return (status, body);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no expected /readyz answer in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn ready(&mut self) {
        self.readyz_until(|s, _| s == 200).await;
    }

    pub async fn metrics(&self) -> String {
        vellum_testkit::authed_client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Stops the server (SIGTERM, so it flushes) and returns its log.
    pub fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        self.log_text()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the series `series` (name and labels exactly as written).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Runs the vellum binary with `args` in `cwd`; (exit code, stdout, stderr).
pub fn run(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(vellum_bin());
    cmd.args(args).current_dir(cwd);
    // Only the variables the test names.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VELLUM_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vellum");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
