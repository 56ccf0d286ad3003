//! SQL drivers (MySQL/MariaDB, PostgreSQL) written against `cores::AsyncStream`.
//!
//! Owns: the `db_url` grammar ([`url`]), the two wire-protocol drivers ([`mysql`],
//! [`postgres`]), the backend-neutral [`DbConn`] a per-shard pool holds, and the mapping
//! of a result onto `avp_db_query` AVP pushes ([`avp`]).
//!
//! Invariants:
//! - Drivers never open sockets, sleep or read a clock: the caller hands in a connected
//!   stream and wraps calls in its own time-outs. A future dropped mid-operation leaves the
//!   connection marked unusable ([`DbConn::is_usable`]); the pool must then discard it.
//! - Results are bounded by [`DbLimits`]; past a bound the driver keeps reading to the
//!   end of the response (so the connection stays in sync) but stores nothing more and
//!   returns [`DbError::TooLarge`].
//! - Parameterized queries send values out of band (MySQL `COM_STMT_EXECUTE`, PostgreSQL
//!   Bind): no value is ever spliced into SQL text.
//!
//! Protocols: MySQL client/server protocol (handshake v10, text and binary result sets),
//! PostgreSQL frontend/backend protocol v3 (simple and extended query).

pub mod avp;
pub mod mysql;
pub mod pool;
pub mod postgres;
pub mod url;
mod wire;

use std::io;

use cores::AsyncStream;

pub use self::avp::{avp_db_query_pushes, parse_avp_dest, AvpDbQuery, AvpDestError, AVP_NULL};
pub use self::mysql::MysqlConn;
pub use self::postgres::PgConn;
pub use self::url::{DbScheme, DbUrl, DbUrlError};

/// Bounds on what one query may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbLimits {
    /// Maximum number of rows kept from one result set.
    pub max_rows: usize,
    /// Maximum total bytes of column values kept from one result set; also the largest
    /// single protocol message/packet accepted (larger ones end the connection).
    pub max_bytes: usize,
}

