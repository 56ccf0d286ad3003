//! Negative tests: each class of script error is reported at its `line:col`, all errors
//! of a file are reported in one run, and the rendering shows the caret snippet.

use ringsip::script::{compile, Registry};

const HEAD: &str = "loadmodule \"tm.so\"\nloadmodule \"sl.so\"\nloadmodule \"sipmsgops.so\"\n";

/// Compiles `HEAD + body` and returns the errors as (line, col, message); lines count
/// from the first body line = 4.
fn errors(body: &str) -> Vec<(u32, u32, String)> {
    let src = format!("{HEAD}{body}");
    match compile("t.cfg", &src, &Registry::builtin()) {
        Ok(_) => panic!("expected errors for:\n{body}"),
        Err(d) => d
            .errors()
            .map(|e| (e.line, e.col, e.message.clone()))
            .collect(),
    }
}

fn one(body: &str, line: u32, col: u32, needle: &str) {
    let e = errors(body);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (line, col), "{e:#?}");
    assert!(
        e[0].2.contains(needle),
        "`{}` does not contain `{needle}`",
        e[0].2
    );
}

#[test]
fn unterminated_string() {
    let e = errors("route {\n\txlog(\"oops);\n}\n");
    assert_eq!((e[0].0, e[0].1), (5, 7), "{e:#?}");
    assert!(e[0].2.contains("unterminated string"));
}

#[test]
fn missing_semicolon() {
    one("route {\n\tt_relay()\n\texit;\n}\n", 6, 2, "expected `;`");
}

#[test]
fn all_errors_reported_after_recovery() {
    let e = errors(
        "route {\n\tt_relay(;\n\tnot_a_function();\n\t$rm = \"X\";\n}\nfailure_route[f] {\n\tif ($ru == ) { exit; }\n}\n",
    );
    let at: Vec<(u32, u32)> = e.iter().map(|x| (x.0, x.1)).collect();
    assert_eq!(at, vec![(5, 10), (6, 2), (7, 2), (10, 13)], "{e:#?}");
}

#[test]
fn unknown_module() {
    one(
        "loadmodule \"mi_fifo.so\"\nmodparam(\"mi_fifo\", \"fifo_name\", \"/tmp/x\")\nroute { exit; }\n",
        4,
        12,
        "module `mi_fifo` is not available",
    );
}

#[test]
fn modparam_errors() {
    let e = errors(
        "modparam(\"rr\", \"append_fromtag\", 1)\nmodparam(\"tm\", \"no_such\", 1)\nmodparam(\"tm\", \"fr_timeout\", \"5\")\nroute { exit; }\n",
    );
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (4, 10));
    assert!(e[0].2.contains("not loaded"));
    assert_eq!((e[1].0, e[1].1), (5, 16));
    assert!(e[1].2.contains("has no parameter `no_such`"));
    assert_eq!((e[2].0, e[2].1), (6, 30));
    assert!(e[2].2.contains("is an integer"));
}

#[test]
fn unknown_function_and_unloaded_module() {
    let e = errors("route {\n\tfoo_bar();\n\trecord_route();\n}\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (5, 2));
    assert!(e[0].2.contains("unknown function `foo_bar`"));
    assert_eq!((e[1].0, e[1].1), (6, 2));
    assert!(e[1].2.contains("module `rr`, which is not loaded"));
}

#[test]
fn arity_and_argument_kinds() {
    let e = errors("route {\n\tsl_send_reply(404);\n\tsl_send_reply(\"abc\", \"x\");\n\tt_relay(\"a\", 2, 3);\n}\n");
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (5, 2));
    assert!(e[0].2.contains("takes 2 argument(s), 1 given"));
    assert_eq!((e[1].0, e[1].1), (6, 16));
    assert!(e[1].2.contains("must be an integer"));
    assert_eq!((e[2].0, e[2].1), (7, 2));
}

