//! Recursive-descent parser of OpenSIPS 3.x scripts into `ast::File`, with error
//! recovery: after a syntax error it skips to the next statement (`;` or `}`) or the next
//! top-level item, so one run reports every error of the file.
//!
//! Invariant: the parser always advances on error, so it terminates on any input.

use super::ast::*;
use super::diag::{Diagnostics, Span};
use super::lexer::{Tok, Token};

/// Returned by parse functions after they reported a diagnostic.
struct Reported;
type PResult<T> = Result<T, Reported>;

/// Deepest nesting of statements and expressions.
const MAX_NESTING: u32 = 200;

struct Parser<'a> {
    nesting: u32,
    src: &'a str,
    expanded: &'a [(Span, String)],
    toks: Vec<Token>,
    pos: usize,
    diags: &'a mut Diagnostics,
}

/// Parses a whole script. Errors go to `diags`; the returned tree holds what parsed.
pub fn parse(
    src: &str,
    toks: Vec<Token>,
    expanded: &[(Span, String)],
    diags: &mut Diagnostics,
) -> File {
    let mut p = Parser {
        nesting: 0,
        src,
        expanded,
        toks,
        pos: 0,
        diags,
    };
    p.file()
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Int(v) => format!("`{v}`"),
        Tok::Str { .. } => "a string".into(),
        Tok::Pv(s) => format!("`{s}`"),
        Tok::Eof => "end of file".into(),
        other => format!("`{}`", punct(other)),
    }
}

