//! Pseudo-variables and transformations in their compiled (resolved) form, their parser
//! from script text, the splitting of format strings (`"Credit of $avp(uid)\n"`) into
//! literal and pseudo-variable parts, and the evaluation of transformations.
//!
//! Invariant: a `Pv` never holds a name to look up at run time except header names and
//! `$time` formats, which are data for the host; `$var`/`$avp`/`$shv` names are interned
//! to slot numbers at compile time (`Names`).

use super::lexer::pv_text_len;

/// Pseudo-variables that live in the SIP message or the host (read through `ScriptHost`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgPv {
    /// `$ru` request URI
    Ru,
    /// `$rU` request URI user
    RUser,
    /// `$rd` request URI host
    Rd,
    /// `$rp` request URI port
    Rp,
    /// `$rP` request URI transport
    RTransport,
    /// `$ou` original request URI
    Ou,
    /// `$oU`
    OUser,
    /// `$du` destination URI
    Du,
    Fu,
    FUser,
    Fd,
    Fn,
    Tu,
    TUser,
    Td,
    Tn,
    Ft,
    Tt,
    Ci,
    Cs,
    Rm,
    Rs,
    Rr,
    Si,
    Sp,
    /// `$Ri` receiving local IP
    RecvIp,
    /// `$Rp` receiving local port
    RecvPort,
    /// `$pr` / `$proto`
    Proto,
    /// `$hdr(name)`; the name as written.
    Hdr(Box<str>),
    Ua,
    Ct,
    Mb,
    Rb,
    Ml,
    TBranchIdx,
    Ts,
    Tf,
    /// `$time(fmt)`, a strftime format.
    Time(Box<str>),
    Random,
}

