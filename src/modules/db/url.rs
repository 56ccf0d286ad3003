//! The `db_url` grammar as OpenSIPS configurations write it.
//!
//! `scheme://[user[:password]@]host[:port]/database` with scheme `mysql`, `postgres` or
//! `postgresql`. User, password and database may contain `%XX` escapes. The user info ends
//! at the LAST `@`, so an unescaped `@` or `/` in a password still parses. IPv6 hosts are
//! written in brackets (`[::1]`). Default ports: 3306 (MySQL), 5432 (PostgreSQL).
//! `Debug` never prints the password.

use std::fmt;

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbScheme {
    /// `mysql://` (MySQL and MariaDB).
    Mysql,
    /// `postgres://` or `postgresql://`.
    Postgres,
}

impl DbScheme {
    /// The port used when the URL gives none.
    pub fn default_port(self) -> u16 {
        match self {
            DbScheme::Mysql => 3306,
            DbScheme::Postgres => 5432,
        }
    }
}

/// A parsed `db_url`.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl {
    /// Backend.
    pub scheme: DbScheme,
    /// User name (empty when the URL has none; PostgreSQL then needs one from elsewhere).
    pub user: String,
    /// Password, if the URL has one.
    pub password: Option<String>,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database name.
    pub database: String,
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbUrl")
            .field("scheme", &self.scheme)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .finish()
    }
}

/// Why a `db_url` was rejected. The URL itself is not repeated (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbUrlError {
    /// No `://` separator.
    #[error("db_url has no scheme (expected mysql:// or postgres://)")]
    MissingScheme,
    /// A scheme other than mysql/postgres/postgresql.
    #[error("db_url scheme {0:?} is not supported (mysql, postgres, postgresql)")]
    UnknownScheme(String),
    /// Nothing between `@` (or `://`) and `:`/`/`.
    #[error("db_url has an empty host")]
    EmptyHost,
    /// An IPv6 host without its closing bracket, or text between `]` and `:`.
    #[error("db_url has a malformed bracketed host")]
    BadBracketedHost,
    /// The port is not a number in 1..=65535.
    #[error("db_url port {0:?} is not a number in 1..=65535")]
    BadPort(String),
    /// No `/database` part.
    #[error("db_url names no database")]
    MissingDatabase,
    /// A `%` not followed by two hex digits, or an escape producing invalid UTF-8.
    #[error("db_url {field} has a bad %-escape")]
    BadEscape {
        /// `"user"`, `"password"` or `"database"`.
        field: &'static str,
    },
}

impl DbUrl {
    /// Parses an OpenSIPS `db_url`.
    pub fn parse(s: &str) -> Result<DbUrl, DbUrlError> {
        let (scheme, rest) = s.split_once("://").ok_or(DbUrlError::MissingScheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "mysql" => DbScheme::Mysql,
            "postgres" | "postgresql" => DbScheme::Postgres,
            _ => return Err(DbUrlError::UnknownScheme(scheme.to_owned())),
        };
        let (userinfo, hostpart) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (String::new(), None),
            Some(u) => match u.split_once(':') {
                Some((name, pass)) => (
                    percent_decode(name, "user")?,
                    Some(percent_decode(pass, "password")?),
                ),
                None => (percent_decode(u, "user")?, None),
            },
        };
        let (hostport, database) = hostpart
            .split_once('/')
            .ok_or(DbUrlError::MissingDatabase)?;
        let database = percent_decode(database, "database")?;
        if database.is_empty() {
            return Err(DbUrlError::MissingDatabase);
        }
        let (host, port) = split_host_port(hostport)?;
        let port = match port {
            None => scheme.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 => n,
                _ => return Err(DbUrlError::BadPort(p.to_owned())),
            },
        };
        if host.is_empty() {
            return Err(DbUrlError::EmptyHost);
        }
        Ok(DbUrl {
            scheme,
            user,
            password,
            host: host.to_owned(),
            port,
            database,
        })
    }
}

fn split_host_port(s: &str) -> Result<(&str, Option<&str>), DbUrlError> {
    if let Some(inner) = s.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or(DbUrlError::BadBracketedHost)?;
        if after.is_empty() {
            return Ok((host, None));
        }
        let port = after
            .strip_prefix(':')
            .ok_or(DbUrlError::BadBracketedHost)?;
        return Ok((host, Some(port)));
    }
    match s.split_once(':') {
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((s, None)),
    }
}

