//! `cargo xtask madsim`: the real node code as a three-node cluster in madsim's deterministic
//! simulator (`node/tests/madsim.rs`: kills and restarts, pauses, clogged links, from a seed, run
//! twice and compared).
//!
//! madsim needs `--cfg madsim` on the whole dependency graph (it swaps tokio for madsim-tokio),
//! so the build gets a target dir of its own, `target/madsim`, and the normal build never sees
//! that flag. The flag goes in `RUSTFLAGS`, which replaces (not extends) any `build.rustflags` of
//! `.cargo/config.toml`; a `RUSTFLAGS` already set is kept and the flag appended.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Where the madsim build lives, under the workspace's target dir.
pub const TARGET_DIR: &str = "target/madsim";

pub fn run(test_args: &[String]) -> Result<ExitCode> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !flags
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w == ["--cfg", "madsim"])
    {
        flags = format!("{flags} --cfg madsim").trim().to_string();
    }
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["test", "-p", "keel-node", "--test", "madsim"])
        .env("RUSTFLAGS", &flags)
        // It would take precedence over RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", root.join(TARGET_DIR));
    if !test_args.is_empty() {
        cmd.arg("--").args(test_args);
    }
    eprintln!(
        "madsim: RUSTFLAGS=\"{flags}\" CARGO_TARGET_DIR={TARGET_DIR} cargo test -p keel-node --test madsim"
    );
    let started = Instant::now();
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!(
            "the madsim cluster test failed ({status}) after {:.1?}; rerun it with its output: \
             cargo xtask madsim -- --nocapture (and RUST_LOG=info for the nodes' logs)",
            started.elapsed()
        );
    }
    eprintln!("madsim: passed in {:.1?}", started.elapsed());
    Ok(ExitCode::SUCCESS)
}
