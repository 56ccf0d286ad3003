//! Diagnostics of the script front end: source positions, errors and warnings, and their
//! rendering as `file:line:col: error: message` followed by the source line and a caret.
//!
//! Invariant: every span points into the source text it was produced from (byte offsets,
//! `start <= end <= len`). Rendering never panics on a bad span: it clamps.

use std::fmt;

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, with its 1-based line and column already computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// All findings of one compilation, with the source needed to render them.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub file: String,
    source: String,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: &str, source: &str) -> Diagnostics {
        Diagnostics {
            file: file.to_owned(),
            source: source.to_owned(),
            items: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.push(Severity::Error, span, message.into());
    }

    pub fn warning(&mut self, span: Span, message: impl Into<String>) {
        self.push(Severity::Warning, span, message.into());
    }

    fn push(&mut self, severity: Severity, span: Span, message: String) {
        let (line, col) = line_col(&self.source, span.start as usize);
        self.items.push(Diagnostic {
            severity,
            span,
            line,
            col,
            message,
        });
    }

    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// Sorts findings by position (the passes produce them out of order).
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| (d.span.start, d.span.end));
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            let sev = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            writeln!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, d.line, d.col, sev, d.message
            )?;
            let line_text = self
                .source
                .lines()
                .nth(d.line.saturating_sub(1) as usize)
                .unwrap_or("");
            let start = d.span.start as usize;
            let end = (d.span.end as usize).max(start + 1);
            let line_rest =
                line_text.chars().count() + 1 - (d.col as usize).min(line_text.chars().count() + 1);
            let width = self
                .source
                .get(start..end.min(self.source.len()))
                .map_or(1, |s| s.chars().take_while(|&c| c != '\n').count())
                .clamp(1, line_rest.max(1));
            let pad: String = line_text
                .chars()
                .take(d.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "  {line_text}")?;
            writeln!(f, "  {pad}{}", "^".repeat(width))?;
        }
        Ok(())
    }
}
