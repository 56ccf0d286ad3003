//! MySQL/MariaDB driver against the real local server (127.0.0.1:3306, root, no password,
//! database `test`). Each test makes its own uniquely named table or user and drops it.

use std::net::TcpStream;

use cores::testing::{block_on, BlockingTcp};
use ringsip::modules::db::{avp_db_query_pushes, DbConn, DbError, DbLimits, DbUrl, QueryResult};

const ROOT_URL: &str = "mysql://root@127.0.0.1:3306/test";

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
            &format!(
                "CREATE TABLE {name} (id INT PRIMARY KEY, name VARCHAR(32), note VARCHAR(32) NULL)"
            ),
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
        if let Ok(mut c) = connect(ROOT_URL) {
            let _ = block_on(c.query(&format!("DROP TABLE IF EXISTS {}", self.name)));
        }
    }
}

#[test]
fn multi_row_multi_column_with_nulls() {
    let mut c = connect(ROOT_URL).unwrap();
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
    let res = Ok(r);
    let avp = avp_db_query_pushes(&res, Some(2));
    assert_eq!(avp.rc, 1);
    assert_eq!(avp.pushes.first(), Some(&(0usize, &b"3"[..])));
    let upd = q(
        &mut c,
        &format!("UPDATE {} SET note = 'x' WHERE id >= 2", t.name),
    );
    assert_eq!(upd.affected_rows, 2);
    assert!(upd.columns.is_empty());
}

#[test]
fn no_rows() {
    let mut c = connect(ROOT_URL).unwrap();
    let t = Table::new(&mut c);
    let r = q(
        &mut c,
        &format!("SELECT id, name FROM {} WHERE id = 99", t.name),
    );
    assert_eq!(r.columns, vec!["id", "name"]);
    assert!(r.rows.is_empty());
    assert_eq!(avp_db_query_pushes(&Ok(r), None).rc, -2);
}

#[test]
fn sql_error_keeps_connection_usable() {
    let mut c = connect(ROOT_URL).unwrap();
    let err = block_on(c.query("SELEC 1")).unwrap_err();
    match &err {
        DbError::Server { code, sqlstate, .. } => {
            assert_eq!(*code, Some(1064));
            assert_eq!(sqlstate, "42000");
        }
        e => panic!("expected server error, got {e:?}"),
    }
    assert!(err.connection_usable());
    assert!(c.is_usable());
    assert_eq!(avp_db_query_pushes(&Err(err), None).rc, -1);
    let r = q(&mut c, "SELECT 1");
    assert_eq!(text(&r.rows), vec![vec![s("1")]]);
    block_on(c.ping()).unwrap();
}

