//! PostgreSQL client driver over `cores::AsyncStream`, on `postgres-protocol`'s sans-io
//! message codecs and its MD5 and SCRAM-SHA-256 (RFC 5802 / RFC 7677) implementations.
//!
//! Owns: one authenticated session and its in-sync flag. Invariants: every query reads
//! until ReadyForQuery before returning (an ErrorResponse is remembered and returned then,
//! so the session stays in sync); a FATAL/PANIC error means the backend is going away and
//! the session is unusable; `usable` is false while a query is in flight, so a dropped
//! future leaves the connection marked unusable.
//!
//! Protocol v3 (PostgreSQL docs, "Frontend/Backend Protocol"): StartupMessage; trust,
//! cleartext, MD5 and SASL SCRAM-SHA-256 (no channel binding: plain TCP) authentication;
//! the simple query protocol; the extended protocol with an unnamed statement and portal
//! (Parse / Bind with text-format parameters / Describe portal / Execute / Sync).
//! ParameterStatus, NoticeResponse and NotificationResponse are skipped.

use bytes::{BufMut, BytesMut};
use cores::AsyncStream;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;

use super::url::DbUrl;
use super::wire::Wire;
use super::{DbError, DbLimits, QueryResult, ResultBuilder};

fn protocol(what: impl std::fmt::Display) -> DbError {
    DbError::Protocol(format!("postgres: {what}"))
}

/// What the start-up exchange needs next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StartupStep {
    /// Send `out` (if not empty) and feed the next backend message.
    Continue,
    /// ReadyForQuery arrived: the session is open.
    Ready,
}

/// The start-up and authentication exchange, sans-io: feed backend messages, send what
/// it writes to `out`.
pub(crate) struct Startup<'a> {
    user: &'a str,
    password: Option<&'a [u8]>,
    scram: Option<ScramSha256>,
    /// Backend process id and cancel key (BackendKeyData).
    pub key_data: Option<(i32, i32)>,
}

impl<'a> Startup<'a> {
    /// Writes the StartupMessage for `user`/`database` into `out`.
    pub(crate) fn new(
        user: &'a str,
        password: Option<&'a [u8]>,
        database: &str,
        out: &mut BytesMut,
    ) -> Result<Self, DbError> {
        if user.is_empty() {
            return Err(DbError::Auth("postgres needs a user name in db_url".into()));
        }
        frontend::startup_message(
            [
                ("user", user),
                ("database", database),
                ("client_encoding", "UTF8"),
                ("application_name", "ringsip"),
            ],
            out,
        )
        .map_err(|e| DbError::Auth(format!("bad user or database name: {e}")))?;
        Ok(Startup {
            user,
            password,
            scram: None,
            key_data: None,
        })
    }

    fn password(&self, method: &str) -> Result<&'a [u8], DbError> {
        self.password.ok_or_else(|| {
            DbError::Auth(format!(
                "server asks for a {method} password, db_url has none"
            ))
        })
    }

    /// Handles one backend message of the start-up phase.
    pub(crate) fn on_message(
        &mut self,
        msg: Message,
        out: &mut BytesMut,
    ) -> Result<StartupStep, DbError> {
        let enc = |e: std::io::Error| DbError::Auth(format!("cannot encode password: {e}"));
        match msg {
            Message::AuthenticationOk => {}
            Message::AuthenticationCleartextPassword => {
                let pass = self.password("cleartext")?;
                frontend::password_message(pass, out).map_err(enc)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let pass = self.password("md5")?;
                let hash = md5_hash(self.user.as_bytes(), pass, body.salt());
                frontend::password_message(hash.as_bytes(), out).map_err(enc)?;
            }
            Message::AuthenticationSasl(body) => {
                let mut offered = Vec::new();
                let mut mechanisms = body.mechanisms();
                while let Some(m) = mechanisms
                    .next()
                    .map_err(|e| protocol(format!("bad SASL mechanism list: {e}")))?
                {
                    offered.push(m.to_owned());
                }
                if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(DbError::Auth(format!(
                        "server offers SASL mechanisms {offered:?}, none supported"
                    )));
                }
                let pass = self.password("SCRAM-SHA-256")?;
                let scram = ScramSha256::new(pass, ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), out)
                    .map_err(enc)?;
                self.scram = Some(scram);
            }
            Message::AuthenticationSaslContinue(body) => {
                let scram = self
                    .scram
                    .as_mut()
                    .ok_or_else(|| protocol("SASL continue without SASL start"))?;
                check_scram_iterations(body.data())?;
                scram
                    .update(body.data())
                    .map_err(|e| DbError::Auth(format!("SCRAM server-first message: {e}")))?;
                frontend::sasl_response(scram.message(), out).map_err(enc)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let mut scram = self
                    .scram
                    .take()
                    .ok_or_else(|| protocol("SASL final without SASL start"))?;
                scram
                    .finish(body.data())
                    .map_err(|e| DbError::Auth(format!("SCRAM server signature: {e}")))?;
            }
            Message::AuthenticationGss
            | Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationSspi
            | Message::AuthenticationGssContinue(_) => {
                return Err(DbError::Unsupported(
                    "postgres GSS/SSPI/Kerberos/SCM authentication".into(),
                ))
            }
            Message::ErrorResponse(body) => {
                let (sqlstate, message, _) = error_fields(body.fields())?;
                return Err(DbError::Auth(format!("{sqlstate}: {message}")));
            }
            Message::BackendKeyData(body) => {
                self.key_data = Some((body.process_id(), body.secret_key()));
            }
            Message::ParameterStatus(_) | Message::NoticeResponse(_) => {}
            Message::ReadyForQuery(_) => return Ok(StartupStep::Ready),
            _ => return Err(protocol("unexpected message during start-up")),
        }
        Ok(StartupStep::Continue)
    }
}

