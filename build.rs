//! Records the git commit the binary is built from (`vellum_build_info`,
//! `vellum --version`); "unknown" outside a git checkout.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves (a worktree's HEAD lives under its git dir).
    if let Ok(o) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
    {
        if let Ok(dir) = String::from_utf8(o.stdout) {
            println!("cargo:rerun-if-changed={}/HEAD", dir.trim());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