fn percent_decode(s: &str, field: &'static str) -> Result<String, DbUrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| hex_val(*c));
            let lo = bytes.get(i + 2).and_then(|c| hex_val(*c));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(DbUrlError::BadEscape { field }),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DbUrlError::BadEscape { field })
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_full() {
        let u = DbUrl::parse("mysql://opensips:opensipsrw@db.example.org:3307/opensips").unwrap();
        assert_eq!(u.scheme, DbScheme::Mysql);
        assert_eq!(u.user, "opensips");
        assert_eq!(u.password.as_deref(), Some("opensipsrw"));
        assert_eq!(u.host, "db.example.org");
        assert_eq!(u.port, 3307);
        assert_eq!(u.database, "opensips");
    }

    #[test]
    fn defaults_and_optional_parts() {
        let u = DbUrl::parse("postgres://localhost/test").unwrap();
        assert_eq!(u.scheme, DbScheme::Postgres);
        assert_eq!(u.user, "");
        assert_eq!(u.password, None);
        assert_eq!(u.port, 5432);
        let u = DbUrl::parse("postgresql://postgres@127.0.0.1/test").unwrap();
        assert_eq!(u.user, "postgres");
        assert_eq!(u.password, None);
        let u = DbUrl::parse("mysql://root@127.0.0.1/test").unwrap();
        assert_eq!(u.port, 3306);
        let u = DbUrl::parse("mysql://root:@127.0.0.1/test").unwrap();
        assert_eq!(u.password.as_deref(), Some(""));
    }

    #[test]
    fn escapes_and_awkward_passwords() {
        let u = DbUrl::parse("mysql://us%40er:p%3Aa%2Fss@h/d%20b").unwrap();
        assert_eq!(u.user, "us@er");
        assert_eq!(u.password.as_deref(), Some("p:a/ss"));
        assert_eq!(u.database, "d b");
        // Unescaped '@' and '/' in the password: the user info ends at the last '@'.
        let u = DbUrl::parse("mysql://u:p@ss/w@h:1/db").unwrap();
        assert_eq!(u.password.as_deref(), Some("p@ss/w"));
        assert_eq!(u.host, "h");
        assert_eq!(u.port, 1);
    }

    #[test]
    fn ipv6_host() {
        let u = DbUrl::parse("postgres://u@[::1]:6543/db").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 6543);
        let u = DbUrl::parse("postgres://u@[::1]/db").unwrap();
        assert_eq!(u.port, 5432);
        assert_eq!(
            DbUrl::parse("postgres://u@[::1/db"),
            Err(DbUrlError::BadBracketedHost)
        );
    }

    #[test]
    fn bad_urls() {
        assert_eq!(DbUrl::parse("localhost/db"), Err(DbUrlError::MissingScheme));
        assert_eq!(
            DbUrl::parse("oracle://h/db"),
            Err(DbUrlError::UnknownScheme("oracle".into()))
        );
        assert_eq!(DbUrl::parse("mysql://h"), Err(DbUrlError::MissingDatabase));
        assert_eq!(DbUrl::parse("mysql://h/"), Err(DbUrlError::MissingDatabase));
        assert_eq!(DbUrl::parse("mysql://u@/db"), Err(DbUrlError::EmptyHost));
        assert_eq!(
            DbUrl::parse("mysql://h:0/db"),
            Err(DbUrlError::BadPort("0".into()))
        );
        assert_eq!(
            DbUrl::parse("mysql://h:99999/db"),
            Err(DbUrlError::BadPort("99999".into()))
        );
        assert_eq!(
            DbUrl::parse("mysql://h:x/db"),
            Err(DbUrlError::BadPort("x".into()))
        );
        assert_eq!(
            DbUrl::parse("mysql://u:%zz@h/db"),
            Err(DbUrlError::BadEscape { field: "password" })
        );
        assert_eq!(
            DbUrl::parse("mysql://u@h/%ff"),
            Err(DbUrlError::BadEscape { field: "database" })
        );
    }

    fn escape(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn escaped_parts_round_trip(
            user in "[^\\x00]{0,12}",
            pass in proptest::option::of("[^\\x00]{0,12}"),
            host in "[a-z0-9.-]{1,20}",
            port in proptest::option::of(1u16..),
            db in "[^\\x00]{1,12}",
        ) {
            let mut url = String::from("mysql://");
            if !user.is_empty() || pass.is_some() {
                url.push_str(&escape(&user));
                if let Some(p) = &pass {
                    url.push(':');
                    url.push_str(&escape(p));
                }
                url.push('@');
            }
            url.push_str(&host);
            if let Some(p) = port {
                url.push_str(&format!(":{p}"));
            }
            url.push('/');
            url.push_str(&escape(&db));
            let u = DbUrl::parse(&url).unwrap();
            proptest::prop_assert_eq!(u.user, user);
            proptest::prop_assert_eq!(u.password, pass);
            proptest::prop_assert_eq!(u.host, host);
            proptest::prop_assert_eq!(u.port, port.unwrap_or(3306));
            proptest::prop_assert_eq!(u.database, db);
        }

        #[test]
        fn arbitrary_input_never_panics(s in ".{0,64}") {
            let _ = DbUrl::parse(&s);
        }
    }

    #[test]
    fn debug_hides_password() {
        let u = DbUrl::parse("mysql://u:secret@h/db").unwrap();
        assert!(!format!("{u:?}").contains("secret"));
    }
}
