//! Interop with sipp (Debian `sip-tester`): a few hundred calls from sipp's UAC through
//! ringsip running its embedded default script to sipp's UAS, with zero failed calls
//! (`bench/sipp/sipp-smoke.sh` checks sipp's exit codes and its statistics file).
//! `.ci/run` installs sipp; without it this test fails, saying so.

mod common;

use std::process::Command;

use common::{free_udp_port, Proxy};

#[test]
fn three_hundred_sipp_calls_through_the_default_script() {
    let default = ringsip::script::DEFAULT_SCRIPT;
    assert!(default.contains("socket=udp:127.0.0.1:5060"));
    let script = default.replace("socket=udp:127.0.0.1:5060", "socket=udp:127.0.0.1:{{PORT}}");
    let proxy = Proxy::start(&script, 1, &[]);
    let (uas, uac) = (free_udp_port(), free_udp_port());
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/bench/sipp/sipp-smoke.sh"
        ))
        .args([
            "--proxy",
            &proxy.addr.to_string(),
            "--calls",
            "300",
            "--rate",
            "100",
        ])
        .args([
            "--uas-port",
            &uas.to_string(),
            "--uac-port",
            &uac.to_string(),
        ])
        .output()
        .expect("run bench/sipp/sipp-smoke.sh");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sipp smoke failed:\n{text}");
    // Every INVITE and BYE went through a transaction of the proxy (not around it).
    let created = proxy.wait_metric(
        "ringsip_transactions_created",
        std::time::Duration::from_secs(2),
        |v| v >= 600,
    );
    assert!(
        created.is_some_and(|v| v >= 600),
        "transactions created: {created:?}"
    );
}