impl MsgPv {
    /// Whether the script may assign it.
    pub fn writable(&self) -> bool {
        matches!(
            self,
            MsgPv::Ru | MsgPv::RUser | MsgPv::Rd | MsgPv::Rp | MsgPv::Du
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PvKind {
    Msg(MsgPv),
    /// `$var(x)`: per-message script variable slot.
    Var(u16),
    /// `$avp(x)`: AVP id.
    Avp(u16),
    /// `$shv(x)`: shared variable slot.
    Shv(u16),
    /// `$rc` / `$retcode`
    RetCode,
    /// `$param(n)`: the n-th (1-based) argument of `route(name, args...)`.
    Param(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvIndex {
    /// No index: the newest value.
    None,
    /// `[n]`; negative counts from the oldest (`-1` is the last).
    At(i32),
    /// `[*]`: all values.
    All,
    /// `[$var(i)]`: the index is read from a `$var` slot at run time. The interpreter
    /// turns it into `At` before a host or AVP lookup sees it.
    Var(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trans {
    SLen,
    SInt,
    SSubstr(i64, i64),
    SSelect(i64, char),
    /// `{s.substr,o,l}` with a `$var` argument; resolved to `SSubstr` at run time.
    SSubstrVar(TArg, TArg),
    /// `{s.select,i,sep}` with a `$var` index; resolved to `SSelect` at run time.
    SSelectVar(TArg, char),
    SToLower,
    SToUpper,
    STrim,
    SEscapeCommon,
    UriUser,
    UriHost,
    UriPort,
    UriParam(Box<str>),
    ParamValue(Box<str>),
}

/// An integer transformation argument: a constant or a `$var` slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TArg {
    Int(i64),
    Var(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pv {
    pub kind: PvKind,
    pub index: PvIndex,
    pub trans: Box<[Trans]>,
}

impl Pv {
    pub fn writable(&self) -> bool {
        self.trans.is_empty()
            && match &self.kind {
                PvKind::Msg(m) => m.writable(),
                PvKind::Var(_) | PvKind::Avp(_) | PvKind::Shv(_) => true,
                PvKind::RetCode | PvKind::Param(_) => false,
            }
    }
}

/// Interned names of `$var`, `$avp` and `$shv` variables of one script.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub vars: Vec<Box<str>>,
    pub avps: Vec<Box<str>>,
    pub shvs: Vec<Box<str>>,
}

fn intern(list: &mut Vec<Box<str>>, name: &str) -> Result<u16, String> {
    if let Some(i) = list.iter().position(|n| &**n == name) {
        return u16::try_from(i).map_err(|_| "too many variables".to_owned());
    }
    list.push(name.into());
    u16::try_from(list.len() - 1).map_err(|_| "too many variables".to_owned())
}

/// A string split at compile time into literal and pseudo-variable parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FmtPart {
    Lit(Box<str>),
    Pv(Pv),
}

/// Parses the text of one pseudo-variable (starting with `$`). Errors are messages meant to
/// be attached to the pseudo-variable's span.
pub fn parse_pv(text: &str, names: &mut Names) -> Result<Pv, String> {
    let body = text
        .strip_prefix('$')
        .ok_or_else(|| format!("`{text}` is not a pseudo-variable"))?;
    // `$(name(arg)[idx]{trans}...)` or `$name(arg)[idx]`
    let (inner, wrapped) = match body.strip_prefix('(') {
        Some(rest) => (
            rest.strip_suffix(')')
                .ok_or_else(|| format!("unbalanced parentheses in `{text}`"))?,
            true,
        ),
        None => (body, false),
    };
    let name_end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let name = &inner[..name_end];
    let mut rest = &inner[name_end..];
    let mut arg: Option<&str> = None;
    if let Some(r) = rest.strip_prefix('(') {
        let close = r
            .find(')')
            .ok_or_else(|| format!("missing `)` in `{text}`"))?;
        arg = Some(r[..close].trim());
        rest = &r[close + 1..];
    }
    let mut index = PvIndex::None;
    if let Some(r) = rest.strip_prefix('[') {
        let close = r
            .find(']')
            .ok_or_else(|| format!("missing `]` in `{text}`"))?;
        let idx = r[..close].trim();
        index = if idx == "*" {
            PvIndex::All
        } else if let Some(v) = idx.strip_prefix("$var(").and_then(|r| r.strip_suffix(')')) {
            PvIndex::Var(intern(&mut names.vars, v.trim())?)
        } else {
            PvIndex::At(idx.parse::<i32>().map_err(|_| {
                format!("index `[{idx}]` of `{text}` must be an integer, `*` or a `$var(...)`")
            })?)
        };
        rest = &r[close + 1..];
    }
    let mut trans = Vec::new();
    while let Some(r) = rest.strip_prefix('{') {
        if !wrapped {
            return Err(format!(
                "transformations need the `$(...)` form, e.g. `$({}{{...}})`",
                &body
            ));
        }
        let close = r
            .find('}')
            .ok_or_else(|| format!("missing `}}` in `{text}`"))?;
        trans.push(parse_trans(&r[..close], names)?);
        rest = &r[close + 1..];
    }
    if !rest.is_empty() {
        return Err(format!("unexpected `{rest}` in pseudo-variable `{text}`"));
    }
    let need_arg = |what: &str| -> Result<&str, String> {
        match arg {
            Some(a) if !a.is_empty() => Ok(a),
            _ => Err(format!("`${what}` needs a name: `${what}(name)`")),
        }
    };
    let kind = match name {
        "var" => PvKind::Var(intern(&mut names.vars, need_arg("var")?)?),
        "avp" => PvKind::Avp(intern(&mut names.avps, need_arg("avp")?)?),
        "shv" => PvKind::Shv(intern(&mut names.shvs, need_arg("shv")?)?),
        "hdr" => PvKind::Msg(MsgPv::Hdr(need_arg("hdr")?.into())),
        "time" => PvKind::Msg(MsgPv::Time(need_arg("time")?.into())),
        "rc" | "retcode" => PvKind::RetCode,
        "param" => match need_arg("param")?.parse::<u8>() {
            Ok(n) if n > 0 => PvKind::Param(n),
            _ => return Err(format!("`{text}`: route parameters are numbered from 1")),
        },
        _ => {
            if arg.is_some() {
                return Err(format!(
                    "pseudo-variable `${name}` takes no `(...)` argument"
                ));
            }
            PvKind::Msg(match name {
                "ru" => MsgPv::Ru,
                "rU" => MsgPv::RUser,
                "rd" => MsgPv::Rd,
                "rp" => MsgPv::Rp,
                "rP" => MsgPv::RTransport,
                "ou" => MsgPv::Ou,
                "oU" => MsgPv::OUser,
                "du" => MsgPv::Du,
                "fu" => MsgPv::Fu,
                "fU" => MsgPv::FUser,
                "fd" => MsgPv::Fd,
                "fn" => MsgPv::Fn,
                "tu" => MsgPv::Tu,
                "tU" => MsgPv::TUser,
                "td" => MsgPv::Td,
                "tn" => MsgPv::Tn,
                "ft" => MsgPv::Ft,
                "tt" => MsgPv::Tt,
                "ci" => MsgPv::Ci,
                "cs" => MsgPv::Cs,
                "rm" => MsgPv::Rm,
                "rs" => MsgPv::Rs,
                "rr" => MsgPv::Rr,
                "si" => MsgPv::Si,
                "sp" => MsgPv::Sp,
                "Ri" => MsgPv::RecvIp,
                "Rp" => MsgPv::RecvPort,
                "pr" | "proto" => MsgPv::Proto,
                "ua" => MsgPv::Ua,
                "ct" => MsgPv::Ct,
                "mb" => MsgPv::Mb,
                "rb" => MsgPv::Rb,
                "ml" => MsgPv::Ml,
                "T_branch_idx" => MsgPv::TBranchIdx,
                "Ts" => MsgPv::Ts,
                "Tf" => MsgPv::Tf,
                "RANDOM" => MsgPv::Random,
                _ => return Err(format!("unknown pseudo-variable `${name}`")),
            })
        }
    };
    let multi = matches!(kind, PvKind::Avp(_) | PvKind::Msg(MsgPv::Hdr(_)));
    if index != PvIndex::None && !multi {
        return Err(format!("pseudo-variable `{text}` cannot be indexed"));
    }
    Ok(Pv {
        kind,
        index,
        trans: trans.into_boxed_slice(),
    })
}

fn parse_trans(t: &str, names: &mut Names) -> Result<Trans, String> {
    let mut parts = t.split(',');
    let name = parts.next().unwrap_or("").trim();
    let args: Vec<&str> = parts.collect();
    let mut int_arg = |i: usize| -> Result<TArg, String> {
        let a = args.get(i).map_or("", |a| a.trim());
        if let Ok(v) = a.parse::<i64>() {
            return Ok(TArg::Int(v));
        }
        if let Some(v) = a.strip_prefix("$var(").and_then(|r| r.strip_suffix(')')) {
            return Ok(TArg::Var(intern(&mut names.vars, v.trim())?));
        }
        Err(format!(
            "transformation `{{{t}}}` needs an integer or `$var(...)` argument {}",
            i + 1
        ))
    };
    let str_arg = |i: usize| -> Result<Box<str>, String> {
        args.get(i)
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .map(Into::into)
            .ok_or_else(|| format!("transformation `{{{t}}}` needs a name argument"))
    };
    let no_args = |tr: Trans| -> Result<Trans, String> {
        if args.is_empty() {
            Ok(tr)
        } else {
            Err(format!("transformation `{{{name}}}` takes no arguments"))
        }
    };
    match name {
        "s.len" => no_args(Trans::SLen),
        "s.int" => no_args(Trans::SInt),
        "s.tolower" => no_args(Trans::SToLower),
        "s.toupper" => no_args(Trans::SToUpper),
        "s.trim" => no_args(Trans::STrim),
        "s.escape.common" => no_args(Trans::SEscapeCommon),
        "uri.user" => no_args(Trans::UriUser),
        "uri.host" => no_args(Trans::UriHost),
        "uri.port" => no_args(Trans::UriPort),
        "s.substr" => Ok(match (int_arg(0)?, int_arg(1)?) {
            (TArg::Int(o), TArg::Int(l)) => Trans::SSubstr(o, l),
            (o, l) => Trans::SSubstrVar(o, l),
        }),
        "s.select" => {
            let idx = int_arg(0)?;
            // `{s.select,1,,}` selects on a comma: the split leaves two empty parts.
            let sep = match (args.get(1), args.len()) {
                (Some(s), 2) if s.chars().count() == 1 => s.chars().next(),
                (Some(&""), 3) => Some(','),
                _ => None,
            }
            .ok_or_else(|| format!("transformation `{{{t}}}` needs a one-character separator"))?;
            Ok(match idx {
                TArg::Int(i) => Trans::SSelect(i, sep),
                v => Trans::SSelectVar(v, sep),
            })
        }
        "uri.param" => Ok(Trans::UriParam(str_arg(0)?)),
        "param.value" => Ok(Trans::ParamValue(str_arg(0)?)),
        _ => Err(format!(
            "unknown or unsupported transformation `{{{name}}}`"
        )),
    }
}

/// Splits a double-quoted string into parts. A `$` that does not start a pseudo-variable
/// (e.g. at the end of a regex) stays literal.
pub fn split_format(s: &str, names: &mut Names) -> Result<Box<[FmtPart]>, String> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            if let Some(n) = pv_text_len(b, i) {
                if !lit.is_empty() {
                    parts.push(FmtPart::Lit(std::mem::take(&mut lit).into()));
                }
                parts.push(FmtPart::Pv(parse_pv(&s[i..i + n], names)?));
                i += n;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        lit.push(ch);
        i += ch.len_utf8();
    }
    if !lit.is_empty() {
        parts.push(FmtPart::Lit(lit.into()));
    }
    Ok(parts.into_boxed_slice())
}

impl Trans {
    /// Replaces `$var` arguments by their values (`var(slot)` gives an integer); other
    /// transformations are returned as they are. Never allocates.
    pub fn resolve(&self, var: impl Fn(u16) -> i64) -> Option<Trans> {
        let get = |a: TArg| match a {
            TArg::Int(i) => i,
            TArg::Var(s) => var(s),
        };
        match *self {
            Trans::SSubstrVar(o, l) => Some(Trans::SSubstr(get(o), get(l))),
            Trans::SSelectVar(i, sep) => Some(Trans::SSelect(get(i), sep)),
            _ => None,
        }
    }
}

/// The result of one transformation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransOut {
    Int(i64),
    /// The string was written to `out`.
    Str,
    Null,
}

/// Parses a leading signed decimal integer as OpenSIPS `{s.int}` does (0 when none).
pub fn str_to_int(s: &str) -> i64 {
    let s = s.trim();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for c in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(c - b'0'));
    }
    if neg {
        -v
    } else {
        v
    }
}

/// The parts of a SIP URI (`sip:user:pw@host:port;params?headers`, optionally inside a
/// name-addr `"Name" <...>`), as slices of the input.
pub struct UriParts<'a> {
    pub user: &'a str,
    pub host: &'a str,
    pub port: &'a str,
    pub params: &'a str,
}

pub fn split_uri(s: &str) -> Option<UriParts<'_>> {
    let s = s.trim();
    let s = match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(z)) if a < z => &s[a + 1..z],
        _ => s,
    };
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    if !scheme.eq_ignore_ascii_case("sip")
        && !scheme.eq_ignore_ascii_case("sips")
        && !scheme.eq_ignore_ascii_case("tel")
    {
        return None;
    }
    let rest = &s[colon + 1..];
    let rest = rest.split('?').next().unwrap_or(rest);
    let (user, hostpart) = match rest.rfind('@') {
        Some(at) => (rest[..at].split(':').next().unwrap_or(""), &rest[at + 1..]),
        None => ("", rest),
    };
    let (hostport, params) = match hostpart.find(';') {
        Some(p) => (&hostpart[..p], &hostpart[p + 1..]),
        None => (hostpart, ""),
    };
    let (host, port) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(e) => (
                &hostport[..=e],
                hostport[e + 1..].strip_prefix(':').unwrap_or(""),
            ),
            None => (hostport, ""),
        }
    } else {
        match hostport.rfind(':') {
            Some(c) => (&hostport[..c], &hostport[c + 1..]),
            None => (hostport, ""),
        }
    };
    Some(UriParts {
        user,
        host,
        port,
        params,
    })
}

