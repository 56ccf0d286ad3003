//! The OpenSIPS 3.x configuration language: lexer (`lexer`), parser to a syntax tree
//! (`parser`, `ast`), the checker that resolves and validates everything at start-up
//! (`compile`) into the compiled form (`ir`), pseudo-variables and transformations (`pv`),
//! the function/module registry with the built-in declarations (`decls`), and the
//! interpreter (`interp`) that runs a route against a message through `ScriptHost`.
//!
//! Entry points: [`compile`] / [`compile_file`] at start, [`Interpreter::run`] per message,
//! [`Interpreter::resume`] when an `async()` operation completes.

pub mod ast;
pub mod bind;
pub mod compile;
pub mod decls;
pub mod diag;
pub mod interp;
pub mod ir;
pub mod lexer;
pub mod parser;
pub mod pv;

use std::path::Path;

pub use ast::RouteKind;
pub use bind::{FnTable, ImplFn};
pub use compile::{compile, Compiled};
pub use decls::{
    CoreFn, FnDecl, FnId, FnImpl, ModParamDecl, ModParamKind, ModuleDecl, ParamDecl, ParamKind,
    Registry,
};
pub use diag::{Diagnostic, Diagnostics, Severity, Span};
pub use interp::set_pv;
pub use interp::{
    Arg, AsyncStart, Interpreter, MsgState, Outcome, PvGot, RunError, ScriptHost, ValRef,
};
pub use ir::{Globals, ModParam, ModParamValue, RouteId, Script, SocketSpec, Value};
pub use pv::{MsgPv, Pv, PvIndex, PvKind};

/// The script ringsip runs when none is given: a stateful record-routing proxy.
pub const DEFAULT_SCRIPT: &str = include_str!("default.cfg");

/// xlog levels (OpenSIPS `L_*` values).
pub const XLOG_L_ALERT: i32 = -3;
pub const XLOG_L_CRIT: i32 = -2;
pub const XLOG_L_ERR: i32 = -1;
pub const XLOG_L_WARN: i32 = 1;
pub const XLOG_L_NOTICE: i32 = 2;
pub const XLOG_L_INFO: i32 = 3;
pub const XLOG_L_DBG: i32 = 4;

/// Parses an xlog level name (`L_ERR`, ...).
pub fn xlog_level(name: &str) -> Option<i32> {
    Some(match name.trim() {
        "L_ALERT" => XLOG_L_ALERT,
        "L_CRIT" => XLOG_L_CRIT,
        "L_ERR" => XLOG_L_ERR,
        "L_WARN" => XLOG_L_WARN,
        "L_NOTICE" => XLOG_L_NOTICE,
        "L_INFO" => XLOG_L_INFO,
        "L_DBG" => XLOG_L_DBG,
        _ => return None,
    })
}

/// Why a script file could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("cannot read script {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The script has errors; `Display` renders them all with `file:line:col` and carets.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Reads and compiles a script file with the built-in registry extended by `registry`.
pub fn compile_file(path: &Path, registry: &Registry) -> Result<Compiled, CompileError> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|source| CompileError::Io {
        path: name.clone(),
        source,
    })?;
    compile(&name, &src, registry).map_err(CompileError::Invalid)
}
