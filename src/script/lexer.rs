//! Lexer of the OpenSIPS 3.x configuration language: comments (`#`, `//`, `/* */`),
//! identifiers, integers, quoted strings with C escapes, pseudo-variable text (`$ru`,
//! `$avp(x)[1]`, `$(hdr(Via)[*]{s.len})`) and operators.
//!
//! Invariant: the token list always ends with exactly one `Tok::Eof`; every token's span is
//! within the source. Errors are reported to `Diagnostics` and lexing continues.

use super::diag::{Diagnostics, Span};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Int(i64),
    /// A quoted string after escape processing; `double` tells `"..."` from `'...'`.
    Str {
        value: String,
        double: bool,
    },
    /// The full text of a pseudo-variable, starting with `$`.
    Pv(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Semi,
    Comma,
    Colon,
    Assign,
    PlusAssign,
    MinusAssign,
    ColonAssign,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Match,
    NotMatch,
    AndAnd,
    OrOr,
    Not,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Pipe,
    Amp,
    Caret,
    Tilde,
    Shl,
    Shr,
    Dot,
    Other(char),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}
fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// State of the `#!define` / `#!ifdef` preprocessor.
#[derive(Default)]
struct Pre {
    defines: Vec<(String, String)>,
    /// Open `#!ifdef`/`#!ifndef`: (enclosing region active, this branch active, in `#!else`,
    /// span of the directive).
    conds: Vec<(bool, bool, bool, Span)>,
    /// Spans of names replaced by their `#!define` value, with that value.
    expanded: Vec<(Span, String)>,
}

impl Pre {
    fn active(&self) -> bool {
        self.conds.last().is_none_or(|c| c.0 && c.1)
    }

    /// Handles one `#!` line (without the `#!`); unknown directives are comments, as
    /// OpenSIPS reads every `#` line.
    fn directive(&mut self, line: &str, span: Span, diags: &mut Diagnostics) {
        let mut words = line.split_whitespace();
        let word = words.next().unwrap_or("");
        let name = words.next();
        let active = self.active();
        match (word, name) {
            ("ifdef" | "ifndef", Some(n)) => {
                let defined = self.defines.iter().any(|(d, _)| d == n);
                self.conds
                    .push((active, defined == (word == "ifdef"), false, span));
            }
            ("else", _) => match self.conds.last_mut() {
                Some(c) if !c.2 => {
                    c.1 = !c.1;
                    c.2 = true;
                }
                _ => diags.error(span, "`#!else` without `#!ifdef`/`#!ifndef`"),
            },
            ("endif", _) if self.conds.pop().is_none() => {
                diags.error(span, "`#!endif` without `#!ifdef`/`#!ifndef`")
            }
            ("endif", _) => {}
            ("define" | "subst" | "substdef", _) if !active => {}
            ("define", Some(n)) => {
                let value = line
                    .trim_start()
                    .strip_prefix("define")
                    .unwrap_or("")
                    .trim_start()
                    .strip_prefix(n)
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                self.defines.retain(|(d, _)| d != n);
                self.defines.push((n.to_owned(), value));
            }
            ("undef", Some(n)) if active => self.defines.retain(|(d, _)| d != n),
            ("ifdef" | "ifndef" | "define" | "undef", None) => {
                diags.error(span, format!("`#!{word}` needs a name"))
            }
            _ => {}
        }
    }
}

/// Splits `src` into tokens; lexical errors go to `diags`. Handles `#!define NAME value`,
/// `#!undef`, `#!ifdef`/`#!ifndef`/`#!else`/`#!endif`; a defined name used as an identifier
/// is replaced by the tokens of its value (with the name's span).
pub fn lex(src: &str, diags: &mut Diagnostics) -> Vec<Token> {
    lex_with_expansions(src, diags).0
}

/// `lex`, also giving the spans of expanded `#!define` names with their values (the
/// parser needs them to rebuild a global parameter's text).
pub fn lex_with_expansions(
    src: &str,
    diags: &mut Diagnostics,
) -> (Vec<Token>, Vec<(Span, String)>) {
    let mut pre = Pre::default();
    let mut out = lex_inner(src, diags, &mut pre, 0);
    for c in &pre.conds {
        diags.error(c.3, "`#!ifdef`/`#!ifndef` without `#!endif`");
    }
    out.push(Token {
        tok: Tok::Eof,
        span: Span::new(src.len(), src.len()),
    });
    (out, pre.expanded)
}

