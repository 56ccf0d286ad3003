//! PostgreSQL driver against the real local server (127.0.0.1:5432, user `postgres`,
//! trust, database `test`). Each test makes its own uniquely named table or role and drops
//! it. The server trusts every 127.0.0.1 connection (pg_hba.conf), so password methods
//! (cleartext, md5, SCRAM) are exercised by unit tests in `src/modules/db/postgres.rs`.

use std::net::TcpStream;

use cores::testing::{block_on, BlockingTcp};
use ringsip::modules::db::{avp_db_query_pushes, DbConn, DbError, DbLimits, DbUrl, QueryResult};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}_{}", std::process::id(), nanos)
}

fn connect(url: &str) -> Result<DbConn<BlockingTcp>, DbError> {
    let url = DbUrl::parse(url)?;
    let tcp = TcpStream::connect((url.host.as_str(), url.port))?;
    block_on(DbConn::connect(BlockingTcp(tcp), &url))
}

fn q(c: &mut DbConn<BlockingTcp>, sql: &str) -> QueryResult {
    block_on(c.query(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn text(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect()
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// A table `t_<suffix>` with three rows, one with a NULL; dropped on drop.
struct Table {
    name: String,
}

impl Table {
    fn new(c: &mut DbConn<BlockingTcp>) -> Table {
        let name = format!("t_{}", suffix());
        q(
            c,
            &format!("CREATE TABLE {name} (id INT PRIMARY KEY, name TEXT, note TEXT NULL)"),
        );
        let ins = q(
            c,
            &format!("INSERT INTO {name} VALUES (1,'alice','a'),(2,'bob',NULL),(3,'carol','c')"),
        );
        assert_eq!(ins.affected_rows, 3);
        Table { name }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if let Ok(mut c) = connect(URL) {
            let _ = block_on(c.query(&format!("DROP TABLE IF EXISTS {}", self.name)));
        }
    }
}

#[test]
fn multi_row_multi_column_with_nulls() {
    let mut c = connect(URL).unwrap();
    let t = Table::new(&mut c);
    let r = q(
        &mut c,
        &format!("SELECT id, name, note FROM {} ORDER BY id", t.name),
    );
    assert_eq!(r.columns, vec!["id", "name", "note"]);
    assert_eq!(
        text(&r.rows),
        vec![
            vec![s("1"), s("alice"), s("a")],
            vec![s("2"), s("bob"), None],
            vec![s("3"), s("carol"), s("c")],
        ]
    );
    assert_eq!(r.affected_rows, 3);
    let res = Ok(r);
    let avp = avp_db_query_pushes(&res, None);
    assert_eq!(avp.rc, 1);
    assert_eq!(avp.pushes.len(), 9);
    let upd = q(
        &mut c,
        &format!("UPDATE {} SET note = 'x' WHERE id >= 2", t.name),
    );
    assert_eq!(upd.affected_rows, 2);
    assert!(upd.columns.is_empty());
}

#[test]
fn no_rows() {
    let mut c = connect(URL).unwrap();
    let t = Table::new(&mut c);
    let r = q(
        &mut c,
        &format!("SELECT id, name FROM {} WHERE id = 99", t.name),
    );
    assert_eq!(r.columns, vec!["id", "name"]);
    assert!(r.rows.is_empty());
    assert_eq!(avp_db_query_pushes(&Ok(r.clone()), None).rc, -2);
}

#[test]
fn sql_error_keeps_connection_usable() {
    let mut c = connect(URL).unwrap();
    let err = block_on(c.query("SELEC 1")).unwrap_err();
    match &err {
        DbError::Server {
            code,
            sqlstate,
            message,
        } => {
            assert_eq!(*code, None);
            assert_eq!(sqlstate, "42601");
            assert!(message.contains("SELEC"), "{message}");
        }
        e => panic!("expected server error, got {e:?}"),
    }
    assert!(err.connection_usable());
    assert!(c.is_usable());
    let r = q(&mut c, "SELECT 1 AS one");
    assert_eq!(r.columns, vec!["one"]);
    assert_eq!(text(&r.rows), vec![vec![s("1")]]);
    // An error in the extended protocol too.
    let err = block_on(c.query_params("SELECT * FROM no_such_table_xyz WHERE a = $1", &[None]))
        .unwrap_err();
    assert!(
        matches!(&err, DbError::Server { sqlstate, .. } if sqlstate == "42P01"),
        "{err:?}"
    );
    assert!(c.is_usable());
    block_on(c.ping()).unwrap();
}

#[test]
fn parameterized_query_resists_injection() {
    let mut c = connect(URL).unwrap();
    let t = Table::new(&mut c);
    let sql = format!("SELECT id, name, note FROM {} WHERE name = $1", t.name);
    let hostile: &[u8] = b"x' OR '1'='1";
    let r = block_on(c.query_params(&sql, &[Some(hostile)])).unwrap();
    assert_eq!(r.columns, vec!["id", "name", "note"]);
    assert!(r.rows.is_empty());
    let r = block_on(c.query_params(&sql, &[Some(&b"bob"[..])])).unwrap();
    assert_eq!(text(&r.rows), vec![vec![s("2"), s("bob"), None]]);
    let r = block_on(c.query_params("SELECT $1::text, $2::text IS NULL", &[Some(hostile), None]))
        .unwrap();
    assert_eq!(text(&r.rows), vec![vec![s("x' OR '1'='1"), s("t")]]);
    // Wrong number of parameters: the server refuses, the session stays in sync.
    let err = block_on(c.query_params(&sql, &[])).unwrap_err();
    assert!(matches!(err, DbError::Server { .. }), "{err:?}");
    assert!(c.is_usable());
    let r = block_on(c.query_params(
        &format!("UPDATE {} SET note = $1 WHERE id = $2", t.name),
        &[Some(&b"z"[..]), Some(&b"1"[..])],
    ))
    .unwrap();
    assert_eq!(r.affected_rows, 1);
    // A NUL byte cannot be sent in SQL text: refused before sending, still usable.
    let err = block_on(c.query("SELECT '\0'")).unwrap_err();
    assert!(matches!(err, DbError::Encode(_)), "{err:?}");
    assert!(c.is_usable());
}

#[test]
fn nothing_listening_is_an_error() {
    let err = connect("postgres://postgres@127.0.0.1:1/test")
        .err()
        .expect("connect must fail");
    assert!(matches!(err, DbError::Io(_)), "{err:?}");
}

#[test]
fn unknown_database_is_an_auth_error() {
    let err = connect(&format!("postgres://postgres@127.0.0.1/no_db_{}", suffix()))
        .err()
        .expect("connect must fail");
    assert!(
        matches!(&err, DbError::Auth(m) if m.contains("3D000")),
        "{err:?}"
    );
}

#[test]
fn server_closing_mid_query() {
    let mut c = connect(URL).unwrap();
    let err = block_on(c.query("SELECT pg_terminate_backend(pg_backend_pid())")).unwrap_err();
    assert!(
        matches!(&err, DbError::Closed(m) if m.contains("57P01")),
        "{err:?}"
    );
    assert!(!err.connection_usable());
    assert!(!c.is_usable());
    assert!(matches!(
        block_on(c.query("SELECT 1")),
        Err(DbError::Unusable)
    ));
}

#[test]
fn sleep_works() {
    let mut c = connect(URL).unwrap();
    let r = q(&mut c, "SELECT pg_sleep(0.2)");
    assert_eq!(text(&r.rows), vec![vec![s("")]]);
}

#[test]
fn result_bounds_drain_and_keep_connection() {
    let mut c = connect(URL).unwrap();
    c.set_limits(DbLimits {
        max_rows: 2,
        max_bytes: 1 << 20,
    });
    let err = block_on(c.query("SELECT generate_series(1, 10)")).unwrap_err();
    assert!(
        matches!(
            err,
            DbError::TooLarge {
                what: "rows",
                limit: 2,
                drained: true
            }
        ),
        "{err:?}"
    );
    assert!(c.is_usable());
    c.set_limits(DbLimits {
        max_rows: 100,
        max_bytes: 100,
    });
    let err = block_on(c.query("SELECT repeat('a', 200)")).unwrap_err();
    assert!(
        matches!(err, DbError::TooLarge { what: "bytes", .. }),
        "{err:?}"
    );
    assert!(c.is_usable());
    c.set_limits(DbLimits::default());
    assert_eq!(q(&mut c, "SELECT 7").rows.len(), 1);
}

#[test]
fn role_with_password_connects_under_trust() {
    // pg_hba.conf trusts 127.0.0.1, so the server never asks for the password: this checks
    // a password in db_url does no harm, not the password methods themselves.
    let mut admin = connect(URL).unwrap();
    let role = format!("r_{}", suffix());
    q(
        &mut admin,
        &format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'"),
    );
    let c = connect(&format!("postgres://{role}:pw@127.0.0.1/test"));
    let r = c.and_then(|mut c| block_on(c.query("SELECT current_user")));
    q(&mut admin, &format!("DROP ROLE {role}"));
    assert_eq!(text(&r.unwrap().rows), vec![vec![Some(role)]]);
}

#[test]
fn multiple_statements_keep_the_first_result_set() {
    let mut c = connect(URL).unwrap();
    let r = q(&mut c, "SELECT 1 AS a; SELECT 2 AS b, 3 AS c");
    assert_eq!(r.columns, vec!["a"]);
    assert_eq!(text(&r.rows), vec![vec![s("1")]]);
    block_on(c.close()).unwrap();
}

/// A stream whose reads can be made to hang, to drop a query future mid-way.
struct Stallable {
    inner: BlockingTcp,
    stall: std::rc::Rc<std::cell::Cell<bool>>,
}

impl cores::AsyncStream for Stallable {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stall.get() {
            std::future::pending::<()>().await;
        }
        self.inner.read(buf).await
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(buf).await
    }
}

#[test]
fn dropped_query_future_leaves_connection_unusable() {
    use std::future::Future;
    let url = DbUrl::parse(URL).unwrap();
    let stall = std::rc::Rc::new(std::cell::Cell::new(false));
    let tcp = TcpStream::connect((url.host.as_str(), url.port)).unwrap();
    let stream = Stallable {
        inner: BlockingTcp(tcp),
        stall: stall.clone(),
    };
    let mut c = block_on(DbConn::connect(stream, &url)).unwrap();
    assert!(block_on(c.query("SELECT 1")).is_ok());
    stall.set(true);
    {
        let mut fut = std::pin::pin!(c.query("SELECT 2"));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    assert!(!c.is_usable());
    stall.set(false);
    assert!(matches!(
        block_on(c.query("SELECT 3")),
        Err(DbError::Unusable)
    ));
}

#[test]
fn message_over_the_byte_bound_ends_the_connection_cleanly() {
    let mut c = connect(URL).unwrap();
    c.set_limits(DbLimits {
        max_rows: 10,
        max_bytes: 64 * 1024,
    });
    let err = block_on(c.query("SELECT repeat('a', 100000)")).unwrap_err();
    assert!(
        matches!(err, DbError::TooLarge { drained: false, .. }),
        "{err:?}"
    );
    assert!(!c.is_usable());
}

#[test]
fn notices_and_parameter_status_are_skipped() {
    let mut c = connect(URL).unwrap();
    let r = q(
        &mut c,
        "DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$",
    );
    assert!(r.rows.is_empty());
    // SET sends a ParameterStatus for a reported setting.
    q(&mut c, "SET application_name = 'ringsip-test'");
    let r = q(&mut c, "SHOW application_name");
    assert_eq!(text(&r.rows), vec![vec![s("ringsip-test")]]);
    let r = block_on(c.query_params("SELECT $1::int + 1", &[Some(&b"41"[..])])).unwrap();
    assert_eq!(text(&r.rows), vec![vec![s("42")]]);
}