#[test]
fn undefined_routes() {
    let e = errors("route {\n\troute(nowhere);\n\tt_on_failure(\"missing\");\n}\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (5, 8));
    assert!(e[0].2.contains("`route[nowhere]` is not defined"));
    assert_eq!((e[1].0, e[1].1), (6, 15));
    assert!(e[1].2.contains("`failure_route[missing]` is not defined"));
}

#[test]
fn read_only_pseudo_variable() {
    one("route {\n\t$rm = \"INVITE\";\n}\n", 5, 2, "read-only");
}

#[test]
fn bad_pseudo_variables_and_transformations() {
    let e = errors("route {\n\t$var(a) = $nope;\n\t$var(b) = $(ru{s.frobnicate});\n\t$var(c) = $var(x)[1];\n}\n");
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (5, 12));
    assert!(e[0].2.contains("unknown pseudo-variable `$nope`"));
    assert_eq!((e[1].0, e[1].1), (6, 12));
    assert!(e[1].2.contains("s.frobnicate"));
    assert_eq!((e[2].0, e[2].1), (7, 12));
}

#[test]
fn function_not_allowed_in_route_type() {
    one(
        "route { exit; }\nonreply_route[r] {\n\tsl_send_reply(200, \"OK\");\n}\n",
        6,
        2,
        "cannot be used in onreply_route",
    );
}

#[test]
fn route_type_follows_route_calls() {
    // route[common] is reached from a failure route, where sl_send_reply is not allowed.
    one(
        "route { route(common); }\nfailure_route[f] { route(common); }\nroute[common] {\n\tsl_send_reply(500, \"x\");\n}\n",
        7,
        2,
        "cannot be used in failure_route",
    );
}

#[test]
fn async_rules() {
    // A module function without an async implementation runs synchronously under
    // async() (as in OpenSIPS); a core statement there is an error.
    let src = "loadmodule \"cfgutils.so\"\nroute {\n\tasync(setflag(1), r1);\n\tasync(sleep(1), missing);\n\tasync(t_relay(), r1);\n}\nroute[r1] { exit; }\nstartup_route {\n\tasync(sleep(1), r1);\n}\n";
    let e = errors(src);
    let at: Vec<(u32, u32)> = e.iter().map(|x| (x.0, x.1)).collect();
    assert_eq!(at, vec![(6, 8), (7, 18), (12, 8)], "{e:#?}");
    assert!(e[0].2.contains("no asynchronous implementation"));
    assert!(e[1].2.contains("`route[missing]` is not defined"));
    assert!(e[2].2.contains("`async()` cannot be used in startup_route"));
}

#[test]
fn async_in_onreply_route_is_accepted_and_in_branch_route_refused_at_start() {
    let ok = "loadmodule \"cfgutils.so\"\nloadmodule \"tm.so\"\nroute {\n\tt_on_reply(\"r\");\n\tt_relay();\n}\nonreply_route[r] {\n\tasync(sleep(1), back);\n}\nroute[back] { exit; }\n";
    let ok = format!("{HEAD}{ok}");
    assert!(compile("t.cfg", &ok, &Registry::builtin()).is_ok());
    // A branch is never held: refused, with the reason and what to do instead, also
    // when the async() is in a route reached from the branch route.
    let src = "loadmodule \"cfgutils.so\"\nloadmodule \"tm.so\"\nroute {\n\tt_on_branch(\"b\");\n\tt_relay();\n}\nbranch_route[b] {\n\troute(look);\n}\nroute[look] {\n\tasync(sleep(1), back);\n}\nroute[back] { exit; }\n";
    let e = errors(src);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (14, 8), "{e:#?}");
    assert!(
        e[0].2.contains(
            "`async()` cannot be used in branch_route (allowed in: route, onreply_route, \
             failure_route): a branch is not held while an operation runs"
        ),
        "{e:#?}"
    );
    assert!(e[0].2.contains("before t_relay()"), "{e:#?}");
}