fn lex_inner(src: &str, diags: &mut Diagnostics, pre: &mut Pre, depth: u32) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0usize;
    let at = |k: usize| b.get(k).copied().unwrap_or(0);
    while i < b.len() {
        if !pre.active() {
            // Skip whole lines, looking only for directives.
            let end = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n);
            let line = src.get(i..end).unwrap_or("");
            if let Some(d) = line.trim_start().strip_prefix("#!") {
                pre.directive(d, Span::new(i, end), diags);
            }
            i = (end + 1).min(b.len());
            continue;
        }
        let c = at(i);
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' || (c == b'/' && at(i + 1) == b'/') {
            let end = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n);
            if c == b'#' && at(i + 1) == b'!' {
                pre.directive(src.get(i + 2..end).unwrap_or(""), Span::new(i, end), diags);
            }
            i = end;
            continue;
        }
        if c == b'/' && at(i + 1) == b'*' {
            match memchr::memmem::find(&b[i + 2..], b"*/") {
                Some(n) => i = i + 2 + n + 2,
                None => {
                    diags.error(Span::new(i, i + 2), "unterminated `/*` comment");
                    i = b.len();
                }
            }
            continue;
        }
        let tok = if is_ident_start(c) {
            while is_ident(at(i)) {
                i += 1;
            }
            let word = &src[start..i];
            if let Some((_, value)) = pre.defines.iter().find(|(d, _)| d == word) {
                let span = Span::new(start, i);
                if depth >= 16 {
                    diags.error(span, format!("`{word}` expands recursively"));
                    continue;
                }
                let value = value.clone();
                let mut sub = Diagnostics::new("", &value);
                let toks = lex_inner(&value, &mut sub, pre, depth + 1);
                if sub.has_errors() {
                    diags.error(
                        span,
                        format!("the value of `#!define {word}` does not lex: `{value}`"),
                    );
                }
                out.extend(toks.into_iter().map(|t| Token { tok: t.tok, span }));
                if depth == 0 {
                    pre.expanded.push((span, value));
                }
                continue;
            }
            Tok::Ident(word.to_owned())
        } else if c.is_ascii_digit() {
            lex_int(src, &mut i, diags)
        } else if c == b'"' || c == b'\'' {
            lex_string(src, &mut i, diags)
        } else if c == b'$' {
            lex_pv(src, &mut i, diags)
        } else {
            let two = [c, at(i + 1)];
            let (t, n) = match &two {
                b"+=" => (Tok::PlusAssign, 2),
                b"-=" => (Tok::MinusAssign, 2),
                b":=" => (Tok::ColonAssign, 2),
                b"==" => (Tok::Eq, 2),
                b"!=" => (Tok::Ne, 2),
                b"<=" => (Tok::Le, 2),
                b">=" => (Tok::Ge, 2),
                b"=~" => (Tok::Match, 2),
                b"!~" => (Tok::NotMatch, 2),
                b"&&" => (Tok::AndAnd, 2),
                b"||" => (Tok::OrOr, 2),
                b"<<" => (Tok::Shl, 2),
                b">>" => (Tok::Shr, 2),
                _ => (
                    match c {
                        b'(' => Tok::LParen,
                        b')' => Tok::RParen,
                        b'{' => Tok::LBrace,
                        b'}' => Tok::RBrace,
                        b'[' => Tok::LBracket,
                        b']' => Tok::RBracket,
                        b';' => Tok::Semi,
                        b',' => Tok::Comma,
                        b':' => Tok::Colon,
                        b'=' => Tok::Assign,
                        b'<' => Tok::Lt,
                        b'>' => Tok::Gt,
                        b'!' => Tok::Not,
                        b'+' => Tok::Plus,
                        b'-' => Tok::Minus,
                        b'*' => Tok::Star,
                        b'/' => Tok::Slash,
                        b'%' => Tok::Percent,
                        b'|' => Tok::Pipe,
                        b'&' => Tok::Amp,
                        b'^' => Tok::Caret,
                        b'~' => Tok::Tilde,
                        b'.' => Tok::Dot,
                        _ => {
                            let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                            i += ch.len_utf8() - 1;
                            Tok::Other(ch)
                        }
                    },
                    1,
                ),
            };
            i += n;
            t
        };
        out.push(Token {
            tok,
            span: Span::new(start, i),
        });
    }
    out
}