/// The most PBKDF2 rounds a server may ask of us (PostgreSQL's default is 4096); more
/// would let a hostile server stall the shard.
const MAX_SCRAM_ITERATIONS: u32 = 100_000;

fn check_scram_iterations(server_first: &[u8]) -> Result<(), DbError> {
    let text = std::str::from_utf8(server_first)
        .map_err(|_| DbError::Auth("SCRAM server-first message is not UTF-8".into()))?;
    let iterations = text
        .split(',')
        .find_map(|attr| attr.strip_prefix("i="))
        .and_then(|i| i.parse::<u32>().ok())
        .ok_or_else(|| {
            DbError::Auth("SCRAM server-first message without iteration count".into())
        })?;
    if iterations > MAX_SCRAM_ITERATIONS {
        return Err(DbError::Auth(format!(
            "SCRAM iteration count {iterations} over {MAX_SCRAM_ITERATIONS}"
        )));
    }
    Ok(())
}

/// SQLSTATE, message and whether the severity is FATAL or PANIC.
fn error_fields(mut fields: ErrorFields<'_>) -> Result<(String, String, bool), DbError> {
    let (mut code, mut message, mut fatal) = (String::new(), String::new(), false);
    while let Some(f) = fields
        .next()
        .map_err(|e| protocol(format!("bad ErrorResponse: {e}")))?
    {
        let value = String::from_utf8_lossy(f.value_bytes());
        match f.type_() {
            b'C' => code = value.into_owned(),
            b'M' => message = value.into_owned(),
            b'V' | b'S' => fatal |= value == "FATAL" || value == "PANIC",
            _ => {}
        }
    }
    Ok((code, message, fatal))
}

