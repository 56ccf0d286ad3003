//! The front end never panics: arbitrary text, and realistic scripts with random bytes
//! cut out or spliced in, must give either a script or diagnostics.

use proptest::prelude::*;
use ringsip::script::{compile, Registry, DEFAULT_SCRIPT};

const SAMPLE: &str = include_str!("scripts/async_billing.cfg");

fn run(src: &str) {
    let reg = Registry::builtin();
    match compile("fuzz.cfg", src, &reg) {
        Ok(_) => {}
        Err(d) => {
            assert!(d.has_errors());
            let _ = d.to_string();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(s in "[ -~\\n\\t\u{e9}\u{2603}]{0,200}") {
        run(&s);
    }

    #[test]
    fn script_tokens_soup(parts in proptest::collection::vec(prop_oneof![
        Just("route"), Just("{"), Just("}"), Just("("), Just(")"), Just("["), Just("]"), Just(";"),
        Just(","), Just("if"), Just("else"), Just("switch"), Just("case"), Just(":"), Just("default"),
        Just("while"), Just("break"), Just("return"), Just("$var(x)"), Just("$(avp(a)[*]{s.len})"),
        Just("\"str $ru\""), Just("=="), Just("="), Just("!"), Just("&&"), Just("t_relay"), Just("1"),
        Just("async"), Just("loadmodule \"tm.so\"\n"), Just("\n"), Just("$"), Just("#c\n"), Just("/*"),
    ], 0..60)) {
        run(&parts.join(" "));
    }

    #[test]
    fn mutated_scripts(cut in 0usize..4000, len in 0usize..40, insert in "[ -~]{0,8}", which in 0usize..2) {
        let base = if which == 0 { SAMPLE } else { DEFAULT_SCRIPT };
        let mut s: Vec<u8> = base.as_bytes().to_vec();
        let at = cut.min(s.len());
        let end = (at + len).min(s.len());
        s.splice(at..end, insert.bytes());
        run(&String::from_utf8_lossy(&s));
    }
}