/// Value of `name` in a `;`-separated parameter list (`a=1;b;c=3`); `Some("")` for a
/// parameter without value.
pub fn param_value<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    list.split(';').find_map(|p| {
        let p = p.trim();
        let (n, v) = match p.find('=') {
            Some(e) => (p[..e].trim(), p[e + 1..].trim()),
            None => (p, ""),
        };
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// Applies one transformation to a string input. `out` receives the string result.
pub fn apply_str(t: &Trans, input: &str, out: &mut String) -> TransOut {
    match t {
        Trans::SLen => TransOut::Int(i64::try_from(input.len()).unwrap_or(i64::MAX)),
        Trans::SInt => TransOut::Int(str_to_int(input)),
        Trans::SToLower => {
            out.extend(input.chars().map(|c| c.to_ascii_lowercase()));
            TransOut::Str
        }
        Trans::SToUpper => {
            out.extend(input.chars().map(|c| c.to_ascii_uppercase()));
            TransOut::Str
        }
        Trans::STrim => {
            out.push_str(input.trim());
            TransOut::Str
        }
        Trans::SEscapeCommon => {
            for c in input.chars() {
                match c {
                    '\'' | '"' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    '\0' => out.push_str("\\0"),
                    _ => out.push(c),
                }
            }
            TransOut::Str
        }
        Trans::SSubstr(off, len) => {
            let n = i64::try_from(input.len()).unwrap_or(i64::MAX);
            let start = if *off < 0 {
                n.saturating_add(*off)
            } else {
                *off
            };
            if start < 0 || start > n || *len < 0 {
                return TransOut::Null;
            }
            let end = if *len == 0 {
                n
            } else {
                start.saturating_add(*len).min(n)
            };
            match input.get(start as usize..end as usize) {
                Some(s) => {
                    out.push_str(s);
                    TransOut::Str
                }
                None => TransOut::Null,
            }
        }
        Trans::SSelect(idx, sep) => {
            let found = if *idx >= 0 {
                input.split(*sep).nth(*idx as usize)
            } else {
                input.rsplit(*sep).nth(idx.unsigned_abs() as usize - 1)
            };
            match found {
                Some(s) => {
                    out.push_str(s);
                    TransOut::Str
                }
                None => TransOut::Null,
            }
        }
        Trans::UriUser | Trans::UriHost | Trans::UriPort | Trans::UriParam(_) => {
            let Some(u) = split_uri(input) else {
                return TransOut::Null;
            };
            let v = match t {
                Trans::UriUser => Some(u.user),
                Trans::UriHost => Some(u.host),
                Trans::UriPort => Some(u.port),
                Trans::UriParam(name) => param_value(u.params, name),
                _ => None,
            };
            match v {
                Some(s) => {
                    out.push_str(s);
                    TransOut::Str
                }
                None => TransOut::Null,
            }
        }
        // Resolved by the interpreter before application (`Trans::resolve`).
        Trans::SSubstrVar(..) | Trans::SSelectVar(..) => TransOut::Null,
        Trans::ParamValue(name) => match param_value(input.trim_start_matches(';'), name) {
            Some(s) => {
                out.push_str(s);
                TransOut::Str
            }
            None => TransOut::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(t: &str) -> Result<Pv, String> {
        parse_pv(t, &mut Names::default())
    }

    #[test]
    fn parses_forms() {
        assert_eq!(pv("$ru").unwrap().kind, PvKind::Msg(MsgPv::Ru));
        assert_eq!(pv("$rU").unwrap().kind, PvKind::Msg(MsgPv::RUser));
        assert_eq!(pv("$Rp").unwrap().kind, PvKind::Msg(MsgPv::RecvPort));
        let h = pv("$(hdr(Via)[*])").unwrap();
        assert_eq!(
            (h.kind, h.index),
            (PvKind::Msg(MsgPv::Hdr("Via".into())), PvIndex::All)
        );
        let h = pv("$hdr(X-Foo)[1]").unwrap();
        assert_eq!(h.index, PvIndex::At(1));
        let a = pv("$(avp(x)[-1]{s.len})").unwrap();
        assert_eq!((a.index, &*a.trans), (PvIndex::At(-1), &[Trans::SLen][..]));
        let t = pv("$(ru{uri.user}{s.substr,1,0}{s.select,-1,.}{param.value,tag})").unwrap();
        assert_eq!(
            &*t.trans,
            &[
                Trans::UriUser,
                Trans::SSubstr(1, 0),
                Trans::SSelect(-1, '.'),
                Trans::ParamValue("tag".into())
            ][..]
        );
        assert_eq!(
            pv("$(var(x){s.select,0,,})").unwrap().trans[0],
            Trans::SSelect(0, ',')
        );
        assert_eq!(
            pv("$time(%H:%M)").unwrap().kind,
            PvKind::Msg(MsgPv::Time("%H:%M".into()))
        );
        assert_eq!(pv("$param(2)").unwrap().kind, PvKind::Param(2));
    }

    #[test]
    fn interns_names() {
        let mut n = Names::default();
        let a = parse_pv("$var(a)", &mut n).unwrap();
        let b = parse_pv("$var(b)", &mut n).unwrap();
        let a2 = parse_pv("$(var(a){s.len})", &mut n).unwrap();
        assert_eq!(
            (a.kind, b.kind.clone(), a2.kind),
            (PvKind::Var(0), PvKind::Var(1), PvKind::Var(0))
        );
        assert_eq!(n.vars.len(), 2);
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "$nope",
            "$var",
            "$var()",
            "$ru(x)",
            "$ru{s.len}",
            "$(ru{s.bogus})",
            "$var(x)[0]",
            "$(avp(x)[a])",
            "$param(0)",
        ] {
            assert!(pv(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn splits_formats() {
        let mut n = Names::default();
        let p = split_format("Credit of $avp(uid) is $avp(credit)\n", &mut n).unwrap();
        assert_eq!(p.len(), 5);
        assert_eq!(p[0], FmtPart::Lit("Credit of ".into()));
        assert!(matches!(p[1], FmtPart::Pv(_)));
        assert_eq!(p[4], FmtPart::Lit("\n".into()));
        // A `$` that starts no pseudo-variable is literal.
        let p = split_format("^[0-9]+$ costs $ 5", &mut n).unwrap();
        assert_eq!(&*p, &[FmtPart::Lit("^[0-9]+$ costs $ 5".into())][..]);
    }

    #[test]
    fn uri_and_params() {
        let u = split_uri("\"Bob\" <sip:bob:secret@[::1]:5070;transport=tcp;lr?subject=x>;tag=1")
            .unwrap();
        assert_eq!(
            (u.user, u.host, u.port, u.params),
            ("bob", "[::1]", "5070", "transport=tcp;lr")
        );
        assert_eq!(param_value(u.params, "lr"), Some(""));
        assert_eq!(param_value(u.params, "TRANSPORT"), Some("tcp"));
        assert!(split_uri("http://x").is_none());
    }

    fn apply(t: Trans, input: &str) -> (TransOut, String) {
        let mut out = String::new();
        let r = apply_str(&t, input, &mut out);
        (r, out)
    }

    #[test]
    fn transformations() {
        assert_eq!(apply(Trans::SLen, "héllo").0, TransOut::Int(6));
        assert_eq!(apply(Trans::SInt, " -42abc").0, TransOut::Int(-42));
        assert_eq!(apply(Trans::SSubstr(-3, 2), "abcdef").1, "de");
        assert_eq!(apply(Trans::SSubstr(10, 2), "abc").0, TransOut::Null);
        // Offsets inside a multi-byte character give NULL, never a panic.
        assert_eq!(apply(Trans::SSubstr(1, 1), "é").0, TransOut::Null);
        assert_eq!(apply(Trans::SSelect(1, ','), "a,b,c").1, "b");
        assert_eq!(apply(Trans::SSelect(-1, ','), "a,b,c").1, "c");
        assert_eq!(apply(Trans::SSelect(5, ','), "a,b").0, TransOut::Null);
        assert_eq!(
            apply(Trans::SEscapeCommon, "it's \"x\"\\").1,
            "it\\'s \\\"x\\\"\\\\"
        );
        assert_eq!(apply(Trans::UriHost, "sip:a@b.c:5060").1, "b.c");
        assert_eq!(
            apply(Trans::UriParam("user".into()), "sip:1@b;user=phone").1,
            "phone"
        );
        assert_eq!(
            apply(Trans::ParamValue("tag".into()), ";tag=abc;x").1,
            "abc"
        );
    }

    proptest::proptest! {
        #[test]
        fn transformations_never_panic(s in "\\PC{0,40}", o in -50i64..50, l in -5i64..50, i in -10i64..10) {
            for t in [
                Trans::SLen, Trans::SInt, Trans::SSubstr(o, l), Trans::SSelect(i, ';'), Trans::SToLower,
                Trans::SToUpper, Trans::STrim, Trans::SEscapeCommon, Trans::UriUser, Trans::UriHost,
                Trans::UriPort, Trans::UriParam("a".into()), Trans::ParamValue("a".into()),
            ] {
                let mut out = String::new();
                let _ = apply_str(&t, &s, &mut out);
            }
            let _ = parse_pv(&format!("$({s})"), &mut Names::default());
            let _ = split_format(&s, &mut Names::default());
        }
    }
}