#[test]
fn parameterized_query_resists_injection() {
    let mut c = connect(ROOT_URL).unwrap();
    let t = Table::new(&mut c);
    let sql = format!("SELECT id, name, note FROM {} WHERE name = ?", t.name);
    let hostile: &[u8] = b"x' OR '1'='1";
    let r = block_on(c.query_params(&sql, &[Some(hostile)])).unwrap();
    assert_eq!(r.columns, vec!["id", "name", "note"]);
    assert!(r.rows.is_empty());
    let r = block_on(c.query_params(&sql, &[Some(&b"bob"[..])])).unwrap();
    assert_eq!(text(&r.rows), vec![vec![s("2"), s("bob"), None]]);
    // The hostile value round-trips as data.
    let r = block_on(c.query_params("SELECT ?, ? IS NULL", &[Some(hostile), None])).unwrap();
    assert_eq!(text(&r.rows), vec![vec![s("x' OR '1'='1"), s("1")]]);
    // Wrong parameter count: typed error, connection still usable.
    let err = block_on(c.query_params(&sql, &[])).unwrap_err();
    assert!(
        matches!(
            err,
            DbError::ParamCount {
                expected: 1,
                given: 0
            }
        ),
        "{err:?}"
    );
    assert!(c.is_usable());
    // DML through a prepared statement.
    let r = block_on(c.query_params(
        &format!("UPDATE {} SET note = ? WHERE id = ?", t.name),
        &[Some(&b"z"[..]), Some(&b"1"[..])],
    ))
    .unwrap();
    assert_eq!(r.affected_rows, 1);
    // A server error inside a prepared statement.
    let err = block_on(c.query_params("SELECT * FROM no_such_table_xyz WHERE a = ?", &[None]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Server {
                code: Some(1146),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(c.is_usable());
}

#[test]
fn binary_protocol_values_render_like_text_protocol() {
    let mut c = connect(ROOT_URL).unwrap();
    let sql = "SELECT CAST(-5 AS SIGNED), CAST(18446744073709551615 AS UNSIGNED), 2.5e0, \
               CAST(1.25 AS DECIMAL(5,2)), CAST('2024-02-29' AS DATE), \
               CAST('2024-02-29 13:05:09.123' AS DATETIME(3)), CAST('-26:03:04' AS TIME), \
               CAST('2024-02-29 13:05:09' AS DATETIME), NULL, 'txt'";
    let text_rows = text(&q(&mut c, sql).rows);
    let bin = block_on(c.query_params(sql, &[])).unwrap();
    assert_eq!(text(&bin.rows), text_rows);
    assert_eq!(
        text_rows,
        vec![vec![
            s("-5"),
            s("18446744073709551615"),
            s("2.5"),
            s("1.25"),
            s("2024-02-29"),
            s("2024-02-29 13:05:09.123"),
            s("-26:03:04"),
            s("2024-02-29 13:05:09"),
            None,
            s("txt"),
        ]]
    );
}

#[test]
fn nothing_listening_is_an_error() {
    let err = connect("mysql://root@127.0.0.1:1/test")
        .err()
        .expect("connect must fail");
    assert!(matches!(err, DbError::Io(_)), "{err:?}");
    assert!(!err.connection_usable());
}

#[test]
fn server_closing_mid_query() {
    let mut c = connect(ROOT_URL).unwrap();
    let err = block_on(c.query("KILL CONNECTION_ID()")).unwrap_err();
    assert!(
        matches!(err, DbError::Closed(_) | DbError::Io(_)),
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
    let mut c = connect(ROOT_URL).unwrap();
    let r = q(&mut c, "SELECT SLEEP(0.2)");
    assert_eq!(text(&r.rows), vec![vec![s("0")]]);
}

#[test]
fn result_bounds_drain_and_keep_connection() {
    let mut c = connect(ROOT_URL).unwrap();
    let t = Table::new(&mut c);
    c.set_limits(DbLimits {
        max_rows: 2,
        max_bytes: 1 << 20,
    });
    let err = block_on(c.query(&format!("SELECT * FROM {}", t.name))).unwrap_err();
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
    let err = block_on(c.query("SELECT REPEAT('a', 200)")).unwrap_err();
    assert!(
        matches!(err, DbError::TooLarge { what: "bytes", .. }),
        "{err:?}"
    );
    assert!(c.is_usable());
    c.set_limits(DbLimits::default());
    assert_eq!(q(&mut c, "SELECT 7").rows.len(), 1);
}

#[test]
fn multi_packet_row_over_16_mib() {
    let mut c = connect(ROOT_URL).unwrap();
    c.set_limits(DbLimits {
        max_rows: 10,
        max_bytes: 64 << 20,
    });
    // One row of ~18 MB arrives split over two packet chunks.
    match block_on(c.query("SELECT REPEAT('a', 9000000), REPEAT('b', 9000000)")) {
        Ok(r) => {
            let row = r.rows.first().expect("one row");
            let a = row.first().and_then(|v| v.as_ref()).expect("a");
            let b = row.get(1).and_then(|v| v.as_ref()).expect("b");
            assert_eq!(a.len(), 9_000_000);
            assert_eq!(b.len(), 9_000_000);
            assert!(a.iter().all(|x| *x == b'a') && b.iter().all(|x| *x == b'b'));
        }
        Err(e) => panic!("{e:?}"),
    }
    assert!(c.is_usable());
    block_on(c.ping()).unwrap();
}

#[test]
fn native_password_user() {
    let mut root = connect(ROOT_URL).unwrap();
    let user = format!("u_{}", suffix());
    q(&mut root, &format!("CREATE USER '{user}'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('s3cr%t@/x')"));
    q(
        &mut root,
        &format!("GRANT SELECT ON test.* TO '{user}'@'127.0.0.1'"),
    );
    let ok = connect(&format!("mysql://{user}:s3cr%25t@/x@127.0.0.1/test"));
    let bad = connect(&format!("mysql://{user}:wrong@127.0.0.1/test"));
    let none = connect(&format!("mysql://{user}@127.0.0.1/test"));
    q(&mut root, &format!("DROP USER '{user}'@'127.0.0.1'"));
    let mut c = ok.unwrap();
    let r = block_on(c.query("SELECT CURRENT_USER()")).unwrap();
    assert_eq!(text(&r.rows), vec![vec![Some(format!("{user}@127.0.0.1"))]]);
    assert!(matches!(bad, Err(DbError::Auth(_))), "{:?}", bad.err());
    assert!(matches!(none, Err(DbError::Auth(_))), "{:?}", none.err());
}

#[test]
fn close_says_goodbye() {
    let c = connect(ROOT_URL).unwrap();
    assert!(c.is_usable());
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
    let url = DbUrl::parse(ROOT_URL).unwrap();
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
fn packet_over_the_byte_bound_ends_the_connection_cleanly() {
    let mut c = connect(ROOT_URL).unwrap();
    c.set_limits(DbLimits {
        max_rows: 10,
        max_bytes: 64 * 1024,
    });
    let err = block_on(c.query("SELECT REPEAT('a', 100000)")).unwrap_err();
    assert!(
        matches!(err, DbError::TooLarge { drained: false, .. }),
        "{err:?}"
    );
    assert!(!c.is_usable());
}

#[test]
fn request_over_16_mib_is_framed_and_the_servers_refusal_ends_the_session() {
    let mut c = connect(ROOT_URL).unwrap();
    c.set_limits(DbLimits {
        max_rows: 10,
        max_bytes: 64 << 20,
    });
    // 17 MiB of SQL goes out as two packet chunks; this server's max_allowed_packet is
    // 16 MiB, so it answers ER_NET_PACKET_TOO_LARGE and closes the session.
    let sql = format!("SELECT LENGTH('{}')", "a".repeat(17 << 20));
    let err = block_on(c.query(&sql)).unwrap_err();
    assert!(matches!(&err, DbError::Closed(_)), "{err:?}");
    assert!(!c.is_usable());
}
