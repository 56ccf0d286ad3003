//! `sipmsgops` and `textops`: header edits and searches on the message being routed.
//! Edits are span edits applied when the message is written (`crate::sip::edit`).

use std::cell::RefCell;
use std::collections::HashMap;

use regex::bytes::Regex;

use crate::proxy::host::Host;
use crate::script::interp::{Arg, MsgState};

use super::arg_str;

thread_local! {
    /// Compiled regular expressions by source text (scripts use a handful of constants).
    static REGEX_CACHE: RefCell<HashMap<String, Option<Regex>>> = RefCell::new(HashMap::new());
}

/// Most regexes kept per shard; past it the cache is cleared (scripts with PV-built
/// patterns must not grow memory without bound).
const REGEX_CACHE_MAX: usize = 256;

fn with_regex<R>(re: &str, f: impl FnOnce(&Regex) -> R) -> Option<R> {
    REGEX_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if !c.contains_key(re) {
            if c.len() >= REGEX_CACHE_MAX {
                c.clear();
            }
            let compiled = Regex::new(re).ok();
            if compiled.is_none() {
                tracing::error!("bad regular expression `{re}`");
            }
            c.insert(re.to_string(), compiled);
        }
        c.get(re).and_then(Option::as_ref).map(f)
    })
}

/// Whether `text` matches `re` (None: the regex does not compile).
pub(crate) fn regex_matches(re: &str, text: &str) -> Option<bool> {
    with_regex(re, |r| r.is_match(text.as_bytes()))
}

/// Splits `Name: value\r\n` text (as `append_hf` takes it) into name and value.
fn split_hf(text: &str) -> Option<(&str, &str)> {
    let line = text.trim_end_matches(['\r', '\n']);
    let (n, v) = line.split_once(':')?;
    Some((n.trim(), v.trim()))
}

/// `append_hf(text[, header])`: adds a header line after the last header (or after the
/// first `header` with the second argument).
pub fn append_hf(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some((name, value)) = arg_str(args, 0).and_then(split_hf) else {
        return -1;
    };
    match h.msg.append_header(name.as_bytes(), value.as_bytes()) {
        Ok(()) => 1,
        Err(_) => -1,
    }
}

/// `insert_hf(text[, header])`: adds a header line before the first header.
pub fn insert_hf(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some((name, value)) = arg_str(args, 0).and_then(split_hf) else {
        return -1;
    };
    match h.msg.insert_header(name.as_bytes(), value.as_bytes()) {
        Ok(()) => 1,
        Err(_) => -1,
    }
}

/// `remove_hf(name)`: removes every header of that name; -1 if none was there.
pub fn remove_hf(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some(name) = arg_str(args, 0) else {
        return -1;
    };
    match h.msg.remove_header(name.trim().as_bytes()) {
        Ok(n) if n > 0 => 1,
        _ => -1,
    }
}

/// `is_present_hf(name)`.
pub fn is_present_hf(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some(name) = arg_str(args, 0) else {
        return -1;
    };
    if h.msg
        .header_lines_named(name.trim().as_bytes())
        .next()
        .is_some()
    {
        1
    } else {
        -1
    }
}

/// `search(regex)`: the regex matches somewhere in the message.
pub fn search(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some(re) = arg_str(args, 0) else {
        return -1;
    };
    match with_regex(re, |r| r.is_match(h.msg.as_bytes())) {
        Some(true) => 1,
        _ => -1,
    }
}

/// `subst_uri('/re/replacement/flags')`: a sed-like substitution on the Request-URI
/// (`\N` back-references; flag `i` ignores case, `g` replaces all).
pub fn subst_uri(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some(expr) = arg_str(args, 0) else {
        return -1;
    };
    let Some((re, repl, flags)) = parse_subst(expr) else {
        tracing::error!("subst_uri: bad expression `{expr}`");
        return -1;
    };
    let pattern = if flags.contains('i') {
        format!("(?i){re}")
    } else {
        re.to_string()
    };
    let uri = h.msg.request_uri().unwrap_or(b"").to_vec();
    // `\1` in OpenSIPS is `${1}` for the regex crate.
    let mut rewritten_repl = String::with_capacity(repl.len());
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                rewritten_repl.push_str("${");
                rewritten_repl.push(*d);
                rewritten_repl.push('}');
                chars.next();
            }
            ('$', _) => rewritten_repl.push_str("$$"),
            _ => rewritten_repl.push(c),
        }
    }
    let result = with_regex(&pattern, |r| {
        if !r.is_match(&uri) {
            return None;
        }
        let out = if flags.contains('g') {
            r.replace_all(&uri, rewritten_repl.as_bytes())
        } else {
            r.replace(&uri, rewritten_repl.as_bytes())
        };
        Some(out.into_owned())
    })
    .flatten();
    match result {
        Some(new) if h.msg.set_request_uri(&new).is_ok() => 1,
        _ => -1,
    }
}

/// Splits `/re/repl/flags` (any delimiter, the first character).
fn parse_subst(expr: &str) -> Option<(&str, &str, &str)> {
    let delim = expr.chars().next()?;
    let rest = expr.get(delim.len_utf8()..)?;
    let mut parts = rest.splitn(3, delim);
    Some((parts.next()?, parts.next()?, parts.next().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subst_expression_splits() {
        assert_eq!(
            parse_subst("/^sip:(.*)@/sip:\\1@/i"),
            Some(("^sip:(.*)@", "sip:\\1@", "i"))
        );
        assert_eq!(parse_subst(""), None);
        assert_eq!(split_hf("X-A: b\r\n"), Some(("X-A", "b")));
        assert_eq!(split_hf("nocolon"), None);
    }
}