impl Default for DbLimits {
    fn default() -> Self {
        DbLimits {
            max_rows: 10_000,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The result of one statement.
///
/// Values are the server's text representation (PostgreSQL text format, MySQL text
/// protocol; for MySQL prepared statements the binary values are rendered to the same text
/// form, see [`mysql`]). `None` is SQL NULL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Column names, in result order (empty for statements without a result set).
    pub columns: Vec<String>,
    /// Rows; each has exactly `columns.len()` values.
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    /// Rows changed by INSERT/UPDATE/DELETE (MySQL OK packet, PostgreSQL command tag);
    /// for a SELECT on PostgreSQL the number of rows returned, 0 on MySQL.
    pub affected_rows: u64,
}

/// What went wrong talking to a database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The `db_url` could not be parsed.
    #[error(transparent)]
    Url(#[from] DbUrlError),
    /// Reading or writing the stream failed.
    #[error("database I/O error: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection (end of stream, or a fatal error announcing it).
    #[error("database server closed the connection: {0}")]
    Closed(String),
    /// The server sent something this driver cannot interpret.
    #[error("database protocol violation: {0}")]
    Protocol(String),
    /// Authentication failed or needs something this driver does not do.
    #[error("database authentication failed: {0}")]
    Auth(String),
    /// The server rejected the statement; the connection is still in sync.
    #[error("database server error {}{sqlstate}: {message}", code.map(|c| format!("{c} ")).unwrap_or_default())]
    Server {
        /// MySQL error number (`None` for PostgreSQL).
        code: Option<u16>,
        /// SQLSTATE (five characters; MySQL sends one too).
        sqlstate: String,
        /// The server's message.
        message: String,
    },
    /// The result exceeded a [`DbLimits`] bound.
    #[error("database result too large: more than {limit} {what}")]
    TooLarge {
        /// `"rows"` or `"bytes"`.
        what: &'static str,
        /// The bound that was passed.
        limit: usize,
        /// Whether the response was drained so the connection stays usable.
        drained: bool,
    },
    /// The number of parameters given does not match the statement's placeholders.
    #[error("statement has {expected} parameters, {given} given")]
    ParamCount {
        /// Placeholders in the statement.
        expected: usize,
        /// Values given.
        given: usize,
    },
    /// A feature the server asked for that this driver does not implement.
    #[error("unsupported by this driver: {0}")]
    Unsupported(String),
    /// The request could not be encoded (e.g. a NUL byte in PostgreSQL SQL text); nothing
    /// was sent.
    #[error("cannot encode request: {0}")]
    Encode(String),
    /// The connection was already unusable (an earlier error or a dropped future).
    #[error("connection is no longer usable")]
    Unusable,
}

impl DbError {
    /// Whether the connection that produced this error may be used for another query.
    pub fn connection_usable(&self) -> bool {
        match self {
            DbError::Server { .. } | DbError::ParamCount { .. } | DbError::Encode(_) => true,
            DbError::TooLarge { drained, .. } => *drained,
            _ => false,
        }
    }
}

/// One connection to either backend, as a per-shard pool holds it.
pub enum DbConn<S> {
    /// MySQL or MariaDB.
    Mysql(MysqlConn<S>),
    /// PostgreSQL.
    Postgres(PgConn<S>),
}

impl<S: AsyncStream> DbConn<S> {
    /// Runs the start-up handshake and authentication for `url` over a connected stream.
    pub async fn connect(stream: S, url: &DbUrl) -> Result<Self, DbError> {
        Self::connect_with(stream, url, DbLimits::default()).await
    }

    /// [`DbConn::connect`] with explicit result bounds.
    pub async fn connect_with(stream: S, url: &DbUrl, limits: DbLimits) -> Result<Self, DbError> {
        match url.scheme {
            DbScheme::Mysql => Ok(DbConn::Mysql(
                MysqlConn::connect(stream, url, limits).await?,
            )),
            DbScheme::Postgres => Ok(DbConn::Postgres(
                PgConn::connect(stream, url, limits).await?,
            )),
        }
    }

    /// Runs one SQL statement (text protocol / simple query).
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, DbError> {
        match self {
            DbConn::Mysql(c) => c.query(sql).await,
            DbConn::Postgres(c) => c.query(sql).await,
        }
    }

    /// Runs one statement with out-of-band parameters: `?` placeholders for MySQL,
    /// `$1..$n` for PostgreSQL. `None` is SQL NULL; values are sent as text.
    pub async fn query_params(
        &mut self,
        sql: &str,
        params: &[Option<&[u8]>],
    ) -> Result<QueryResult, DbError> {
        match self {
            DbConn::Mysql(c) => c.query_params(sql, params).await,
            DbConn::Postgres(c) => c.query_params(sql, params).await,
        }
    }

    /// Checks the connection is alive (MySQL `COM_PING`, PostgreSQL empty query).
    pub async fn ping(&mut self) -> Result<(), DbError> {
        match self {
            DbConn::Mysql(c) => c.ping().await,
            DbConn::Postgres(c) => c.ping().await,
        }
    }

    /// Says goodbye (`COM_QUIT` / Terminate) and gives the stream back for closing.
    pub async fn close(self) -> Result<S, DbError> {
        match self {
            DbConn::Mysql(c) => c.close().await,
            DbConn::Postgres(c) => c.close().await,
        }
    }

    /// Whether the connection is in sync and may run another query. False after an error
    /// that is not [`DbError::connection_usable`], or after a future was dropped mid-way.
    pub fn is_usable(&self) -> bool {
        match self {
            DbConn::Mysql(c) => c.is_usable(),
            DbConn::Postgres(c) => c.is_usable(),
        }
    }

    /// Replaces the result bounds for later queries.
    pub fn set_limits(&mut self, limits: DbLimits) {
        match self {
            DbConn::Mysql(c) => c.set_limits(limits),
            DbConn::Postgres(c) => c.set_limits(limits),
        }
    }
}

/// Accumulates a result set under [`DbLimits`]: once a bound is passed it keeps counting
/// nothing and remembers the overflow, so the driver can drain the rest of the response.
pub(crate) struct ResultBuilder {
    pub result: QueryResult,
    limits: DbLimits,
    bytes: usize,
    overflow: Option<(&'static str, usize)>,
}

impl ResultBuilder {
    pub(crate) fn new(limits: DbLimits) -> Self {
        ResultBuilder {
            result: QueryResult::default(),
            limits,
            bytes: 0,
            overflow: None,
        }
    }

    /// Whether more rows may be stored.
    pub(crate) fn accepting(&self) -> bool {
        self.overflow.is_none()
    }

    /// Stores one row (checks the bounds first).
    pub(crate) fn push_row(&mut self, row: Vec<Option<Vec<u8>>>) {
        if self.overflow.is_some() {
            return;
        }
        if self.result.rows.len() >= self.limits.max_rows {
            self.overflow = Some(("rows", self.limits.max_rows));
            return;
        }
        let size: usize = row
            .iter()
            .map(|v| v.as_ref().map_or(0, Vec::len))
            .fold(0usize, usize::saturating_add);
        let total = self.bytes.saturating_add(size);
        if total > self.limits.max_bytes {
            self.overflow = Some(("bytes", self.limits.max_bytes));
            return;
        }
        self.bytes = total;
        self.result.rows.push(row);
    }

    /// The result, or `TooLarge` (drained) if a bound was passed.
    pub(crate) fn finish(self) -> Result<QueryResult, DbError> {
        match self.overflow {
            Some((what, limit)) => Err(DbError::TooLarge {
                what,
                limit,
                drained: true,
            }),
            None => Ok(self.result),
        }
    }
}
