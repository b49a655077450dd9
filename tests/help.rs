//! `--help` golden files (STYLE.md habit 8): the real binary's `tokenwarden serve --help` is
//! compared with `tests/golden/serve-help.txt`, so that every change to a `serve` flag (name,
//! default, wording) shows up as a reviewed diff. `UPDATE_GOLDEN=1` rewrites the file. It must
//! not start a server.

mod support;

use std::process::Command;

use support::check_golden;

/// The help text of `tokenwarden ARGS --help`, with the environment that would change it
/// (clap shows the value of an `env` fallback) removed.
fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(args)
        .arg("--help")
        .env_remove("TOKENWARDEN_DATA_DIR")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap_or_else(|e| panic!("running tokenwarden {args:?} --help: {e}"));
    assert!(
        out.status.success(),
        "tokenwarden {args:?} --help exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("help is not UTF-8: {e}"))
}

#[test]
fn serve_help_matches_the_golden_file() {
    check_golden("serve-help.txt", &help(&["serve"]));
}