fn punct(t: &Tok) -> &'static str {
    match t {
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBrace => "{",
        Tok::RBrace => "}",
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::Semi => ";",
        Tok::Comma => ",",
        Tok::Colon => ":",
        Tok::Assign => "=",
        Tok::PlusAssign => "+=",
        Tok::MinusAssign => "-=",
        Tok::ColonAssign => ":=",
        Tok::Eq => "==",
        Tok::Ne => "!=",
        Tok::Lt => "<",
        Tok::Gt => ">",
        Tok::Le => "<=",
        Tok::Ge => ">=",
        Tok::Match => "=~",
        Tok::NotMatch => "!~",
        Tok::AndAnd => "&&",
        Tok::OrOr => "||",
        Tok::Not => "!",
        Tok::Plus => "+",
        Tok::Minus => "-",
        Tok::Star => "*",
        Tok::Slash => "/",
        Tok::Percent => "%",
        Tok::Pipe => "|",
        Tok::Amp => "&",
        Tok::Caret => "^",
        Tok::Tilde => "~",
        Tok::Shl => "<<",
        Tok::Shr => ">>",
        Tok::Dot => ".",
        _ => "?",
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }
    fn peek_at(&self, n: usize) -> &Tok {
        self.toks.get(self.pos + n).map_or(&Tok::Eof, |t| &t.tok)
    }
    fn span(&self) -> Span {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(Span::default(), |t| t.span)
    }
    fn prev_span(&self) -> Span {
        self.toks
            .get(self.pos.saturating_sub(1))
            .map_or(Span::default(), |t| t.span)
    }
    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }
    fn err<T>(&mut self, span: Span, msg: impl Into<String>) -> PResult<T> {
        self.diags.error(span, msg);
        Err(Reported)
    }
    fn expect(&mut self, t: &Tok, ctx: &str) -> PResult<Span> {
        if self.peek() == t {
            let s = self.span();
            self.bump();
            Ok(s)
        } else {
            let found = describe(self.peek());
            let sp = self.span();
            self.err(sp, format!("expected `{}` {ctx}, found {found}", punct(t)))
        }
    }
    fn at_eof(&self) -> bool {
        matches!(self.peek(), Tok::Eof)
    }
    /// Whether a line break separates the previous token from the current one.
    fn newline_before(&self) -> bool {
        let a = self.prev_span().end as usize;
        let b = self.span().start as usize;
        self.src.get(a..b).is_some_and(|s| s.contains('\n')) || self.at_eof()
    }

    /// The text of a span with `#!define` names replaced by their values.
    fn source_text(&self, span: Span) -> String {
        let (start, end) = (span.start as usize, span.end as usize);
        let mut out = String::new();
        let mut at = start;
        for (sp, value) in self
            .expanded
            .iter()
            .filter(|(sp, _)| sp.start as usize >= start && sp.end as usize <= end)
        {
            out.push_str(self.src.get(at..sp.start as usize).unwrap_or(""));
            out.push_str(value.trim_matches('"'));
            at = sp.end as usize;
        }
        out.push_str(self.src.get(at..end).unwrap_or(""));
        out
    }

    fn file(&mut self) -> File {
        let mut items = Vec::new();
        while !self.at_eof() {
            let start = self.pos;
            match self.item() {
                Ok(it) => items.push(it),
                Err(Reported) => self.recover_top(start),
            }
        }
        File { items }
    }

    /// Skips to the next token that can start a top-level item.
    fn recover_top(&mut self, start: usize) {
        if self.pos == start {
            self.bump();
        }
        let mut depth = 0i32;
        while !self.at_eof() {
            match self.peek() {
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    depth -= 1;
                    if depth <= 0 {
                        self.bump();
                        if depth == 0 {
                            return;
                        }
                        depth = 0;
                        continue;
                    }
                }
                Tok::Ident(s) if depth == 0 && self.newline_before() => {
                    let s = s.clone();
                    if RouteKind::from_keyword(&s).is_some()
                        || s == "loadmodule"
                        || s == "modparam"
                        || matches!(self.peek_at(1), Tok::Assign)
                    {
                        return;
                    }
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn item(&mut self) -> PResult<Item> {
        let span = self.span();
        let Tok::Ident(name) = self.peek().clone() else {
            let found = describe(self.peek());
            return self.err(
                span,
                format!("expected a global parameter, `loadmodule`, `modparam` or a route block, found {found}"),
            );
        };
        if let Some(kind) = RouteKind::from_keyword(&name) {
            if !matches!(self.peek_at(1), Tok::Assign) {
                return self.route_block(kind).map(Item::Route);
            }
        }
        match name.as_str() {
            "loadmodule" => {
                self.bump();
                let sp = self.span();
                match self.bump() {
                    Tok::Str { value, .. } => {
                        self.eat(&Tok::Semi);
                        Ok(Item::LoadModule {
                            path: value,
                            span: sp,
                        })
                    }
                    t => self.err(
                        sp,
                        format!(
                            "expected a module name string after `loadmodule`, found {}",
                            describe(&t)
                        ),
                    ),
                }
            }
            "modparam" => self.modparam(),
            "include_file" | "import_file" => self.err(
                span,
                format!("`{name}` is not supported; put the script in one file"),
            ),
            _ => {
                self.bump();
                if !matches!(self.peek(), Tok::Assign) {
                    if self.newline_before() {
                        // A bare flag-like global (`debug_mode`) means `= yes`.
                        return Ok(Item::Global {
                            name,
                            name_span: span,
                            raw: "yes".into(),
                            single: Some(Literal::Ident("yes".into())),
                            value_span: span,
                        });
                    }
                    let found = describe(self.peek());
                    let sp = self.span();
                    return self.err(
                        sp,
                        format!("expected `=` after global parameter `{name}`, found {found}"),
                    );
                }
                self.bump();
                if self.newline_before() {
                    let sp = self.prev_span();
                    return self.err(sp, format!("missing value for global parameter `{name}`"));
                }
                let first = self.pos;
                let vstart = self.span();
                let mut vend = vstart;
                loop {
                    vend = vend.to(self.span());
                    self.bump();
                    if self.at_eof() || self.newline_before() || matches!(self.peek(), Tok::Semi) {
                        break;
                    }
                }
                self.eat(&Tok::Semi);
                let vals: Vec<&Tok> = self
                    .toks
                    .get(first..self.pos)
                    .unwrap_or(&[])
                    .iter()
                    .map(|t| &t.tok)
                    .filter(|t| !matches!(t, Tok::Semi))
                    .collect();
                let single = match vals.as_slice() {
                    [Tok::Int(v)] => Some(Literal::Int(*v)),
                    [Tok::Str { value, .. }] => Some(Literal::Str(value.clone())),
                    [Tok::Ident(s)] => Some(Literal::Ident(s.clone())),
                    [Tok::Minus, Tok::Int(v)] => Some(Literal::Int(-*v)),
                    _ => None,
                };
                let raw = self.source_text(vstart.to(vend));
                Ok(Item::Global {
                    name,
                    name_span: span,
                    raw,
                    single,
                    value_span: vstart.to(vend),
                })
            }
        }
    }

    fn modparam(&mut self) -> PResult<Item> {
        self.bump();
        self.expect(&Tok::LParen, "after `modparam`")?;
        let (module, module_span) = self.string_arg("module name")?;
        self.expect(&Tok::Comma, "after the module name")?;
        let (param, param_span) = self.string_arg("parameter name")?;
        self.expect(&Tok::Comma, "after the parameter name")?;
        let value_span = self.span();
        let value = match self.bump() {
            Tok::Str { value, .. } => Literal::Str(value),
            Tok::Int(v) => Literal::Int(v),
            Tok::Minus => match self.bump() {
                Tok::Int(v) => Literal::Int(-v),
                t => {
                    return self.err(
                        value_span,
                        format!(
                            "expected a string or integer modparam value, found {}",
                            describe(&t)
                        ),
                    )
                }
            },
            t => {
                return self.err(
                    value_span,
                    format!(
                        "expected a string or integer modparam value, found {}",
                        describe(&t)
                    ),
                )
            }
        };
        self.expect(&Tok::RParen, "to close `modparam(`")?;
        self.eat(&Tok::Semi);
        Ok(Item::ModParam {
            module,
            module_span,
            param,
            param_span,
            value,
            value_span: value_span.to(self.prev_span()),
        })
    }

    fn string_arg(&mut self, what: &str) -> PResult<(String, Span)> {
        let sp = self.span();
        match self.bump() {
            Tok::Str { value, .. } => Ok((value, sp)),
            t => self.err(
                sp,
                format!("expected the {what} as a string, found {}", describe(&t)),
            ),
        }
    }

    fn route_block(&mut self, kind: RouteKind) -> PResult<RouteBlock> {
        let start = self.span();
        self.bump();
        let mut name = None;
        let mut extra = Vec::new();
        if self.eat(&Tok::LBracket) {
            // Names are taken as raw text between `[` and `,`/`]` (may contain `-`, `:`).
            let mut fields: Vec<(String, Span)> = Vec::new();
            loop {
                let fstart = self.span();
                let mut fend = fstart;
                let mut n = 0;
                while !matches!(
                    self.peek(),
                    Tok::Comma | Tok::RBracket | Tok::Eof | Tok::LBrace
                ) {
                    fend = self.span();
                    self.bump();
                    n += 1;
                }
                let text = if n == 0 {
                    String::new()
                } else {
                    let raw = self.source_text(fstart.to(fend));
                    raw.trim()
                        .trim_matches(|c| c == '"' || c == '\'')
                        .to_owned()
                };
                if text.is_empty() {
                    let sp = self.span();
                    return self.err(sp, format!("empty name in `{}[...]`", kind.keyword()));
                }
                fields.push((text, fstart.to(fend)));
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RBracket, "to close the route name")?;
            let mut it = fields.into_iter();
            name = it.next().map(|f| f.0);
            extra = it.collect();
        }
        let header = start.to(self.prev_span());
        self.expect(
            &Tok::LBrace,
            &format!("to open the `{}` block", kind.keyword()),
        )?;
        let body = self.block_rest();
        Ok(RouteBlock {
            kind,
            name,
            extra,
            span: header,
            body,
        })
    }

    /// Statements up to and including the closing `}`; recovers from statement errors.
    fn block_rest(&mut self) -> Vec<Stmt> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Tok::RBrace => {
                    self.bump();
                    return out;
                }
                Tok::Eof => {
                    let sp = self.span();
                    self.diags.error(sp, "unexpected end of file: missing `}`");
                    return out;
                }
                _ => {}
            }
            let start = self.pos;
            match self.stmt() {
                Ok(Some(s)) => out.push(s),
                Ok(None) => {}
                Err(Reported) => self.recover_stmt(start),
            }
        }
    }

    /// Skips past the next `;` (or to a `}` closing the current block, not consumed).
    fn recover_stmt(&mut self, start: usize) {
        if self.pos == start && !matches!(self.peek(), Tok::RBrace) {
            self.bump();
        }
        let mut depth = 0i32;
        while !self.at_eof() {
            match self.peek() {
                Tok::Semi if depth == 0 => {
                    self.bump();
                    return;
                }
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.bump();
                        return;
                    }
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn body(&mut self) -> PResult<Vec<Stmt>> {
        if self.eat(&Tok::LBrace) {
            Ok(self.block_rest())
        } else {
            Ok(self.stmt()?.into_iter().collect())
        }
    }

    fn end_stmt(&mut self) -> PResult<()> {
        self.expect(&Tok::Semi, "at the end of the statement")
            .map(|_| ())
    }

    fn paren_expr(&mut self, what: &str) -> PResult<Expr> {
        self.expect(&Tok::LParen, &format!("after `{what}`"))?;
        let e = self.expr()?;
        self.expect(&Tok::RParen, &format!("to close the `{what}` condition"))?;
        Ok(e)
    }

    fn stmt(&mut self) -> PResult<Option<Stmt>> {
        self.nested(Self::stmt_inner)
    }

    fn stmt_inner(&mut self) -> PResult<Option<Stmt>> {
        let start = self.span();
        let kind = match self.peek().clone() {
            Tok::Semi => {
                self.bump();
                return Ok(None);
            }
            Tok::LBrace => {
                self.bump();
                StmtKind::Block(self.block_rest())
            }
            Tok::Ident(k) => {
                match k.as_str() {
                    "if" => {
                        self.bump();
                        let cond = self.paren_expr("if")?;
                        let then = self.body()?;
                        let els = if matches!(self.peek(), Tok::Ident(e) if e == "else") {
                            self.bump();
                            Some(self.body()?)
                        } else {
                            None
                        };
                        StmtKind::If { cond, then, els }
                    }
                    "while" => {
                        self.bump();
                        let cond = self.paren_expr("while")?;
                        let body = self.body()?;
                        StmtKind::While { cond, body }
                    }
                    "for" => {
                        self.bump();
                        self.expect(&Tok::LParen, "after `for`")?;
                        let (var, var_span) = self.pv_token("a variable to iterate with")?;
                        let sp = self.span();
                        if !matches!(self.bump(), Tok::Ident(w) if w == "in") {
                            return self.err(sp, "expected `in` in `for (... in ...)`");
                        }
                        let (source, source_span) =
                            self.pv_token("the values to iterate over, e.g. `$(avp(x)[*])`")?;
                        self.expect(&Tok::RParen, "to close `for (`")?;
                        let body = self.body()?;
                        StmtKind::For {
                            var,
                            var_span,
                            source,
                            source_span,
                            body,
                        }
                    }
                    "switch" => {
                        self.bump();
                        let subject = self.paren_expr("switch")?;
                        self.expect(&Tok::LBrace, "to open the `switch` body")?;
                        let arms = self.switch_arms()?;
                        StmtKind::Switch { subject, arms }
                    }
                    "return" => {
                        self.bump();
                        let v = if matches!(self.peek(), Tok::Semi) {
                            None
                        } else {
                            Some(self.expr()?)
                        };
                        self.end_stmt()?;
                        StmtKind::Return(v)
                    }
                    "exit" | "drop" | "break" => {
                        self.bump();
                        if self.eat(&Tok::LParen) {
                            self.expect(&Tok::RParen, &format!("after `{k}(`"))?;
                        }
                        self.end_stmt()?;
                        match k.as_str() {
                            "exit" => StmtKind::Exit,
                            "drop" => StmtKind::Drop,
                            _ => StmtKind::Break,
                        }
                    }
                    "async" | "launch" => {
                        self.bump();
                        self.expect(&Tok::LParen, &format!("after `{k}`"))?;
                        let cspan = self.span();
                        let call = match self.primary()? {
                            Expr {
                                kind: ExprKind::Call(c),
                                ..
                            } => c,
                            Expr {
                                kind: ExprKind::Ident(name),
                                span,
                            } => CallExpr {
                                name,
                                name_span: span,
                                args: Vec::new(),
                                span,
                            },
                            e => {
                                return self.err(
                                    cspan.to(e.span),
                                    format!("the first argument of `{k}` must be a function call"),
                                )
                            }
                        };
                        let route = if self.eat(&Tok::Comma) {
                            Some(self.route_name_arg()?)
                        } else {
                            None
                        };
                        self.expect(&Tok::RParen, &format!("to close `{k}(`"))?;
                        self.end_stmt()?;
                        if k == "async" {
                            let Some((resume, resume_span)) = route else {
                                return self.err(start.to(self.prev_span()), "`async` needs a resume route: `async(func(...), resume_route)`");
                            };
                            StmtKind::Async {
                                call,
                                resume,
                                resume_span,
                            }
                        } else {
                            StmtKind::Launch {
                                call,
                                report: route,
                            }
                        }
                    }
                    "else" => {
                        return self.err(start, "`else` without a matching `if`");
                    }
                    _ => {
                        let e = self.expr()?;
                        self.end_stmt()?;
                        StmtKind::Expr(e)
                    }
                }
            }
            Tok::Pv(target)
                if matches!(
                    self.peek_at(1),
                    Tok::Assign | Tok::ColonAssign | Tok::PlusAssign | Tok::MinusAssign
                ) =>
            {
                let target_span = start;
                self.bump();
                let op = match self.bump() {
                    Tok::Assign => AssignOp::Set,
                    Tok::ColonAssign => AssignOp::SetFinal,
                    Tok::PlusAssign => AssignOp::Add,
                    _ => AssignOp::Sub,
                };
                let value = self.expr()?;
                self.end_stmt()?;
                StmtKind::Assign {
                    target,
                    target_span,
                    op,
                    value,
                }
            }
            _ => {
                let e = self.expr()?;
                self.end_stmt()?;
                StmtKind::Expr(e)
            }
        };
        Ok(Some(Stmt {
            kind,
            span: start.to(self.prev_span()),
        }))
    }

    fn pv_token(&mut self, what: &str) -> PResult<(String, Span)> {
        let sp = self.span();
        match self.bump() {
            Tok::Pv(t) => Ok((t, sp)),
            t => self.err(sp, format!("expected {what}, found {}", describe(&t))),
        }
    }

    fn route_name_arg(&mut self) -> PResult<(String, Span)> {
        let sp = self.span();
        match self.bump() {
            Tok::Ident(n) => Ok((n, sp)),
            Tok::Str { value, .. } => Ok((value, sp)),
            Tok::Int(v) => Ok((v.to_string(), sp)),
            t => self.err(sp, format!("expected a route name, found {}", describe(&t))),
        }
    }

    fn switch_arms(&mut self) -> PResult<Vec<SwitchArm>> {
        let mut arms: Vec<SwitchArm> = Vec::new();
        loop {
            let sp = self.span();
            match self.peek().clone() {
                Tok::RBrace => {
                    self.bump();
                    return Ok(arms);
                }
                Tok::Ident(k) if k == "case" || k == "default" => {
                    self.bump();
                    let value = if k == "case" {
                        Some(self.unary()?)
                    } else {
                        None
                    };
                    self.expect(&Tok::Colon, &format!("after `{k}`"))?;
                    arms.push(SwitchArm {
                        value,
                        body: Vec::new(),
                        span: sp.to(self.prev_span()),
                    });
                }
                Tok::Eof => return self.err(sp, "unexpected end of file in `switch`: missing `}`"),
                _ => {
                    let start = self.pos;
                    let stmt = match self.stmt() {
                        Ok(s) => s,
                        Err(Reported) => {
                            self.recover_stmt(start);
                            None
                        }
                    };
                    match (arms.last_mut(), stmt) {
                        (Some(arm), Some(s)) => arm.body.push(s),
                        (None, Some(s)) => {
                            self.diags
                                .error(s.span, "statement in `switch` before any `case`");
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.nested(|p| p.binary(0))
    }

    /// Runs `f` one nesting level deeper; refuses scripts nested deeper than
    /// `MAX_NESTING` so that recursion cannot overflow the stack.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.nesting >= MAX_NESTING {
            let sp = self.span();
            return self.err(sp, format!("nesting deeper than {MAX_NESTING} levels"));
        }
        self.nesting += 1;
        let r = f(self);
        self.nesting -= 1;
        r
    }

    fn binop(t: &Tok) -> Option<(BinOp, u8)> {
        Some(match t {
            Tok::OrOr => (BinOp::Or, 1),
            Tok::AndAnd => (BinOp::And, 2),
            Tok::Pipe => (BinOp::BitOr, 3),
            Tok::Caret => (BinOp::BitXor, 4),
            Tok::Amp => (BinOp::BitAnd, 5),
            Tok::Eq => (BinOp::Eq, 6),
            Tok::Ne => (BinOp::Ne, 6),
            Tok::Lt => (BinOp::Lt, 6),
            Tok::Gt => (BinOp::Gt, 6),
            Tok::Le => (BinOp::Le, 6),
            Tok::Ge => (BinOp::Ge, 6),
            Tok::Match => (BinOp::Match, 6),
            Tok::NotMatch => (BinOp::NotMatch, 6),
            Tok::Shl => (BinOp::Shl, 7),
            Tok::Shr => (BinOp::Shr, 7),
            Tok::Plus => (BinOp::Add, 8),
            Tok::Minus => (BinOp::Sub, 8),
            Tok::Star => (BinOp::Mul, 9),
            Tok::Slash => (BinOp::Div, 9),
            Tok::Percent => (BinOp::Mod, 9),
            _ => return None,
        })
    }

    fn binary(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        while let Some((op, prec)) = Self::binop(self.peek()) {
            if prec <= min {
                break;
            }
            self.bump();
            let rhs = self.binary(prec)?;
            let span = lhs.span.to(rhs.span);
            lhs = Expr {
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                span,
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        self.nested(Self::unary_inner)
    }

    fn unary_inner(&mut self) -> PResult<Expr> {
        let sp = self.span();
        let op = match self.peek() {
            Tok::Not => UnOp::Not,
            Tok::Minus => UnOp::Neg,
            Tok::Tilde => UnOp::BitNot,
            _ => return self.primary(),
        };
        self.bump();
        let e = self.unary()?;
        if let (UnOp::Neg, ExprKind::Int(v)) = (op, &e.kind) {
            return Ok(Expr {
                kind: ExprKind::Int(v.wrapping_neg()),
                span: sp.to(e.span),
            });
        }
        let span = sp.to(e.span);
        Ok(Expr {
            kind: ExprKind::Unary(op, Box::new(e)),
            span,
        })
    }

    fn primary(&mut self) -> PResult<Expr> {
        let sp = self.span();
        if matches!(self.peek(), Tok::Semi | Tok::RBrace | Tok::Eof) {
            // Not consumed, so that statement recovery resumes right here.
            let found = describe(self.peek());
            return self.err(sp, format!("expected an expression, found {found}"));
        }
        let kind = match self.bump() {
            Tok::Int(v) => ExprKind::Int(v),
            Tok::Str { value, double } => ExprKind::Str { value, double },
            Tok::Pv(t) => ExprKind::Pv(t),
            Tok::LParen => {
                let e = self.expr()?;
                self.expect(&Tok::RParen, "to close `(`")?;
                return Ok(Expr {
                    kind: e.kind,
                    span: sp.to(self.prev_span()),
                });
            }
            Tok::Ident(name) => {
                if name == "NULL" || name == "null" {
                    ExprKind::Null
                } else if name == "myself" {
                    ExprKind::Myself
                } else if matches!(self.peek(), Tok::LParen) {
                    self.bump();
                    let mut args = Vec::new();
                    if !self.eat(&Tok::RParen) {
                        loop {
                            if matches!(self.peek(), Tok::Comma | Tok::RParen) {
                                args.push(Expr {
                                    kind: ExprKind::Absent,
                                    span: self.span(),
                                });
                            } else {
                                args.push(self.expr()?);
                            }
                            if self.eat(&Tok::Comma) {
                                continue;
                            }
                            self.expect(
                                &Tok::RParen,
                                &format!("to close the arguments of `{name}`"),
                            )?;
                            break;
                        }
                    }
                    ExprKind::Call(CallExpr {
                        name,
                        name_span: sp,
                        args,
                        span: sp.to(self.prev_span()),
                    })
                } else {
                    ExprKind::Ident(name)
                }
            }
            t => {
                return self.err(
                    sp,
                    format!("expected an expression, found {}", describe(&t)),
                )
            }
        };
        Ok(Expr {
            kind,
            span: sp.to(self.prev_span()),
        })
    }
}
