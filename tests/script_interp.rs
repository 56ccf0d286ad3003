//! Interpreter tests against a fake host: control flow and return codes as in OpenSIPS,
//! pseudo-variables, AVP stacks, transformations, flags, async suspension and resume,
//! launch, and the embedded default script's decisions.

use ringsip::script::interp::{Arg, AsyncStart, MsgState, Outcome, PvGot, ScriptHost, ValRef};
use ringsip::script::pv::{MsgPv, PvIndex};
use ringsip::script::{compile, FnDecl, FnId, Interpreter, Registry, Script, DEFAULT_SCRIPT};

#[derive(Default)]
struct FakeHost {
    method: String,
    ruri: String,
    to_tag: Option<String>,
    from_uri: String,
    du: Option<String>,
    /// Calls as `name(arg|arg)`.
    log: Vec<String>,
    /// Return code by function name (default 1).
    rcs: Vec<(&'static str, i32)>,
    async_pending: bool,
    myself: Vec<&'static str>,
}

fn show(a: &Arg<'_>) -> String {
    match a {
        Arg::Absent => "-".into(),
        Arg::Int(i) => i.to_string(),
        Arg::Str(s) => s.to_string(),
        Arg::Pv(_) => "pv".into(),
        Arg::PvList(l) => format!("pv*{}", l.len()),
        Arg::Route(r) => format!("route#{}", r.0),
    }
}

impl FakeHost {
    fn invite() -> FakeHost {
        FakeHost {
            method: "INVITE".into(),
            ruri: "sip:Bob@example.com:5070;transport=udp".into(),
            from_uri: "sip:alice@example.org".into(),
            ..FakeHost::default()
        }
    }
    fn record(&mut self, decl: &FnDecl, args: &[Arg<'_>]) -> i32 {
        let a: Vec<String> = args.iter().map(show).collect();
        self.log.push(format!("{}({})", decl.name, a.join("|")));
        self.rcs
            .iter()
            .find(|(n, _)| *n == decl.name)
            .map_or(1, |(_, rc)| *rc)
    }
}

impl ScriptHost for FakeHost {
    fn pv_get(&mut self, pv: &MsgPv, _index: PvIndex, out: &mut String) -> PvGot {
        let v: Option<&str> = match pv {
            MsgPv::Rm => Some(&self.method),
            MsgPv::Ru => Some(&self.ruri),
            MsgPv::RUser => self.ruri.split(['@', ':']).nth(1),
            MsgPv::Tt => self.to_tag.as_deref(),
            MsgPv::Fu => Some(&self.from_uri),
            MsgPv::Du => self.du.as_deref(),
            MsgPv::Ci => Some("call-1"),
            MsgPv::Rs => return PvGot::Int(200),
            _ => None,
        };
        match v {
            Some(s) => {
                out.push_str(s);
                PvGot::Str
            }
            None => PvGot::Null,
        }
    }
    fn pv_set(&mut self, pv: &MsgPv, value: ValRef<'_>) -> bool {
        let v = match value {
            ValRef::Str(s) => Some(s.to_owned()),
            ValRef::Int(i) => Some(i.to_string()),
            ValRef::Null => None,
        };
        match pv {
            MsgPv::Ru => self.ruri = v.unwrap_or_default(),
            MsgPv::Du => self.du = v,
            _ => return false,
        }
        true
    }
    fn call(
        &mut self,
        _f: FnId,
        decl: &'static FnDecl,
        args: &[Arg<'_>],
        _st: &mut MsgState,
    ) -> i32 {
        self.record(decl, args)
    }
    fn call_async(
        &mut self,
        _f: FnId,
        decl: &'static FnDecl,
        args: &[Arg<'_>],
        _st: &mut MsgState,
    ) -> AsyncStart {
        let rc = self.record(decl, args);
        if self.async_pending {
            AsyncStart::Pending
        } else {
            AsyncStart::Done(rc)
        }
    }
    fn launch(
        &mut self,
        _f: FnId,
        decl: &'static FnDecl,
        args: &[Arg<'_>],
        report: Option<ringsip::script::RouteId>,
        _st: &mut MsgState,
    ) -> i32 {
        let rc = self.record(decl, args);
        self.log
            .push(format!("launched report={:?}", report.map(|r| r.0)));
        rc
    }
    fn is_myself(&mut self, uri: &str) -> bool {
        self.myself.iter().any(|m| uri.contains(m))
    }
}

const MODS: &str = "loadmodule \"tm.so\"\nloadmodule \"sl.so\"\nloadmodule \"sipmsgops.so\"\nloadmodule \"rr.so\"\nloadmodule \"cfgutils.so\"\nloadmodule \"avpops.so\"\nloadmodule \"exec.so\"\n";

fn script(body: &str) -> Script {
    let src = format!("{MODS}{body}");
    match compile("t.cfg", &src, &Registry::builtin()) {
        Ok(c) => c.script,
        Err(d) => panic!("compile failed:\n{d}"),
    }
}

fn run(s: &Script, host: &mut FakeHost) -> (Outcome, MsgState) {
    let mut st = MsgState::new(s);
    let mut it = Interpreter::new();
    let out = it.run(s, s.request_route().unwrap(), &mut st, host);
    (out, st)
}

#[test]
fn default_script_relays_initial_invite() {
    let s = compile("default.cfg", DEFAULT_SCRIPT, &Registry::builtin())
        .unwrap()
        .script;
    let mut h = FakeHost::invite();
    h.rcs = vec![("loose_route", -1), ("t_check_trans", -1)];
    let (out, _) = run(&s, &mut h);
    assert_eq!(out, Outcome::Exit);
    let names: Vec<&str> = h.log.iter().map(|l| l.split('(').next().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "mf_process_maxfwd_header",
            "t_check_trans",
            "loose_route",
            "record_route",
            "t_on_reply",
            "t_on_failure",
            "t_relay"
        ]
    );
    assert_eq!(h.log[0], "mf_process_maxfwd_header(10)");
}

#[test]
fn default_script_rejects_exhausted_max_forwards_and_failed_relay() {
    let s = compile("default.cfg", DEFAULT_SCRIPT, &Registry::builtin())
        .unwrap()
        .script;
    let mut h = FakeHost::invite();
    h.rcs = vec![("mf_process_maxfwd_header", -1)];
    let (out, _) = run(&s, &mut h);
    assert_eq!(out, Outcome::Exit);
    assert_eq!(
        h.log,
        vec![
            "mf_process_maxfwd_header(10)",
            "send_reply(483|Too Many Hops)"
        ]
    );

    let mut h = FakeHost::invite();
    h.rcs = vec![("loose_route", -1), ("t_check_trans", -1), ("t_relay", -2)];
    run(&s, &mut h);
    assert_eq!(h.log.last().unwrap(), "sl_reply_error()");
}

#[test]
fn default_script_in_dialog_uses_loose_route() {
    let s = compile("default.cfg", DEFAULT_SCRIPT, &Registry::builtin())
        .unwrap()
        .script;
    let mut h = FakeHost::invite();
    h.method = "BYE".into();
    h.to_tag = Some("abc".into());
    let (out, _) = run(&s, &mut h);
    assert_eq!(out, Outcome::Exit);
    let names: Vec<&str> = h.log.iter().map(|l| l.split('(').next().unwrap()).collect();
    assert_eq!(
        names,
        vec!["mf_process_maxfwd_header", "loose_route", "t_relay"]
    );
}

#[test]
fn return_codes_follow_opensips() {
    let s = script(
        "route {\n\
         if (route(neg)) { append_hf(\"neg-true\"); } else { append_hf(\"neg-false\"); }\n\
         if (route(pos)) { append_hf(\"pos-true\"); }\n\
         if (route(plain)) { append_hf(\"plain-true $rc\"); }\n\
         route(zero);\n\
         append_hf(\"not reached\");\n\
         }\n\
         route[neg] { return(-2); }\n\
         route[pos] { return(5); }\n\
         route[plain] { append_hf(\"in plain\"); }\n\
         route[zero] { return(0); }\n",
    );
    let mut h = FakeHost::invite();
    let (out, st) = run(&s, &mut h);
    assert_eq!(out, Outcome::Exit);
    assert_eq!(
        h.log,
        vec![
            "append_hf(neg-false|-)",
            "append_hf(pos-true|-)",
            "append_hf(in plain|-)",
            "append_hf(plain-true 1|-)"
        ]
    );
    assert_eq!(st.rc, 1);
}

#[test]
fn function_returning_zero_stops_the_script() {
    let s = script("route {\n t_relay();\n append_hf(\"after\");\n}\n");
    let mut h = FakeHost::invite();
    h.rcs = vec![("t_relay", 0)];
    let (out, _) = run(&s, &mut h);
    assert_eq!(out, Outcome::Exit);
    assert_eq!(h.log, vec!["t_relay(-)"]);

    let s = script("route {\n if (!t_relay()) { append_hf(\"failed $rc\"); }\n return(3);\n}\n");
    let mut h = FakeHost::invite();
    h.rcs = vec![("t_relay", -7)];
    let (out, _) = run(&s, &mut h);
    assert_eq!(out, Outcome::Done(3));
    assert_eq!(h.log, vec!["t_relay(-)", "append_hf(failed -7|-)"]);
}

#[test]
fn variables_avps_and_transformations() {
    let s = script(
        "route {\n\
         $var(u) = $(ru{uri.user}{s.tolower});\n\
         $var(n) = $(var(u){s.len}) * 10 + 2;\n\
         $avp(a) = 1; $avp(a) = \"two\"; $avp(a) = 3;\n\
         append_hf(\"u=$var(u) n=$var(n) a=$avp(a) a1=$avp(a)[1] last=$avp(a)[-1] all=$(avp(a)[*])\");\n\
         $avp(a) = NULL;\n\
         append_hf(\"after-del=$avp(a)\");\n\
         $avp(a) := \"only\";\n\
         append_hf(\"final=$(avp(a)[*]) port=$(ru{uri.port}) tp=$(ru{uri.param,transport}) sel=$(fu{s.select,1,@})\");\n\
         $var(s) = \"x\" + $var(n) + \"-\" + $rm;\n\
         $var(s) += \"!\";\n\
         $var(k) = 7; $var(k) += 5; $var(k) -= 2;\n\
         append_hf(\"s=$var(s) k=$var(k) sub=$(var(s){s.substr,1,2}) up=$(rm{s.toupper}{s.tolower}) esc=$(var(q){s.escape.common})\");\n\
         if ($var(missing) == NULL && $var(k) == \"10\" && $var(k) > 9 && !($var(k) < 3)) { append_hf(\"cmp ok\"); }\n\
         $var(bits) = (6 & 3) | (1 << 4) ^ 1;\n\
         append_hf(\"bits=$var(bits) mod=$(var(k){s.int})\");\n\
         }\n",
    );
    let mut h = FakeHost::invite();
    run(&s, &mut h);
    assert_eq!(
        h.log[0],
        "append_hf(u=bob n=32 a=3 a1=two last=1 all=3,two,1|-)"
    );
    assert_eq!(h.log[1], "append_hf(after-del=two|-)");
    assert_eq!(
        h.log[2],
        "append_hf(final=only port=5070 tp=udp sel=example.org|-)"
    );
    assert_eq!(
        h.log[3],
        "append_hf(s=x32-INVITE! k=10 sub=32 up=invite esc=<null>|-)"
    );
    assert_eq!(h.log[4], "append_hf(cmp ok|-)");
    assert_eq!(h.log[5], "append_hf(bits=19 mod=10|-)");
}

#[test]
fn strings_in_expressions_are_literal_and_var_null_is_zero() {
    let s = script(
        "route {\n\
         $var(lit) = \"a $rm b\";\n\
         $var(z) = NULL;\n\
         if ($var(lit) == \"a $rm b\") { append_hf(\"lit=$var(lit) z=$var(z)\"); }\n\
         append_hf('single $rm');\n\
         }\n",
    );
    let mut h = FakeHost::invite();
    run(&s, &mut h);
    assert_eq!(
        h.log,
        vec!["append_hf(lit=a $rm b z=0|-)", "append_hf(single INVITE|-)"]
    );
}

#[test]
fn route_parameters_and_variable_indexes() {
    let s = script(
        "route {\n\
         $avp(g) = \"c\"; $avp(g) = \"b\"; $avp(g) = \"a\";\n\
         $var(i) = 0;\n\
         while ($avp(g)[$var(i)] != NULL) { append_hf(\"g$var(i)=$avp(g)[$var(i)]\"); $var(i) += 1; }\n\
         $var(i) = 1; $avp(g)[$var(i)] = \"B\";\n\
         if (route(check, 5, \"x-$rm\", $avp(g)[1])) { append_hf(\"check true $rc\"); }\n\
         append_hf(\"outside p1=$param(1)\");\n\
         }\n\
         route[check] {\n\
         append_hf(\"p1=$param(1) p2=$param(2) p3=$param(3) p4=$param(4)\");\n\
         route(inner, $param(1) + 1);\n\
         append_hf(\"back p1=$param(1)\");\n\
         return($param(1));\n\
         }\n\
         route[inner] { append_hf(\"inner p1=$param(1) p2=$param(2)\"); }\n",
    );
    let mut h = FakeHost::invite();
    run(&s, &mut h);
    assert_eq!(
        h.log,
        vec![
            "append_hf(g0=a|-)",
            "append_hf(g1=b|-)",
            "append_hf(g2=c|-)",
            "append_hf(p1=5 p2=x-INVITE p3=B p4=<null>|-)",
            "append_hf(inner p1=6 p2=<null>|-)",
            "append_hf(back p1=5|-)",
            "append_hf(check true 5|-)",
            "append_hf(outside p1=<null>|-)",
        ]
    );
}

#[test]
fn for_each_over_avp_values() {
    let s = script(
        "route {\n\
         $avp(n) = 1; $avp(n) = 2; $avp(n) = 3; $avp(n) = 4;\n\
         $var(sum) = 0;\n\
         for ($var(v) in $(avp(n)[*])) {\n\
           if ($var(v) == 1) { break; }\n\
           $var(sum) += $var(v);\n\
         }\n\
         for ($var(v) in $(avp(none)[*])) { $var(sum) = -1; }\n\
         append_hf(\"sum=$var(sum)\");\n\
         }\n",
    );
    let mut h = FakeHost::invite();
    run(&s, &mut h);
    assert_eq!(h.log, vec!["append_hf(sum=9|-)"]);

    let s = script(
        "route {\n\
         $var(list) = \"alpha,beta,gamma\"; $var(i) = 0; $var(n) = 2;\n\
         while ($var(i) < 3) { append_hf(\"$(var(list){s.select,$var(i),,}{s.substr,0,$var(n)})\"); $var(i) += 1; }\n\
         }\n",
    );
    let mut h = FakeHost::invite();
    run(&s, &mut h);
    assert_eq!(
        h.log,
        vec!["append_hf(al|-)", "append_hf(be|-)", "append_hf(ga|-)"]
    );
}

#[test]
fn switch_while_break() {
    let s = script(
        "route {\n\
         $var(i) = 0; $var(out) = \"\";\n\
         while ($var(i) < 100) {\n\
           switch ($var(i)) {\n\
           case 0: $var(out) = $var(out) + \"a\";\n\
           case 1: $var(out) = $var(out) + \"b\"; break;\n\
           case \"2\": $var(out) = $var(out) + \"c\"; break;\n\
           default: $var(out) = $var(out) + \"d\";\n\
           }\n\
           $var(i) += 1;\n\
           if ($var(i) == 4) { break; }\n\
         }\n\
         switch ($rm) { case \"INVITE\": append_hf(\"inv $var(out)\"); break; default: append_hf(\"other\"); }\n\
         }\n",
    );
    let mut h = FakeHost::invite();
    run(&s, &mut h);
    assert_eq!(h.log, vec!["append_hf(inv abbcd|-)"]);
}

#[test]
fn flags_named_and_numeric() {
    let s = script(
        "route {\n setflag(ACC); setflag(3); resetflag(3);\n\
         if (isflagset(ACC) && !isflagset(3)) { append_hf(\"flags ok\"); }\n}\n",
    );
    let mut h = FakeHost::invite();
    let (_, st) = run(&s, &mut h);
    assert_eq!(h.log, vec!["append_hf(flags ok|-)"]);
    assert!(st.flag(32));
    assert!(!st.flag(3));
}

#[test]
fn message_pvs_myself_regex_and_drop() {
    let s = script(
        "route {\n\
         if (uri == myself) { append_hf(\"mine\"); }\n\
         if ($ru =~ \"^sip:bob@\") { append_hf(\"re-ci\"); }\n\
         if ($rm !~ \"^reg\") { append_hf(\"not-reg\"); }\n\
         $ru = \"sip:carol@\" + $(ru{uri.host});\n\
         $du = \"sip:10.0.0.1:5060\";\n\
         $du = NULL;\n\
         if (is_method(\"REGISTER|invite\") && !has_totag()) { append_hf(\"$ru\"); }\n\
         drop;\n\
         }\n",
    );
    let mut h = FakeHost::invite();
    h.myself = vec!["example.com"];
    let (out, _) = run(&s, &mut h);
    assert_eq!(out, Outcome::Drop);
    assert_eq!(
        h.log,
        vec![
            "append_hf(mine|-)",
            "append_hf(re-ci|-)",
            "append_hf(not-reg|-)",
            "append_hf(sip:carol@example.com|-)"
        ]
    );
    assert_eq!(h.du, None);
}

#[test]
fn async_suspends_and_resumes_with_rc() {
    let s = script(
        "route {\n\
         $var(tmp) = \"gone after suspend\";\n\
         $avp(keep) = \"kept\";\n\
         async(avp_db_query(\"select 1 from t where u='$(fu{uri.user})'\", \"$avp(x);$avp(y)\"), resume_here);\n\
         append_hf(\"never\");\n\
         }\n\
         route[resume_here] {\n\
         append_hf(\"rc=$rc var=$var(tmp) avp=$avp(keep)\");\n\
         }\n",
    );
    let mut h = FakeHost::invite();
    h.async_pending = true;
    let mut st = MsgState::new(&s);
    let mut it = Interpreter::new();
    let out = it.run(&s, s.request_route().unwrap(), &mut st, &mut h);
    let Outcome::Suspended { resume } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        h.log,
        vec!["avp_db_query(select 1 from t where u='alice'|pv*2|-)"]
    );
    // As the shard does: the request route's `$var`s are cleared, then (here: no) outputs
    // are set, then the resume route runs.
    st.reset_vars();
    let out = it.resume(&s, resume, -2, &mut st, &mut h);
    assert_eq!(out, Outcome::Done(1));
    assert_eq!(h.log[1], "append_hf(rc=-2 var=<null> avp=kept|-)");
}

#[test]
fn async_completing_synchronously_runs_resume_route_at_once() {
    let s = script(
        "route {\n async(sleep(1), r);\n append_hf(\"never\");\n}\nroute[r] { append_hf(\"resumed $rc\"); }\n",
    );
    let mut h = FakeHost::invite();
    h.rcs = vec![("sleep", 4)];
    let (out, _) = run(&s, &mut h);
    assert_eq!(out, Outcome::Exit);
    assert_eq!(h.log, vec!["sleep(1)", "append_hf(resumed 4|-)"]);
}

#[test]
fn launch_continues() {
    let s = script(
        "route {\n launch(exec(\"/bin/true $ci\"), done);\n append_hf(\"after launch $rc\");\n}\nroute[done] { exit; }\n",
    );
    let mut h = FakeHost::invite();
    run(&s, &mut h);
    assert_eq!(h.log[0], "exec(/bin/true call-1|-|-|-|-)");
    assert!(h.log[1].starts_with("launched report=Some("));
    assert_eq!(h.log[2], "append_hf(after launch 1|-)");
}

#[test]
fn runaway_recursion_is_aborted() {
    let s = script("route { route(loop); }\nroute[loop] { route(loop); }\n");
    let mut h = FakeHost::invite();
    let (out, _) = run(&s, &mut h);
    assert!(matches!(out, Outcome::Aborted(_)), "{out:?}");
}

#[test]
fn state_reset_between_messages() {
    let s = script("route {\n $avp(a) = 1; $var(v) = \"x\"; setflag(1);\n}\n");
    let mut h = FakeHost::invite();
    let (_, mut st) = run(&s, &mut h);
    assert!(st.flag(1));
    st.reset();
    assert!(!st.flag(1));
    assert_eq!(st.var(0), ValRef::Null);
    assert_eq!(st.avp_values(0).count(), 0);
}
