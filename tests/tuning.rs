//! Runs the tuning scripts' own test (`tests/tuning_scripts.sh`) so the README's single
//! test command covers `tuning/check.sh` and `tuning/apply.sh` too.

use std::process::Command;

#[test]
fn tuning_scripts_pass_their_test() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/tests/tuning_scripts.sh"))
        .current_dir(root)
        .output()
        .expect("run tests/tuning_scripts.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tuning_scripts.sh failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("passed"), "no pass count in:\n{stdout}");
}
