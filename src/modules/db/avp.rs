//! `avp_db_query` semantics (OpenSIPS avpops): how a [`QueryResult`] becomes AVP
//! additions and a return code. Pure functions; the AVP store itself lives with the script.
//!
//! OpenSIPS behaviour reproduced (avpops `db_query_avp`):
//! - return code: 1 when the query returned at least one row, -2 when it succeeded with an
//!   empty result (also for statements without a result set, e.g. DELETE), -1 on error;
//! - destination `"$avp(a);$avp(b)"`: column *i* goes to the *i*-th name; columns beyond
//!   the list are ignored; without a list the names are `"1"`, `"2"`, ... per column;
//! - rows are added LAST row first, so that — AVP addition prepending to the list — the
//!   first row ends up at the front: `$avp(a)` (index 0) is row 0's value, `$(avp(a)[1])`
//!   row 1's, ...;
//! - SQL NULL is stored as the string `"<null>"` ([`AVP_NULL`]), since an AVP cannot be
//!   NULL.
//!
//! Not reproduced here: OpenSIPS stores values of integer columns as integer AVPs; this
//! layer only has the text form, so the AVP writer decides typing.

use super::{DbError, QueryResult};

/// The value OpenSIPS stores for SQL NULL.
pub const AVP_NULL: &[u8] = b"<null>";

/// Why an `avp_db_query` destination list was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvpDestError {
    /// An item is not of the form `$avp(name)`.
    #[error("avp_db_query destination item {0:?} is not $avp(name)")]
    NotAvp(String),
}

/// Parses `"$avp(a);$avp(b)"` into `["a", "b"]` (whitespace around items ignored; an
/// empty string is an empty list, meaning the default names `"1"`, `"2"`, ...).
pub fn parse_avp_dest(dest: &str) -> Result<Vec<&str>, AvpDestError> {
    if dest.trim().is_empty() {
        return Ok(Vec::new());
    }
    dest.split(';')
        .map(str::trim)
        .map(|item| {
            item.strip_prefix("$avp(")
                .and_then(|r| r.strip_suffix(')'))
                .filter(|n| !n.is_empty() && !n.contains(['(', ')', ';']))
                .ok_or_else(|| AvpDestError::NotAvp(item.to_owned()))
        })
        .collect()
}

/// What `avp_db_query` does with one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvpDbQuery<'a> {
    /// The script return code: 1, -2 or -1.
    pub rc: i32,
    /// AVP additions in the order OpenSIPS performs them: `(column index, value)`. The
    /// column index is also the index into the destination list (or, without a list, the
    /// AVP name is `column index + 1`). Each addition prepends to that AVP's values.
    pub pushes: Vec<(usize, &'a [u8])>,
}

/// Maps a query outcome onto `avp_db_query`'s return code and AVP additions.
/// `dest_len` is the number of names in the destination list; `None` when the script gave
/// no list (every column is stored, under names `"1"`, `"2"`, ...).
pub fn avp_db_query_pushes(
    result: &Result<QueryResult, DbError>,
    dest_len: Option<usize>,
) -> AvpDbQuery<'_> {
    let res = match result {
        Err(_) => {
            return AvpDbQuery {
                rc: -1,
                pushes: Vec::new(),
            }
        }
        Ok(r) => r,
    };
    if res.rows.is_empty() || res.columns.is_empty() {
        return AvpDbQuery {
            rc: -2,
            pushes: Vec::new(),
        };
    }
    let width = dest_len.map_or(res.columns.len(), |n| n.min(res.columns.len()));
    let mut pushes = Vec::with_capacity(width.saturating_mul(res.rows.len()));
    for row in res.rows.iter().rev() {
        for (col, value) in row.iter().enumerate().take(width) {
            pushes.push((col, value.as_deref().unwrap_or(AVP_NULL)));
        }
    }
    AvpDbQuery { rc: 1, pushes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rows: Vec<Vec<Option<&str>>>) -> Result<QueryResult, DbError> {
        Ok(QueryResult {
            columns: vec!["x".into(), "y".into(), "z".into()],
            rows: rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|v| v.map(|s| s.as_bytes().to_vec()))
                        .collect()
                })
                .collect(),
            affected_rows: 0,
        })
    }

    #[test]
    fn dest_list() {
        assert_eq!(parse_avp_dest("$avp(a);$avp(b)").unwrap(), vec!["a", "b"]);
        assert_eq!(
            parse_avp_dest(" $avp(a) ; $avp(1) ").unwrap(),
            vec!["a", "1"]
        );
        assert!(parse_avp_dest("").unwrap().is_empty());
        assert!(parse_avp_dest("$var(a)").is_err());
        assert!(parse_avp_dest("$avp(a);;$avp(b)").is_err());
        assert!(parse_avp_dest("$avp()").is_err());
    }

    #[test]
    fn rows_pushed_last_first_and_null_as_string() {
        let r = result(vec![
            vec![Some("a0"), Some("b0"), Some("c0")],
            vec![Some("a1"), None, Some("c1")],
        ]);
        let out = avp_db_query_pushes(&r, Some(2));
        assert_eq!(out.rc, 1);
        assert_eq!(
            out.pushes,
            vec![
                (0, &b"a1"[..]),
                (1, AVP_NULL),
                (0, &b"a0"[..]),
                (1, &b"b0"[..]),
            ]
        );
        // No destination list: all columns.
        let out = avp_db_query_pushes(&r, None);
        assert_eq!(out.pushes.len(), 6);
        assert_eq!(out.pushes.first(), Some(&(0, &b"a1"[..])));
        assert_eq!(out.pushes.last(), Some(&(2, &b"c0"[..])));
        // Destination longer than the columns.
        assert_eq!(avp_db_query_pushes(&r, Some(9)).pushes.len(), 6);
    }

    #[test]
    fn return_codes() {
        assert_eq!(avp_db_query_pushes(&result(vec![]), None).rc, -2);
        let no_result_set = Ok(QueryResult {
            affected_rows: 3,
            ..QueryResult::default()
        });
        assert_eq!(avp_db_query_pushes(&no_result_set, None).rc, -2);
        let err = Err(DbError::Closed("x".into()));
        let out = avp_db_query_pushes(&err, None);
        assert_eq!(out.rc, -1);
        assert!(out.pushes.is_empty());
    }
}
