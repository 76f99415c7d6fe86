//! The docs are true: every ```sh block of README.md and docs/*.md runs,
//! as a user would paste it, against a real `vellum serve` on SQLite with
//! the README's development token.
//!
//! Rules (also stated in README.md, "Documentation"):
//! - A block opened with ```` ```sh no-run ```` is not run (production hosts,
//!   release builds, commands that start their own server).
//! - The runnable blocks of one file run in order in ONE bash (`-euo
//!   pipefail`), so a later block can use what an earlier one set, like a
//!   terminal. Each must exit 0.
//! - Only `127.0.0.1:8080` is rewritten, to the test server's port.
//! - `# -> TEXT` after a command states output: the file's stdout must
//!   contain every such TEXT, in order.
//! - The working directory is a scratch folder holding the server's
//!   `vellum.db` (the default database URL) with links to the repository's
//!   `fixtures/`, `conformance/` and `docs/`; `vellum` is on PATH, and
//!   `cargo run --release -- ARGS` runs the already built binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use vellum_testkit::{repo_root, vellum_bin};

use crate::serve;

const DEV_TOKEN: &str = "walkthrough-dev-token-123";
const DOC_ADDR: &str = "127.0.0.1:8080";

/// One runnable file: its name and its blocks joined into one script.
struct DocScript {
    file: String,
    script: String,
    expected: Vec<String>,
}

/// The ```sh blocks of `text` not marked `no-run`, de-indented (blocks
/// inside list items are indented), in order.
fn runnable_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<String>)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match current.as_mut() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```sh") {
                    let indent = line.len() - trimmed.len();
                    let skip = info.split_whitespace().any(|w| w == "no-run");
                    current = Some((if skip { usize::MAX } else { indent }, Vec::new()));
                }
            }
            Some((indent, lines)) => {
                if trimmed == "```" {
                    if *indent != usize::MAX {
                        blocks.push(lines.join("\n"));
                    }
                    current = None;
                } else if *indent != usize::MAX {
                    let cut = line
                        .char_indices()
                        .take_while(|(i, c)| *i < *indent && *c == ' ')
                        .count();
                    lines.push(line[cut..].to_string());
                }
            }
        }
    }
    assert!(current.is_none(), "an unclosed ```sh block");
    blocks
}

/// The `# -> TEXT` statements of a script, in order.
fn expected_output(script: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| l.split_once("# -> ").map(|(_, t)| t.trim().to_string()))
        .filter(|t| !t.is_empty())
        .collect()
}

fn doc_scripts(root: &Path, port: u16) -> Vec<DocScript> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(path).expect("read doc");
            let blocks = runnable_blocks(&text);
            if blocks.is_empty() {
                return None;
            }
            let script = blocks
                .join("\n")
                .replace(DOC_ADDR, &format!("127.0.0.1:{port}"));
            Some(DocScript {
                file: path
                    .strip_prefix(root)
                    .unwrap_or(path)
                    .display()
                    .to_string(),
                expected: expected_output(&script),
                script,
            })
        })
        .collect()
}

/// A folder for PATH with `vellum` and a `cargo` that only knows
/// `cargo run --release -- ARGS` (the binary is already built).
fn bin_dir(scratch: &Path) -> PathBuf {
    let bin = scratch.join(".bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::os::unix::fs::symlink(vellum_bin(), bin.join("vellum")).expect("link vellum");
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = run ] && [ \"$2\" = --release ] && [ \"$3\" = -- ]; then\n\
             shift 3; exec '{}' \"$@\"; fi\n\
             echo \"cargo (docs test): only 'cargo run --release -- ARGS'\" >&2; exit 127\n",
            vellum_bin().display()
        ),
    )
    .expect("cargo shim");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

fn run_script(doc: &DocScript, scratch: &Path, bin: &Path) -> (i32, String, String) {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &doc.script])
        .current_dir(scratch)
        .env("PATH", format!("{}:{path}", bin.display()));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VELLUM_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each TEXT of `expected` in `stdout`, in order; the first missing one.
fn first_missing<'a>(stdout: &str, expected: &'a [String]) -> Option<&'a str> {
    let mut rest = stdout;
    for text in expected {
        match rest.find(text.as_str()) {
            Some(at) => rest = &rest[at + text.len()..],
            None => return Some(text),
        }
    }
    None
}

#[test]
fn blocks_are_found_and_no_run_is_honoured() {
    let doc = "a\n```sh\nA=1\n```\n```sh no-run\nrm -rf /\n```\n  ```sh\n  B=2\n    C=3\n  ```\n";
    assert_eq!(runnable_blocks(doc), vec!["A=1", "B=2\n  C=3"]);
    assert_eq!(
        expected_output("curl x   # -> ready\n# just a comment"),
        vec!["ready"]
    );
    let exp = vec!["a".to_string(), "c".to_string()];
    assert_eq!(first_missing("a b c", &exp), None);
    assert_eq!(first_missing("c b a", &exp), Some("c"));
}

#[tokio::test]
async fn every_shell_block_of_the_docs_runs_against_a_real_server_sqlite() {
    let root = repo_root().canonicalize().expect("repo root");
    let scratch = tempfile::tempdir().expect("scratch dir");
    for name in ["fixtures", "conformance", "docs"] {
        std::os::unix::fs::symlink(root.join(name), scratch.path().join(name))
            .expect("link into scratch");
    }
    let bin = bin_dir(scratch.path());
    let db_url = format!("sqlite://{}", scratch.path().join("vellum.db").display());
    let mut server = serve(
        &db_url,
        &[
            ("VELLUM_DEV_TOKEN", DEV_TOKEN),
            ("VELLUM_AUTH_RECORD_READS", "true"),
        ],
    );
    server.ready().await;
    let port: u16 = server
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("server port");

    let scripts = doc_scripts(&root, port);
    assert!(
        scripts.iter().any(|d| d.file == "README.md"),
        "README.md has no runnable block"
    );
    let mut failures = Vec::new();
    for doc in &scripts {
        let (code, stdout, stderr) = run_script(doc, scratch.path(), &bin);
        if code != 0 {
            failures.push(format!(
                "{}: exit {code}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                doc.file
            ));
        } else if let Some(missing) = first_missing(&stdout, &doc.expected) {
            failures.push(format!(
                "{}: output lacks `{missing}` (stated as `# -> {missing}`)\n--- stdout\n{stdout}",
                doc.file
            ));
        }
    }
    let log = server.stop();
    assert!(
        failures.is_empty(),
        "{} doc(s) failed:\n{}\n--- server log\n{log}",
        failures.len(),
        failures.join("\n\n")
    );
}