#[test]
fn duplicate_and_missing_routes() {
    let e = errors("route[a] { exit; }\nroute[a] { exit; }\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e[0].2.contains("no main request route"));
    assert_eq!((e[1].0, e[1].1), (5, 1));
    assert!(e[1].2.contains("defined twice"));
}

#[test]
fn break_outside_loop_and_bad_regex() {
    let e = errors("route {\n\tbreak;\n\tif ($ru =~ \"(\") { exit; }\n}\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (5, 2));
    assert_eq!((e[1].0, e[1].1), (6, 13));
    assert!(e[1].2.contains("invalid regular expression"));
}

#[test]
fn unbalanced_preprocessor_conditionals() {
    let e = errors("#!ifndef A\nroute { exit; }\n#!endif\n#!endif\n#!ifndef B\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (7, 1));
    assert!(e[0].2.contains("`#!endif` without"));
    assert_eq!((e[1].0, e[1].1), (8, 1));
    assert!(e[1].2.contains("without `#!endif`"));
}

#[test]
fn bad_global_values() {
    let e = errors("children=abc\nsocket=udp:1.2.3.4:70000\nroute { exit; }\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (4, 10));
    assert_eq!((e[1].0, e[1].1), (5, 8));
    assert!(e[1].2.contains("bad port"));
}

#[test]
fn rendering_has_location_and_caret() {
    let src = "route {\n\tfoo(1);\n}\n";
    let d = compile("my.cfg", src, &Registry::builtin()).unwrap_err();
    let text = d.to_string();
    assert_eq!(
        text,
        "my.cfg:2:2: error: unknown function `foo`\n  \tfoo(1);\n  \t^^^\n"
    );
}

#[test]
fn for_needs_all_values() {
    one(
        "route {\n\tfor ($var(v) in $avp(x)) { exit; }\n}\n",
        5,
        18,
        "iterates over all values",
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep_expr = format!(
        "route {{\n\tif ({}1{}) {{ exit; }}\n}}\n",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let e = errors(&deep_expr);
    assert!(
        e.iter().any(|x| x.2.contains("nesting deeper than")),
        "{e:#?}"
    );
    let deep_not = format!("route {{\n\tif ({}1) {{ exit; }}\n}}\n", "!".repeat(5000));
    assert!(errors(&deep_not)
        .iter()
        .any(|x| x.2.contains("nesting deeper than")));
    let deep_blocks = format!(
        "route {{\n{}exit;{}\n}}\n",
        "{".repeat(5000),
        "}".repeat(5000)
    );
    assert!(errors(&deep_blocks)
        .iter()
        .any(|x| x.2.contains("nesting deeper than")));
}

#[test]
fn nesting_within_the_limit_compiles() {
    let src = format!(
        "{HEAD}route {{\n{}exit;{}\n}}\nroute[x] {{ if ({}1{}) {{ exit; }} }}\n",
        "if (1) {".repeat(150),
        "}".repeat(150),
        "(".repeat(90),
        ")".repeat(90)
    );
    if let Err(d) = compile("t.cfg", &src, &Registry::builtin()) {
        panic!("{d}");
    }
}

#[test]
fn constant_status_codes_and_regexes_are_checked() {
    let e = errors("route {\n\tsl_send_reply(99, \"x\");\n\tif (t_check_status(\"5[0-9\")) { exit; }\n\tt_reply(\"700\", \"x\");\n}\n");
    let at: Vec<(u32, u32)> = e.iter().map(|x| (x.0, x.1)).collect();
    assert_eq!(at, vec![(5, 16), (6, 21), (7, 10)], "{e:#?}");
    assert!(e[0].2.contains("not a SIP status code"));
    assert!(e[1].2.contains("invalid regular expression"));
}

#[test]
fn required_argument_after_optional_ones() {
    let src = "loadmodule \"rest_client.so\"\nroute {\n\trest_post(\"http://x/\", \"body\", $var(out));\n\trest_post(\"http://x/\", \"body\", , $var(out));\n}\n";
    let e = errors(src);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (6, 2));
    assert!(e[0]
        .2
        .contains("argument `body` of `rest_post` is required"));
}