/// Rows affected from a CommandComplete tag (`INSERT 0 5`, `UPDATE 2`, `SELECT 3`).
fn tag_rows(tag: &str) -> u64 {
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// An authenticated PostgreSQL session.
pub struct PgConn<S> {
    wire: Wire<S>,
    limits: DbLimits,
    usable: bool,
    key_data: Option<(i32, i32)>,
}

impl<S: AsyncStream> PgConn<S> {
    /// Start-up and authentication as `url.user` into `url.database`.
    pub async fn connect(stream: S, url: &DbUrl, limits: DbLimits) -> Result<Self, DbError> {
        let mut c = PgConn {
            wire: Wire::new(stream),
            limits,
            usable: false,
            key_data: None,
        };
        let password = url.password.as_deref().map(str::as_bytes);
        let mut startup = Startup::new(&url.user, password, &url.database, &mut c.wire.wbuf)?;
        c.wire.flush().await?;
        loop {
            let msg = c.read_message().await?;
            let step = startup.on_message(msg, &mut c.wire.wbuf)?;
            if !c.wire.wbuf.is_empty() {
                c.wire.flush().await?;
            }
            if step == StartupStep::Ready {
                break;
            }
        }
        c.key_data = startup.key_data;
        c.usable = true;
        Ok(c)
    }

    /// Backend process id (what `pg_backend_pid()` returns), if the server sent it.
    pub fn backend_pid(&self) -> Option<i32> {
        self.key_data.map(|(pid, _)| pid)
    }

    /// Whether the session is in sync for another query.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Replaces the result bounds for later queries.
    pub fn set_limits(&mut self, limits: DbLimits) {
        self.limits = limits;
    }

    /// Simple query: runs `sql`, returns the first result set (later ones are drained).
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, DbError> {
        self.begin()?;
        if let Err(e) = frontend::query(sql, &mut self.wire.wbuf) {
            self.wire.wbuf.clear();
            self.usable = true;
            return Err(DbError::Encode(format!("query: {e}")));
        }
        let r = self.send_and_read().await;
        self.end(r)
    }

    /// Extended query: `sql` with `$1..$n` placeholders, `params` sent as text-format
    /// values (`None` = NULL) in a Bind message, never spliced into the SQL.
    pub async fn query_params(
        &mut self,
        sql: &str,
        params: &[Option<&[u8]>],
    ) -> Result<QueryResult, DbError> {
        self.begin()?;
        if let Err(e) = encode_extended(sql, params, &mut self.wire.wbuf) {
            self.wire.wbuf.clear();
            self.usable = true;
            return Err(e);
        }
        let r = self.send_and_read().await;
        self.end(r)
    }

    /// An empty simple query: EmptyQueryResponse + ReadyForQuery.
    pub async fn ping(&mut self) -> Result<(), DbError> {
        self.query("").await.map(|_| ())
    }

    /// Sends Terminate; returns the stream for the caller to close.
    pub async fn close(mut self) -> Result<S, DbError> {
        frontend::terminate(&mut self.wire.wbuf);
        self.wire.flush().await?;
        Ok(self.wire.stream)
    }

    fn begin(&mut self) -> Result<(), DbError> {
        if !self.usable {
            return Err(DbError::Unusable);
        }
        self.usable = false;
        Ok(())
    }

    fn end<T>(&mut self, r: Result<T, DbError>) -> Result<T, DbError> {
        self.wire.trim();
        self.usable = match &r {
            Ok(_) => true,
            Err(e) => e.connection_usable(),
        };
        r
    }

    async fn send_and_read(&mut self) -> Result<QueryResult, DbError> {
        self.wire.flush().await?;
        let mut out = ResultBuilder::new(self.limits);
        let mut error: Option<DbError> = None;
        let mut result_sets = 0usize;
        let mut completed = 0usize;
        loop {
            match self.read_message().await? {
                Message::RowDescription(body) => {
                    result_sets += 1;
                    if result_sets == 1 {
                        let mut fields = body.fields();
                        while let Some(f) = fields
                            .next()
                            .map_err(|e| protocol(format!("bad RowDescription: {e}")))?
                        {
                            out.result.columns.push(f.name().to_owned());
                        }
                    }
                }
                Message::DataRow(body) => {
                    if result_sets <= 1 && out.accepting() {
                        let buf = body.buffer();
                        let mut row = Vec::with_capacity(out.result.columns.len());
                        let mut ranges = body.ranges();
                        while let Some(r) = ranges
                            .next()
                            .map_err(|e| protocol(format!("bad DataRow: {e}")))?
                        {
                            row.push(match r {
                                None => None,
                                Some(r) => Some(
                                    buf.get(r)
                                        .ok_or_else(|| protocol("DataRow value out of range"))?
                                        .to_vec(),
                                ),
                            });
                        }
                        if row.len() != out.result.columns.len() {
                            return Err(protocol("DataRow width differs from RowDescription"));
                        }
                        out.push_row(row);
                    }
                }
                Message::CommandComplete(body) => {
                    completed += 1;
                    if completed == 1 {
                        let tag = body
                            .tag()
                            .map_err(|e| protocol(format!("bad CommandComplete: {e}")))?;
                        out.result.affected_rows = tag_rows(tag);
                    }
                }
                Message::ErrorResponse(body) => {
                    let (sqlstate, message, fatal) = error_fields(body.fields())?;
                    if fatal {
                        return Err(DbError::Closed(format!("{sqlstate}: {message}")));
                    }
                    error.get_or_insert(DbError::Server {
                        code: None,
                        sqlstate,
                        message,
                    });
                }
                Message::ReadyForQuery(_) => break,
                Message::ParseComplete
                | Message::BindComplete
                | Message::NoData
                | Message::CloseComplete
                | Message::EmptyQueryResponse
                | Message::PortalSuspended
                | Message::ParameterDescription(_)
                | Message::ParameterStatus(_)
                | Message::NoticeResponse(_)
                | Message::NotificationResponse(_) => {}
                Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                    return Err(DbError::Unsupported("postgres COPY".into()))
                }
                _ => return Err(protocol("unexpected message in query response")),
            }
        }
        match error {
            Some(e) => Err(e),
            None => out.finish(),
        }
    }

    /// Reads one whole backend message, refusing any longer than the byte bound.
    async fn read_message(&mut self) -> Result<Message, DbError> {
        let max = self.limits.max_bytes.max(64 * 1024).saturating_add(1024);
        loop {
            if let Some(&[_, a, b, c, d]) = self.wire.rbuf.get(..5) {
                let len = u32::from_be_bytes([a, b, c, d]);
                if usize::try_from(len).map_or(true, |l| l > max) {
                    return Err(DbError::TooLarge {
                        what: "message bytes",
                        limit: max,
                        drained: false,
                    });
                }
            }
            match Message::parse(&mut self.wire.rbuf) {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => self.wire.fill().await?,
                Err(e) => return Err(protocol(format!("bad backend message: {e}"))),
            }
        }
    }
}

