//! Syntax tree of an OpenSIPS 3.x script as written, before name resolution. Spans point
//! into the source for diagnostics. The checker (`compile.rs`) turns it into the resolved
//! form in `ir.rs`; nothing at run time looks at this tree.

use super::diag::Span;

/// The kinds of route blocks (OpenSIPS route types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// `route{}` (the main request route) and `route[name]` (sub-routes).
    Request,
    /// `onreply_route` / `onreply_route[name]`
    Reply,
    Failure,
    Branch,
    Error,
    Local,
    Startup,
    Timer,
    Event,
}

impl RouteKind {
    pub fn keyword(self) -> &'static str {
        match self {
            RouteKind::Request => "route",
            RouteKind::Reply => "onreply_route",
            RouteKind::Failure => "failure_route",
            RouteKind::Branch => "branch_route",
            RouteKind::Error => "error_route",
            RouteKind::Local => "local_route",
            RouteKind::Startup => "startup_route",
            RouteKind::Timer => "timer_route",
            RouteKind::Event => "event_route",
        }
    }

    pub fn from_keyword(k: &str) -> Option<RouteKind> {
        Some(match k {
            "route" | "request_route" => RouteKind::Request,
            "onreply_route" => RouteKind::Reply,
            "failure_route" => RouteKind::Failure,
            "branch_route" => RouteKind::Branch,
            "error_route" => RouteKind::Error,
            "local_route" => RouteKind::Local,
            "startup_route" => RouteKind::Startup,
            "timer_route" => RouteKind::Timer,
            "event_route" => RouteKind::Event,
            _ => return None,
        })
    }

    /// Bit of this kind in a `RouteMask`.
    pub const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

#[derive(Debug, Clone)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone)]
pub enum Item {
    /// `name = value`; `raw` is the value's source text, `single` its token when the value
    /// is one token (a string's unquoted value, an integer or an identifier).
    Global {
        name: String,
        name_span: Span,
        raw: String,
        single: Option<Literal>,
        value_span: Span,
    },
    LoadModule {
        path: String,
        span: Span,
    },
    ModParam {
        module: String,
        module_span: Span,
        param: String,
        param_span: Span,
        value: Literal,
        value_span: Span,
    },
    Route(RouteBlock),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Int(i64),
    Str(String),
    Ident(String),
}

#[derive(Debug, Clone)]
pub struct RouteBlock {
    pub kind: RouteKind,
    /// None for the unnamed `route{}`, `onreply_route{}`, `error_route{}`, ...
    pub name: Option<String>,
    /// Extra header arguments: the interval of `timer_route[name, 10]`, `async` of an
    /// `event_route[E, async]`.
    pub extra: Vec<(String, Span)>,
    pub span: Span,
    pub body: Vec<Stmt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignOp {
    /// `=`
    Set,
    /// `:=`
    SetFinal,
    /// `+=`
    Add,
    /// `-=`
    Sub,
}

#[derive(Debug, Clone)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct SwitchArm {
    /// None for `default:`.
    pub value: Option<Expr>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum StmtKind {
    Expr(Expr),
    Assign {
        target: String,
        target_span: Span,
        op: AssignOp,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
        els: Option<Vec<Stmt>>,
    },
    Switch {
        subject: Expr,
        arms: Vec<SwitchArm>,
    },
    While {
        cond: Expr,
        body: Vec<Stmt>,
    },
    /// `for ($var(x) in $(avp(y)[*])) { ... }`
    For {
        var: String,
        var_span: Span,
        source: String,
        source_span: Span,
        body: Vec<Stmt>,
    },
    Return(Option<Expr>),
    Exit,
    Drop,
    Break,
    Async {
        call: CallExpr,
        resume: String,
        resume_span: Span,
    },
    Launch {
        call: CallExpr,
        report: Option<(String, Span)>,
    },
    Block(Vec<Stmt>),
}

#[derive(Debug, Clone)]
pub struct CallExpr {
    pub name: String,
    pub name_span: Span,
    pub args: Vec<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Not,
    Neg,
    BitNot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    BitOr,
    BitXor,
    BitAnd,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Match,
    NotMatch,
    Shl,
    Shr,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    /// An omitted optional function argument (`f(a, , c)`).
    Absent,
    Int(i64),
    Str {
        value: String,
        double: bool,
    },
    Null,
    Myself,
    /// Pseudo-variable text, e.g. `$avp(x)[0]`.
    Pv(String),
    /// A bare identifier: a route name, flag name or constant argument; in a condition it
    /// is a call without arguments or a legacy keyword (`uri`, `method`, ...).
    Ident(String),
    Call(CallExpr),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}
