//! What `ringsip -c -f FILE` (and so start-up) refuses, with positions — never at call
//! time: unknown modules, I/O functions called outside `async()`, route kinds without a
//! runtime, functions declared but not implemented, bad `db_url`s.

use std::process::Command;

fn check(script: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("ringsip-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(format!("{}.cfg", script.len()));
    std::fs::write(&path, script).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_ringsip"))
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("run ringsip -c");
    let _ = std::fs::remove_file(&path);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_default_script_checks() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringsip"))
        .arg("-c")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_io_function_outside_async_is_refused_with_its_position() {
    let (ok, text) = check(
        "loadmodule \"avpops.so\"\nmodparam(\"avpops\", \"db_url\", \"mysql://root@127.0.0.1/test\")\nroute {\n    avp_db_query(\"SELECT 1\", \"$avp(x)\");\n}\n",
    );
    assert!(!ok);
    assert!(
        text.contains(":4:5: `avp_db_query` does I/O and must run under async()"),
        "{text}"
    );
}

#[test]
fn route_kinds_without_a_runtime_are_refused() {
    let (ok, text) = check("route { exit; }\nlocal_route { exit; }\nstartup_route { exit; }\n");
    assert!(!ok);
    assert!(text.contains(":2: local_route is not supported"), "{text}");
    assert!(
        text.contains(":3: startup_route is not supported"),
        "{text}"
    );
}

#[test]
fn unknown_modules_and_unimplemented_functions_are_named() {
    let (ok, text) = check("loadmodule \"dialog.so\"\nroute { exit; }\n");
    assert!(!ok);
    assert!(text.contains("dialog"), "{text}");
    let (ok, text) = check("route { force_send_socket(\"udp:127.0.0.1:5060\"); exit; }\n");
    assert!(!ok);
    assert!(text.contains("force_send_socket"), "{text}");
}

#[test]
fn a_db_url_host_name_is_accepted_at_start_and_a_malformed_one_refused() {
    // A name is resolved when a connection is opened, never at start: the check passes
    // even though `db.example` does not resolve here.
    let (ok, text) = check(
        "loadmodule \"avpops.so\"\nmodparam(\"avpops\", \"db_url\", \"mysql://root@db.example/test\")\nroute { exit; }\n",
    );
    assert!(ok, "{text}");
    let (ok, text) = check(
        "loadmodule \"avpops.so\"\nmodparam(\"avpops\", \"db_url\", \"mysql://root@db..example/test\")\nroute { exit; }\n",
    );
    assert!(!ok);
    assert!(
        text.contains("avpops.db_url") && text.contains("\"db..example\""),
        "{text}"
    );
}