fn lex_int(src: &str, i: &mut usize, diags: &mut Diagnostics) -> Tok {
    let b = src.as_bytes();
    let start = *i;
    let (radix, digits_start) =
        if b.get(*i) == Some(&b'0') && matches!(b.get(*i + 1), Some(b'x' | b'X')) {
            (16, *i + 2)
        } else {
            (10, *i)
        };
    *i = digits_start;
    while b
        .get(*i)
        .is_some_and(|c| c.is_ascii_hexdigit() && (radix == 16 || c.is_ascii_digit()))
    {
        *i += 1;
    }
    match i64::from_str_radix(&src[digits_start..*i], radix) {
        Ok(v) => Tok::Int(v),
        Err(_) => {
            diags.error(
                Span::new(start, *i),
                "integer literal out of range or malformed",
            );
            Tok::Int(0)
        }
    }
}

fn lex_string(src: &str, i: &mut usize, diags: &mut Diagnostics) -> Tok {
    let b = src.as_bytes();
    let quote = b[*i];
    let start = *i;
    *i += 1;
    let mut value = String::new();
    loop {
        let Some(&c) = b.get(*i) else {
            diags.error(Span::new(start, start + 1), "unterminated string literal");
            break;
        };
        if c == quote {
            *i += 1;
            break;
        }
        if c == b'\\' {
            let esc = b.get(*i + 1).copied();
            let rep = match esc {
                Some(b'n') => Some('\n'),
                Some(b't') => Some('\t'),
                Some(b'r') => Some('\r'),
                Some(b'\\') => Some('\\'),
                Some(b'"') => Some('"'),
                Some(b'\'') => Some('\''),
                Some(b'0') => Some('\0'),
                _ => None,
            };
            if let Some(r) = rep {
                value.push(r);
                *i += 2;
                continue;
            }
            // Unknown escapes (e.g. regex `\.`) are kept as written.
            value.push('\\');
            *i += 1;
            continue;
        }
        let ch = src[*i..].chars().next().unwrap_or('\u{fffd}');
        value.push(ch);
        *i += ch.len_utf8();
    }
    Tok::Str {
        value,
        double: quote == b'"',
    }
}

/// Finds the end of a balanced `(`...`)` group starting at `i` (which holds `(`); braces
/// (transformations) are skipped as a unit. Returns the offset after the closing paren.
pub(crate) fn balanced_paren(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0i32;
    let mut brace = 0i32;
    while let Some(&c) = b.get(i) {
        match c {
            b'{' => brace += 1,
            b'}' => brace -= 1,
            b'(' if brace == 0 => depth += 1,
            b')' if brace == 0 => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'\n' | b'"' | b';' if brace == 0 => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

fn lex_pv(src: &str, i: &mut usize, diags: &mut Diagnostics) -> Tok {
    let b = src.as_bytes();
    let start = *i;
    match pv_text_len(b, start) {
        Some(n) => {
            *i = start + n;
            Tok::Pv(src[start..*i].to_owned())
        }
        None => {
            *i += 1;
            diags.error(
                Span::new(start, start + 1),
                "malformed pseudo-variable after `$`",
            );
            Tok::Other('$')
        }
    }
}

/// Length of the pseudo-variable text starting at `b[start] == b'$'`, or None when no
/// pseudo-variable starts there (a lone `$`). Shared by the lexer and the format splitter.
pub(crate) fn pv_text_len(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    match b.get(i) {
        Some(b'(') => balanced_paren(b, i).map(|end| end - start),
        Some(&c) if is_ident_start(c) => {
            while b.get(i).is_some_and(|&c| is_ident(c)) {
                i += 1;
            }
            if b.get(i) == Some(&b'(') {
                i = balanced_paren(b, i)?;
                if b.get(i) == Some(&b'[') {
                    let close = b.get(i..)?.iter().position(|&c| c == b']' || c == b'\n')?;
                    if b.get(i + close) != Some(&b']') {
                        return None;
                    }
                    i += close + 1;
                }
            }
            Some(i - start)
        }
        _ => None,
    }
}
