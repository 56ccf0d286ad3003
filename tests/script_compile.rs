//! Compiles the realistic scripts in `tests/scripts/` and the embedded default script
//! with the built-in registry; every one must check without errors.

use ringsip::script::{compile, Registry, DEFAULT_SCRIPT};

fn check(name: &str, src: &str) -> ringsip::script::Compiled {
    match compile(name, src, &Registry::builtin()) {
        Ok(c) => c,
        Err(d) => panic!("{name} failed to compile:\n{d}"),
    }
}

#[test]
fn default_script_compiles() {
    let c = check("default.cfg", DEFAULT_SCRIPT);
    let s = &c.script;
    assert!(s.request_route().is_some());
    assert!(s.is_loaded("tm") && s.is_loaded("rr") && s.is_loaded("maxfwd"));
    assert_eq!(s.globals.sockets.len(), 1);
    assert_eq!(s.globals.sockets[0].port, Some(5060));
    assert_eq!(c.warnings.items().len(), 0, "{}", c.warnings);
}

#[test]
fn residential_script_compiles() {
    let src = include_str!("scripts/residential.cfg");
    let c = check("residential.cfg", src);
    let s = &c.script;
    assert_eq!(s.globals.sockets.len(), 2);
    assert_eq!(s.globals.aliases, vec!["example.com".to_owned()]);
    assert_eq!(s.globals.udp_workers, Some(4));
    assert_eq!(s.modparams_of("tm").count(), 4);
    // syslog_facility is accepted with a warning naming its line.
    let w: Vec<_> = c
        .warnings
        .items()
        .iter()
        .map(|d| (d.line, d.message.clone()))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, 10);
    assert!(w[0].1.contains("syslog_facility"));
    assert_eq!(s.flag_names.len(), 2); // ACC_FAILED, ACC_DO
}

#[test]
fn async_billing_script_compiles() {
    let src = include_str!("scripts/async_billing.cfg");
    let c = check("async_billing.cfg", src);
    let s = &c.script;
    assert_eq!(s.globals.udp_workers, Some(2));
    assert_eq!(
        s.globals.sockets[0].advertised.as_deref(),
        Some("203.0.113.10:5060")
    );
    assert!(!s.globals.auto_aliases);
    let timer = s
        .routes
        .iter()
        .find(|r| r.timer_interval.is_some())
        .unwrap();
    assert_eq!(timer.timer_interval, Some(60));
    assert!(s.names.avps.iter().any(|a| &**a == "credit"));
}

#[test]
fn fn_table_binds_by_id_and_lists_missing_implementations() {
    use ringsip::script::interp::{Arg, MsgState};
    use ringsip::script::FnTable;
    fn relay(_h: &mut (), _a: &[Arg<'_>], _st: &mut MsgState) -> i32 {
        7
    }
    let c = check("default.cfg", DEFAULT_SCRIPT);
    let reg = &c.script.registry;
    let table: FnTable<()> = FnTable::bind(reg, |m, d| {
        (m == "tm" && d.name == "t_relay").then_some(relay as _)
    });
    let id = reg.lookup("t_relay").next().unwrap().0;
    let f = table.get(id).unwrap();
    let mut st = MsgState::new(&c.script);
    assert_eq!(f(&mut (), &[], &mut st), 7);
    let missing = table.missing(&c.script);
    assert!(
        missing.contains(&"sl:sl_reply_error".to_owned()),
        "{missing:?}"
    );
    assert!(missing.contains(&"maxfwd:mf_process_maxfwd_header".to_owned()));
    assert!(!missing
        .iter()
        .any(|m| m == "tm:t_relay" || m.contains("is_method")));
}

#[test]
fn preprocessor_defines_and_conditionals() {
    let src = "#!define WITH_TCP\n\
               #!define LISTEN udp:127.0.0.1:5080\n\
               #!define MAX_HOPS 20\n\
               #!define REPLY_TEXT \"Too Many Hops\"\n\
               socket=LISTEN\n\
               #!ifdef WITH_TCP\n\
               socket=tcp:127.0.0.1:5080\n\
               #!else\n\
               this is not parsed at all\n\
               #!endif\n\
               #!ifndef WITH_TCP\n\
               socket=tls:127.0.0.1:5081\n\
               #!endif\n\
               #!/usr/sbin/opensips is just a comment\n\
               loadmodule \"sl.so\"\nloadmodule \"maxfwd.so\"\n\
               route {\n\
               if (!mf_process_maxfwd_header(MAX_HOPS)) { sl_send_reply(483, REPLY_TEXT); }\n\
               }\n";
    let c = check("pp.cfg", src);
    let s = &c.script;
    let socks: Vec<(&str, Option<u16>)> = s
        .globals
        .sockets
        .iter()
        .map(|k| (k.proto.as_str(), k.port))
        .collect();
    assert_eq!(socks, vec![("udp", Some(5080)), ("tcp", Some(5080))]);
}

#[test]
fn compiled_script_is_shareable_between_shards() {
    fn shared<T: Send + Sync>() {}
    fn owned<T: Send>() {}
    shared::<ringsip::script::Script>();
    owned::<ringsip::script::Interpreter>();
    owned::<ringsip::script::MsgState>();
}