/// Parse (unnamed) + Bind (text parameters, text results) + Describe portal + Execute +
/// Sync.
fn encode_extended(sql: &str, params: &[Option<&[u8]>], out: &mut BytesMut) -> Result<(), DbError> {
    frontend::parse("", sql, std::iter::empty(), out)
        .map_err(|e| DbError::Encode(format!("Parse: {e}")))?;
    frontend::bind(
        "",
        "",
        std::iter::empty(),
        params.iter(),
        |p, buf| match p {
            Some(v) => {
                buf.put_slice(v);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        },
        std::iter::empty(),
        out,
    )
    .map_err(|e| match e {
        frontend::BindError::Conversion(e) => DbError::Encode(format!("Bind: {e}")),
        frontend::BindError::Serialization(e) => DbError::Encode(format!("Bind: {e}")),
    })?;
    frontend::describe(b'P', "", out).map_err(|e| DbError::Encode(format!("Describe: {e}")))?;
    frontend::execute("", 0, out).map_err(|e| DbError::Encode(format!("Execute: {e}")))?;
    frontend::sync(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};

    /// A backend message: tag, length, body.
    fn backend(tag: u8, body: &[u8]) -> Message {
        let mut b = BytesMut::new();
        b.put_u8(tag);
        b.put_u32(u32::try_from(body.len() + 4).unwrap());
        b.put_slice(body);
        Message::parse(&mut b).unwrap().unwrap()
    }

    fn auth(code: u32, data: &[u8]) -> Message {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(data);
        backend(b'R', &body)
    }

    /// Splits one frontend message off `out`: (tag, body).
    fn frontend_msg(out: &mut BytesMut) -> (u8, Vec<u8>) {
        let tag = out[0];
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        let msg = out.split_to(1 + len);
        (tag, msg[5..].to_vec())
    }

    fn startup<'a>(user: &'a str, pass: Option<&'a [u8]>, out: &mut BytesMut) -> Startup<'a> {
        let s = Startup::new(user, pass, "test", out).unwrap();
        out.clear();
        s
    }

    fn finish_ok(s: &mut Startup<'_>, out: &mut BytesMut) {
        assert_eq!(
            s.on_message(auth(0, b""), out).unwrap(),
            StartupStep::Continue
        );
        let mut key = 42i32.to_be_bytes().to_vec();
        key.extend_from_slice(&7i32.to_be_bytes());
        s.on_message(backend(b'K', &key), out).unwrap();
        assert_eq!(
            s.on_message(backend(b'Z', b"I"), out).unwrap(),
            StartupStep::Ready
        );
        assert_eq!(s.key_data, Some((42, 7)));
        assert!(out.is_empty());
    }

    #[test]
    fn cleartext_and_md5_passwords() {
        let mut out = BytesMut::new();
        let mut s = startup("alice", Some(b"pw"), &mut out);
        s.on_message(auth(3, b""), &mut out).unwrap();
        assert_eq!(frontend_msg(&mut out), (b'p', b"pw\0".to_vec()));
        finish_ok(&mut s, &mut out);

        let mut s = startup("alice", Some(b"pw"), &mut out);
        s.on_message(auth(5, &[1, 2, 3, 4]), &mut out).unwrap();
        // md5(md5("pw" + "alice") + salt), computed independently.
        assert_eq!(
            frontend_msg(&mut out),
            (b'p', b"md527972593be6fc26d3f4484e91163efdf\0".to_vec())
        );
        finish_ok(&mut s, &mut out);

        let mut s = startup("alice", None, &mut out);
        assert!(matches!(
            s.on_message(auth(5, &[1, 2, 3, 4]), &mut out),
            Err(DbError::Auth(_))
        ));
    }

    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    /// Plays the server side of SCRAM-SHA-256 (RFC 5802 §3) for `server_password`;
    /// `tamper` corrupts the server signature. Returns the result of the client's last step.
    fn scram_exchange(server_password: &[u8], tamper: bool) -> Result<(), DbError> {
        let mut out = BytesMut::new();
        let mut s = startup("alice", Some(b"pencil"), &mut out);
        let mechs = b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0".to_vec();
        s.on_message(auth(10, &mechs), &mut out).unwrap();
        let (tag, body) = frontend_msg(&mut out);
        assert_eq!(tag, b'p');
        let mech_end = body.iter().position(|b| *b == 0).unwrap();
        assert_eq!(&body[..mech_end], b"SCRAM-SHA-256");
        let client_first = std::str::from_utf8(&body[mech_end + 5..])
            .unwrap()
            .to_owned();
        let client_first_bare = client_first.strip_prefix("n,,").unwrap().to_owned();
        let client_nonce = client_first_bare.strip_prefix("n=,r=").unwrap();
        let nonce = format!("{client_nonce}srvnonce");
        let salt = b"0123456789abcdef";
        let server_first = format!("r={nonce},s={},i=4096", B64.encode(salt));
        s.on_message(auth(11, server_first.as_bytes()), &mut out)
            .unwrap();
        let (tag, body) = frontend_msg(&mut out);
        assert_eq!(tag, b'p');
        let client_final = String::from_utf8(body).unwrap();
        let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
        assert_eq!(without_proof, format!("c=biws,r={nonce}"));
        // Hi(password, salt, 4096) = PBKDF2-HMAC-SHA-256.
        let mut u = hmac(server_password, &[&salt[..], &[0, 0, 0, 1]].concat());
        let mut salted = u.clone();
        for _ in 1..4096 {
            u = hmac(server_password, &u);
            salted.iter_mut().zip(&u).for_each(|(a, b)| *a ^= b);
        }
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key).to_vec();
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_sig = hmac(&stored_key, auth_message.as_bytes());
        let proof = B64.decode(proof).unwrap();
        let recovered: Vec<u8> = proof.iter().zip(&client_sig).map(|(a, b)| a ^ b).collect();
        if Sha256::digest(&recovered).to_vec() != stored_key {
            return Err(DbError::Auth("server: proof does not verify".into()));
        }
        let server_key = hmac(&salted, b"Server Key");
        let mut server_sig = hmac(&server_key, auth_message.as_bytes());
        if tamper {
            server_sig[0] ^= 1;
        }
        let server_final = format!("v={}", B64.encode(&server_sig));
        s.on_message(auth(12, server_final.as_bytes()), &mut out)?;
        finish_ok(&mut s, &mut out);
        Ok(())
    }

    #[test]
    fn scram_sha_256_exchange() {
        scram_exchange(b"pencil", false).unwrap();
        // The server-side check above can fail: a different stored password.
        assert!(scram_exchange(b"other", false).is_err());
        // A forged server signature is refused by the client.
        assert!(matches!(
            scram_exchange(b"pencil", true),
            Err(DbError::Auth(_))
        ));
    }

    #[test]
    fn sasl_without_scram_is_refused() {
        let mut out = BytesMut::new();
        let mut s = startup("alice", Some(b"pw"), &mut out);
        let r = s.on_message(auth(10, b"SCRAM-SHA-256-PLUS\0\0"), &mut out);
        assert!(matches!(r, Err(DbError::Auth(_))));
        let mut s = startup("alice", Some(b"pw"), &mut out);
        assert!(s.on_message(auth(11, b"r=x,s=eA==,i=1"), &mut out).is_err());
        // A server demanding an absurd PBKDF2 cost is refused before any hashing.
        let mut s = startup("alice", Some(b"pw"), &mut out);
        s.on_message(auth(10, b"SCRAM-SHA-256\0\0"), &mut out)
            .unwrap();
        out.clear();
        let r = s.on_message(auth(11, b"r=x,s=eA==,i=4000000000"), &mut out);
        assert!(matches!(r, Err(DbError::Auth(m)) if m.contains("iteration")));
    }

    #[test]
    fn command_tags() {
        assert_eq!(tag_rows("INSERT 0 5"), 5);
        assert_eq!(tag_rows("UPDATE 2"), 2);
        assert_eq!(tag_rows("SELECT 3"), 3);
        assert_eq!(tag_rows("CREATE TABLE"), 0);
        assert_eq!(tag_rows(""), 0);
    }
}
