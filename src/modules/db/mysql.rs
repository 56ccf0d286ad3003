//! MySQL / MariaDB client driver over `cores::AsyncStream`, on `mysql_common`'s sans-io
//! pieces (packet codec with 16 MiB chunking and sequence checks, handshake packets,
//! auth plugins, column definitions, OK/ERR packets, `COM_STMT_EXECUTE` encoding).
//!
//! Owns: one authenticated session and its in-sync flag. Invariants: every command starts
//! with sequence id 0 and reads its whole response before returning (also on a server
//! error or a result over [`DbLimits`]); `usable` is false while a command is in flight,
//! so a dropped future leaves the connection marked unusable.
//!
//! Protocol: handshake v10 with `CLIENT_PROTOCOL_41` (EOF packets, no
//! `CLIENT_DEPRECATE_EOF`), auth plugins `mysql_native_password`,
//! `caching_sha2_password` (fast path, and full auth over plain TCP by RSA-OAEP with the
//! server's key as `mysql_common` implements it) and `sha256_password`; `COM_QUERY` text
//! result sets; `COM_STMT_PREPARE` / `COM_STMT_EXECUTE` / `COM_STMT_CLOSE` for
//! parameterized queries, every parameter bound as `MYSQL_TYPE_VAR_STRING`.
//!
//! Binary result values are rendered to the text protocol's form: integers in decimal,
//! DATE `YYYY-MM-DD`, DATETIME/TIMESTAMP `YYYY-MM-DD HH:MM:SS[.frac]` (as many fraction
//! digits as the column declares), TIME `[-]HH:MM:SS[.frac]`. FLOAT/DOUBLE use Rust's
//! shortest round-trip form, which differs from the server's text form for very large
//! or small magnitudes (`1e20` comes out as `100000000000000000000`).

use cores::AsyncStream;
use mysql_common::auth::plugins::{AuthProc, ChallengeResponsePlugin, Context};
use mysql_common::constants::{CapabilityFlags, ColumnFlags, ColumnType, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, AuthSwitchRequest, Column, ComStmtExecuteRequestBuilder, CommonOkPacket, ErrPacket,
    HandshakePacket, HandshakeResponse, OkPacketDeserializer, StmtPacket,
};
use mysql_common::proto::codec::error::PacketCodecError;
use mysql_common::proto::codec::PacketCodec;
use mysql_common::proto::MySerialize;
use mysql_common::Value;

use super::url::DbUrl;
use super::wire::Wire;
use super::{DbError, DbLimits, QueryResult, ResultBuilder};

const COM_QUIT: u8 = 0x01;
const COM_QUERY: u8 = 0x03;
const COM_PING: u8 = 0x0e;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_CLOSE: u8 = 0x19;

/// Largest payload of one packet chunk; a longer packet is split (and a request whose
/// parameters would need `COM_STMT_SEND_LONG_DATA` is refused).
const MAX_PAYLOAD_LEN: usize = 0xff_ffff;

/// Server errors after which the server closes the session.
const FATAL_SERVER_ERRORS: [u16; 11] = [
    1053, // ER_SERVER_SHUTDOWN
    1152, // ER_ABORTING_CONNECTION
    1153, // ER_NET_PACKET_TOO_LARGE (request over the server's max_allowed_packet)
    1154, // ER_NET_READ_ERROR_FROM_PIPE
    1156, // ER_NET_PACKETS_OUT_OF_ORDER
    1158, // ER_NET_READ_ERROR
    1159, // ER_NET_READ_INTERRUPTED
    1160, // ER_NET_ERROR_ON_WRITE
    1161, // ER_NET_WRITE_INTERRUPTED
    1927, // ER_CONNECTION_KILLED (MariaDB)
    4031, // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
];

/// Auth exchanges longer than this are a misbehaving server.
const MAX_AUTH_ROUNDS: usize = 8;

/// An authenticated MySQL/MariaDB session.
pub struct MysqlConn<S> {
    wire: Wire<S>,
    codec: PacketCodec,
    caps: CapabilityFlags,
    limits: DbLimits,
    usable: bool,
    /// The packet last read (reassembled from chunks).
    packet: Vec<u8>,
    server_version: String,
    connection_id: u32,
}

/// What a column needs to render binary-protocol values as text.
#[derive(Clone, Copy)]
struct ColMeta {
    ty: ColumnType,
    unsigned: bool,
    decimals: u8,
}

#[derive(Clone, Copy)]
enum RowFormat {
    Text,
    Binary,
}

#[derive(Clone, Copy)]
struct AuthCtx<'a> {
    pass: &'a [u8],
    scramble: &'a [u8],
}

impl Context for AuthCtx<'_> {
    fn pass(&self) -> &[u8] {
        self.pass
    }
    fn is_ipc_transport(&self) -> bool {
        false
    }
    fn is_tls_transport(&self) -> bool {
        false
    }
    fn scramble(&self) -> &[u8] {
        self.scramble
    }
    fn server_key_pem(&self) -> Option<&[u8]> {
        None
    }
}

fn protocol(what: impl std::fmt::Display) -> DbError {
    DbError::Protocol(format!("mysql: {what}"))
}

fn supported_plugin(p: &AuthPlugin<'_>) -> bool {
    matches!(
        p,
        AuthPlugin::MysqlNativePassword
            | AuthPlugin::CachingSha2Password
            | AuthPlugin::Sha256Password
    )
}

/// Whether `pkt` is an EOF packet (0xFE header, shorter than 9 bytes).
fn is_eof(pkt: &[u8]) -> bool {
    pkt.first() == Some(&0xFE) && pkt.len() < 9
}

/// Status flags of an EOF packet.
fn eof_status(pkt: &[u8]) -> StatusFlags {
    match pkt.get(3..5) {
        Some(&[lo, hi]) => StatusFlags::from_bits_truncate(u16::from_le_bytes([lo, hi])),
        _ => StatusFlags::empty(),
    }
}

impl<S: AsyncStream> MysqlConn<S> {
    /// Handshake and authentication as `url.user` into `url.database`.
    pub async fn connect(stream: S, url: &DbUrl, limits: DbLimits) -> Result<Self, DbError> {
        let mut codec = PacketCodec::default();
        codec.max_allowed_packet = limits.max_bytes.max(64 * 1024);
        let mut c = MysqlConn {
            wire: Wire::new(stream),
            codec,
            caps: CapabilityFlags::empty(),
            limits,
            usable: false,
            packet: Vec::new(),
            server_version: String::new(),
            connection_id: 0,
        };
        c.read_packet().await?;
        if c.packet.first() == Some(&0xFF) {
            return Err(match c.server_error() {
                DbError::Server { code, message, .. } => DbError::Auth(format!(
                    "server refused connection: {} {message}",
                    code.unwrap_or(0)
                )),
                e => e,
            });
        }
        let hs: HandshakePacket<'_> = ParseBuf(&c.packet)
            .parse(())
            .map_err(|e| protocol(format!("bad initial handshake: {e}")))?;
        if hs.protocol_version() != 10 {
            return Err(DbError::Unsupported(format!(
                "mysql handshake protocol version {}",
                hs.protocol_version()
            )));
        }
        let server_caps = hs.capabilities();
        if !server_caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
            return Err(DbError::Unsupported("mysql server before 4.1".into()));
        }
        let wanted = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_LONG_PASSWORD
            | CapabilityFlags::CLIENT_LONG_FLAG
            | CapabilityFlags::CLIENT_TRANSACTIONS
            | CapabilityFlags::CLIENT_MULTI_RESULTS
            | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
        let caps = wanted & server_caps;
        let nonce = hs.nonce();
        let version = hs.server_version_parsed().unwrap_or((5, 5, 3));
        c.server_version = hs.server_version_str().into_owned();
        c.connection_id = hs.connection_id();
        let server_plugin = hs.auth_plugin().map(AuthPlugin::into_owned);
        // A plugin we cannot run: answer as mysql_native_password and let the server
        // switch us to the account's real plugin.
        let mut plugin = match server_plugin {
            Some(p) if supported_plugin(&p) => p,
            _ => AuthPlugin::MysqlNativePassword,
        };
        let pass = url.password.as_deref().unwrap_or("").as_bytes();
        let mut scramble = nonce;
        let mut proc = AuthProc::init(&plugin).map_err(|e| DbError::Auth(e.to_string()))?;
        let first = proc
            .run(
                AuthCtx {
                    pass,
                    scramble: &scramble,
                },
                &scramble,
            )
            .map_err(|e| DbError::Auth(format!("{}: {e}", plugin_name(&plugin))))?;
        let plugin_auth = caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH);
        let response = HandshakeResponse::new(
            Some(first.data().unwrap_or_default().to_vec()),
            version,
            Some(url.user.as_bytes()),
            Some(url.database.as_bytes()),
            plugin_auth.then(|| plugin.clone()),
            caps,
            None,
            u32::try_from(c.codec.max_allowed_packet).unwrap_or(u32::MAX),
        );
        c.caps = response.capabilities();
        let mut awaiting_key = requests_key(&plugin, first.data().unwrap_or_default());
        let mut out = Vec::new();
        response.serialize(&mut out);
        c.send_packet(&out).await?;

        for _ in 0..MAX_AUTH_ROUNDS {
            c.read_packet().await?;
            match c.packet.first() {
                Some(0x00) => {
                    c.usable = true;
                    return Ok(c);
                }
                Some(0xFF) => {
                    return Err(match c.server_error() {
                        DbError::Server { code, message, .. } => DbError::Auth(format!(
                            "{} {message} (plugin {})",
                            code.unwrap_or(0),
                            plugin_name(&plugin)
                        )),
                        e => e,
                    })
                }
                Some(0xFE) => {
                    if c.packet.len() == 1 {
                        return Err(DbError::Unsupported(
                            "mysql_old_password authentication".into(),
                        ));
                    }
                    let req: AuthSwitchRequest<'_> = ParseBuf(&c.packet)
                        .parse(())
                        .map_err(|e| protocol(format!("bad auth switch request: {e}")))?;
                    let next = req.auth_plugin().into_owned();
                    if !supported_plugin(&next) {
                        return Err(DbError::Auth(format!(
                            "server asks for auth plugin {}, which this driver does not support",
                            plugin_name(&next)
                        )));
                    }
                    scramble = req.plugin_data().to_vec();
                    plugin = next;
                    proc = AuthProc::init(&plugin).map_err(|e| DbError::Auth(e.to_string()))?;
                    let resp = proc
                        .run(
                            AuthCtx {
                                pass,
                                scramble: &scramble,
                            },
                            &scramble,
                        )
                        .map_err(|e| DbError::Auth(format!("{}: {e}", plugin_name(&plugin))))?;
                    let data = resp.data().unwrap_or_default().to_vec();
                    awaiting_key = requests_key(&plugin, &data);
                    c.send_packet(&data).await?;
                }
                Some(0x01) => {
                    if scramble.is_empty() {
                        return Err(protocol("auth continuation without a scramble"));
                    }
                    let mut challenge = c.packet.get(1..).unwrap_or_default().to_vec();
                    if awaiting_key {
                        // The server's RSA public key: validated and re-encoded here, since
                        // mysql_common's DER reader indexes without bounds checks.
                        challenge = canonical_server_key(&challenge, pass.len())?;
                        awaiting_key = false;
                    }
                    let resp = proc
                        .run(
                            AuthCtx {
                                pass,
                                scramble: &scramble,
                            },
                            &challenge,
                        )
                        .map_err(|e| DbError::Auth(format!("{}: {e}", plugin_name(&plugin))))?;
                    if let Some(data) = resp.data() {
                        let data = data.to_vec();
                        awaiting_key = requests_key(&plugin, &data);
                        c.send_packet(&data).await?;
                    }
                }
                _ => return Err(protocol("unexpected packet during authentication")),
            }
        }
        Err(protocol("authentication exchange did not end"))
    }

    /// Server version string from the handshake.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The server's id for this session (what `CONNECTION_ID()` returns).
    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }

    /// Whether the session is in sync for another command.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// Replaces the result bounds for later commands.
    pub fn set_limits(&mut self, limits: DbLimits) {
        self.limits = limits;
        self.codec.max_allowed_packet = limits.max_bytes.max(64 * 1024);
    }

    /// `COM_QUERY`: runs `sql` and returns its first result set (later ones are drained).
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, DbError> {
        self.begin()?;
        let r = self
            .command_then_result(COM_QUERY, sql.as_bytes(), RowFormat::Text)
            .await;
        self.end(r)
    }

    /// Prepared statement: `COM_STMT_PREPARE` `sql` (with `?` placeholders), execute it
    /// with `params` bound as strings (`None` = NULL), then `COM_STMT_CLOSE`.
    pub async fn query_params(
        &mut self,
        sql: &str,
        params: &[Option<&[u8]>],
    ) -> Result<QueryResult, DbError> {
        self.begin()?;
        let r = self.prepared(sql, params).await;
        self.end(r)
    }

    /// `COM_PING`.
    pub async fn ping(&mut self) -> Result<(), DbError> {
        self.begin()?;
        let r = self.ping_inner().await;
        self.end(r)
    }

    /// `COM_QUIT`; returns the stream for the caller to close.
    pub async fn close(mut self) -> Result<S, DbError> {
        self.send_command(COM_QUIT, &[]).await?;
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
        if self.packet.capacity() > super::wire::KEEP_CAPACITY {
            self.packet = Vec::new();
        }
        self.usable = match &r {
            Ok(_) => true,
            Err(e) => e.connection_usable(),
        };
        r
    }

    async fn ping_inner(&mut self) -> Result<(), DbError> {
        self.send_command(COM_PING, &[]).await?;
        self.read_packet().await?;
        match self.packet.first() {
            Some(0x00) => Ok(()),
            Some(0xFF) => Err(self.server_error()),
            _ => Err(protocol("unexpected reply to COM_PING")),
        }
    }

    async fn command_then_result(
        &mut self,
        command: u8,
        body: &[u8],
        format: RowFormat,
    ) -> Result<QueryResult, DbError> {
        self.send_command(command, body).await?;
        self.read_results(format).await
    }

    async fn prepared(
        &mut self,
        sql: &str,
        params: &[Option<&[u8]>],
    ) -> Result<QueryResult, DbError> {
        self.send_command(COM_STMT_PREPARE, sql.as_bytes()).await?;
        self.read_packet().await?;
        if self.packet.first() == Some(&0xFF) {
            return Err(self.server_error());
        }
        let stmt: StmtPacket = ParseBuf(&self.packet)
            .parse(())
            .map_err(|e| protocol(format!("bad COM_STMT_PREPARE reply: {e}")))?;
        let (id, n_params, n_cols) = (
            stmt.statement_id(),
            usize::from(stmt.num_params()),
            usize::from(stmt.num_columns()),
        );
        for n in [n_params, n_cols] {
            if n > 0 {
                for _ in 0..n {
                    self.read_packet().await?;
                }
                self.read_packet().await?;
                if !is_eof(&self.packet) {
                    return Err(protocol("missing EOF after statement metadata"));
                }
            }
        }
        let r = self.execute(id, n_params, params).await;
        // The statement is closed whatever happened, if the session is still in sync.
        if r.as_ref().map_or_else(DbError::connection_usable, |_| true) {
            self.send_command(COM_STMT_CLOSE, &id.to_le_bytes()).await?;
        }
        r
    }

    async fn execute(
        &mut self,
        id: u32,
        n_params: usize,
        params: &[Option<&[u8]>],
    ) -> Result<QueryResult, DbError> {
        if params.len() != n_params {
            return Err(DbError::ParamCount {
                expected: n_params,
                given: params.len(),
            });
        }
        let values: Vec<Value> = params
            .iter()
            .map(|p| p.map_or(Value::NULL, |b| Value::Bytes(b.to_vec())))
            .collect();
        let (req, as_long_data) = ComStmtExecuteRequestBuilder::new(id).build(&values);
        if as_long_data {
            return Err(DbError::TooLarge {
                what: "parameter bytes",
                limit: MAX_PAYLOAD_LEN,
                drained: true,
            });
        }
        let mut payload = Vec::new();
        req.serialize(&mut payload);
        let (command, body) = payload
            .split_first()
            .ok_or_else(|| protocol("empty COM_STMT_EXECUTE"))?;
        self.send_command(*command, body).await?;
        self.read_results(RowFormat::Binary).await
    }

    /// Reads a whole command response: OK, ERR, or result set(s). Keeps the first result
    /// set; drains any further ones (`SERVER_MORE_RESULTS_EXISTS`).
    async fn read_results(&mut self, format: RowFormat) -> Result<QueryResult, DbError> {
        let mut out = ResultBuilder::new(self.limits);
        let mut first = true;
        loop {
            self.read_packet().await?;
            let status = match self.packet.first() {
                Some(0x00) => {
                    let ok = ParseBuf(&self.packet)
                        .parse::<OkPacketDeserializer<'_, CommonOkPacket>>(self.caps)
                        .map_err(|e| protocol(format!("bad OK packet: {e}")))?
                        .into_inner();
                    if first {
                        out.result.affected_rows = ok.affected_rows();
                    }
                    ok.status_flags()
                }
                Some(0xFF) => return Err(self.server_error()),
                Some(0xFB) => {
                    return Err(DbError::Unsupported(
                        "LOAD DATA LOCAL INFILE request".into(),
                    ))
                }
                Some(_) => self.read_result_set(&mut out, first, format).await?,
                None => return Err(protocol("empty packet")),
            };
            if !status.contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS) {
                break;
            }
            first = false;
        }
        out.finish()
    }

    /// Reads column definitions and rows of one result set whose first packet (the
    /// column count) is in `self.packet`. Returns the closing EOF's status flags.
    async fn read_result_set(
        &mut self,
        out: &mut ResultBuilder,
        keep: bool,
        format: RowFormat,
    ) -> Result<StatusFlags, DbError> {
        let n_cols = ParseBuf(&self.packet)
            .checked_eat_lenenc_int()
            .ok_or_else(|| protocol("bad column count"))?;
        let n_cols = usize::try_from(n_cols)
            .ok()
            .filter(|n| *n <= 4096)
            .ok_or_else(|| protocol(format!("column count {n_cols}")))?;
        let mut metas = Vec::with_capacity(n_cols);
        for _ in 0..n_cols {
            self.read_packet().await?;
            let col: Column = ParseBuf(&self.packet)
                .parse(())
                .map_err(|e| protocol(format!("bad column definition: {e}")))?;
            metas.push(ColMeta {
                ty: col.column_type(),
                unsigned: col.flags().contains(ColumnFlags::UNSIGNED_FLAG),
                decimals: col.decimals(),
            });
            if keep {
                out.result.columns.push(col.name_str().into_owned());
            }
        }
        self.read_packet().await?;
        if !is_eof(&self.packet) {
            return Err(protocol("missing EOF after column definitions"));
        }
        loop {
            self.read_packet().await?;
            if is_eof(&self.packet) {
                return Ok(eof_status(&self.packet));
            }
            if self.packet.first() == Some(&0xFF) {
                return Err(self.server_error());
            }
            if keep && out.accepting() {
                let row = match format {
                    RowFormat::Text => parse_text_row(&self.packet, n_cols)?,
                    RowFormat::Binary => parse_binary_row(&self.packet, &metas)?,
                };
                out.push_row(row);
            }
        }
    }

    /// Turns the ERR packet in `self.packet` into an error.
    fn server_error(&self) -> DbError {
        match ParseBuf(&self.packet).parse::<ErrPacket<'_>>(self.caps) {
            Ok(ErrPacket::Error(e)) => {
                let code = e.error_code();
                let message = e.message_str().into_owned();
                if FATAL_SERVER_ERRORS.contains(&code) {
                    return DbError::Closed(format!("mysql error {code}: {message}"));
                }
                DbError::Server {
                    code: Some(code),
                    sqlstate: e
                        .sql_state_ref()
                        .map(|s| s.as_str().into_owned())
                        .unwrap_or_else(|| "HY000".into()),
                    message,
                }
            }
            Ok(ErrPacket::Progress(_)) => protocol("unrequested progress report"),
            Err(e) => protocol(format!("bad ERR packet: {e}")),
        }
    }

    async fn read_packet(&mut self) -> Result<(), DbError> {
        self.packet.clear();
        loop {
            match self.codec.decode(&mut self.wire.rbuf, &mut self.packet) {
                Ok(true) => return Ok(()),
                Ok(false) => self.wire.fill().await?,
                Err(e) => return Err(self.codec_error(e, false)),
            }
        }
    }

    /// Starts a new command (sequence id 0) and sends `command` + `body` as one packet
    /// (without copying the body into a separate buffer first).
    async fn send_command(&mut self, command: u8, body: &[u8]) -> Result<(), DbError> {
        self.codec.reset_seq_id();
        let command = [command];
        let mut payload = bytes::Buf::chain(&command[..], body);
        self.encode_and_flush(&mut payload).await
    }

    async fn send_packet(&mut self, mut payload: &[u8]) -> Result<(), DbError> {
        self.encode_and_flush(&mut payload).await
    }

    async fn encode_and_flush(&mut self, payload: &mut impl bytes::Buf) -> Result<(), DbError> {
        if let Err(e) = self.codec.encode(payload, &mut self.wire.wbuf) {
            self.wire.wbuf.clear();
            return Err(self.codec_error(e, true));
        }
        self.wire.flush().await
    }

    fn codec_error(&self, e: PacketCodecError, sending: bool) -> DbError {
        match e {
            PacketCodecError::Io(e) => DbError::Io(e),
            PacketCodecError::PacketTooLarge => DbError::TooLarge {
                what: "packet bytes",
                limit: self.codec.max_allowed_packet,
                // Nothing was written when the outgoing packet was refused.
                drained: sending,
            },
            PacketCodecError::PacketsOutOfSync => protocol("packet sequence out of sync"),
            PacketCodecError::BadCompressedPacketHeader => protocol("bad compressed header"),
        }
    }
}

/// Whether `sent` asks the server for its RSA public key (caching_sha2_password full
/// authentication, sha256_password), so the next AuthMoreData carries a PEM key.
fn requests_key(plugin: &AuthPlugin<'_>, sent: &[u8]) -> bool {
    matches!(
        (plugin, sent),
        (AuthPlugin::CachingSha2Password, [0x02]) | (AuthPlugin::Sha256Password, [0x01])
    )
}

/// One DER element with tag `tag`: (contents, rest). Lengths over 4 octets are refused.
fn der_element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = der.split_first()?;
    if t != tag {
        return None;
    }
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 & 0x80 != 0 {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = rest
            .get(..n)?
            .iter()
            .fold(0usize, |a, b| a << 8 | usize::from(*b));
        (len, rest.get(n..)?)
    } else {
        (usize::from(l0), rest)
    };
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// Modulus and exponent of a PKCS#1 RSAPublicKey.
fn der_rsa_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (seq, _) = der_element(der, 0x30)?;
    let (modulus, rest) = der_element(seq, 0x02)?;
    let (exponent, _) = der_element(rest, 0x02)?;
    Some((modulus, exponent))
}

/// Validates the server's PEM public key (PKCS#1 `RSA PUBLIC KEY` or SubjectPublicKeyInfo
/// `PUBLIC KEY`) with bounds-checked DER parsing, checks the modulus is large enough for
/// RSA-OAEP of the NUL-terminated password, and returns it re-encoded as clean PEM.
fn canonical_server_key(pem: &[u8], pass_len: usize) -> Result<Vec<u8>, DbError> {
    use base64::Engine;
    let bad = |why: &str| DbError::Auth(format!("server RSA public key: {why}"));
    let text = std::str::from_utf8(pem).map_err(|_| bad("not text"))?;
    let (label, body) = ["RSA PUBLIC KEY", "PUBLIC KEY"]
        .into_iter()
        .find_map(|label| {
            let begin = format!("-----BEGIN {label}-----");
            let end = format!("-----END {label}-----");
            let start = text.find(&begin)? + begin.len();
            let body = text.get(start..)?;
            let stop = body.find(&end)?;
            Some((label, body.get(..stop)?))
        })
        .ok_or_else(|| bad("no PEM block"))?;
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| bad("bad base64"))?;
    let key = if label == "RSA PUBLIC KEY" {
        der_rsa_key(&der)
    } else {
        der_element(&der, 0x30)
            .and_then(|(spki, _)| der_element(spki, 0x30))
            .and_then(|(_, rest)| der_element(rest, 0x03))
            .and_then(|(bits, _)| match bits.split_first() {
                Some((0, key)) => der_rsa_key(key),
                _ => None,
            })
    };
    let (modulus, exponent) = key.ok_or_else(|| bad("malformed DER"))?;
    let modulus: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(i) => modulus.get(i..).unwrap_or_default(),
        None => &[],
    };
    if exponent.iter().all(|b| *b == 0) {
        return Err(bad("zero exponent"));
    }
    // Real keys use e = 65537 and at most 8192-bit moduli; bigger ones only cost CPU.
    if exponent.len() > 8 || modulus.len() > 1024 {
        return Err(bad("exponent or modulus unreasonably large"));
    }
    let bits = match modulus.first() {
        Some(top) => (modulus.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => return Err(bad("zero modulus")),
    };
    // RSA-OAEP (SHA-1) carries at most k - 42 octets (mysql_common's padding underflows
    // past that); the password goes with its NUL.
    let k = (bits + 6) >> 3;
    if k < 64 || k < pass_len.saturating_add(1 + 2 * 20 + 2) {
        return Err(bad("modulus too small for the password"));
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    Ok(format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n").into_bytes())
}

fn plugin_name(p: &AuthPlugin<'_>) -> String {
    String::from_utf8_lossy(p.as_bytes()).into_owned()
}

/// A text-protocol row: per column, 0xFB for NULL or a length-encoded string.
fn parse_text_row(pkt: &[u8], n_cols: usize) -> Result<Vec<Option<Vec<u8>>>, DbError> {
    let mut buf = ParseBuf(pkt);
    let mut row = Vec::with_capacity(n_cols);
    for _ in 0..n_cols {
        if buf.0.first() == Some(&0xFB) {
            buf.checked_skip(1);
            row.push(None);
        } else {
            let v = buf
                .checked_eat_lenenc_str()
                .ok_or_else(|| protocol("truncated text row"))?;
            row.push(Some(v.to_vec()));
        }
    }
    if !buf.is_empty() {
        return Err(protocol("trailing bytes in text row"));
    }
    Ok(row)
}

/// A binary-protocol row: 0x00, NULL bitmap (offset 2), then the non-NULL values.
fn parse_binary_row(pkt: &[u8], cols: &[ColMeta]) -> Result<Vec<Option<Vec<u8>>>, DbError> {
    let truncated = || protocol("truncated binary row");
    let mut buf = ParseBuf(pkt);
    if buf.checked_eat_u8() != Some(0x00) {
        return Err(protocol("binary row without 0x00 header"));
    }
    let bitmap = buf
        .checked_eat((cols.len() + 7 + 2) / 8)
        .ok_or_else(truncated)?;
    let mut row = Vec::with_capacity(cols.len());
    for (i, col) in cols.iter().enumerate() {
        let bit = i + 2;
        let null = bitmap
            .get(bit / 8)
            .is_some_and(|b| b & (1u8 << (bit % 8)) != 0);
        if null {
            row.push(None);
            continue;
        }
        row.push(decode_binary_value(&mut buf, *col)?);
    }
    if !buf.is_empty() {
        return Err(protocol("trailing bytes in binary row"));
    }
    Ok(row)
}

fn decode_binary_value(buf: &mut ParseBuf<'_>, col: ColMeta) -> Result<Option<Vec<u8>>, DbError> {
    use ColumnType as T;
    let truncated = || protocol("truncated binary value");
    let text = match col.ty {
        T::MYSQL_TYPE_NULL => return Ok(None),
        T::MYSQL_TYPE_TINY => match col.unsigned {
            true => buf.checked_eat_u8().ok_or_else(truncated)?.to_string(),
            false => buf.checked_eat_i8().ok_or_else(truncated)?.to_string(),
        },
        T::MYSQL_TYPE_SHORT | T::MYSQL_TYPE_YEAR => {
            match col.unsigned || col.ty == T::MYSQL_TYPE_YEAR {
                true => buf.checked_eat_u16_le().ok_or_else(truncated)?.to_string(),
                false => buf.checked_eat_i16_le().ok_or_else(truncated)?.to_string(),
            }
        }
        T::MYSQL_TYPE_LONG | T::MYSQL_TYPE_INT24 => match col.unsigned {
            true => buf.checked_eat_u32_le().ok_or_else(truncated)?.to_string(),
            false => buf.checked_eat_i32_le().ok_or_else(truncated)?.to_string(),
        },
        T::MYSQL_TYPE_LONGLONG => match col.unsigned {
            true => buf.checked_eat_u64_le().ok_or_else(truncated)?.to_string(),
            false => buf.checked_eat_i64_le().ok_or_else(truncated)?.to_string(),
        },
        T::MYSQL_TYPE_FLOAT => buf.checked_eat_f32_le().ok_or_else(truncated)?.to_string(),
        T::MYSQL_TYPE_DOUBLE => buf.checked_eat_f64_le().ok_or_else(truncated)?.to_string(),
        T::MYSQL_TYPE_DATE
        | T::MYSQL_TYPE_NEWDATE
        | T::MYSQL_TYPE_DATETIME
        | T::MYSQL_TYPE_TIMESTAMP => {
            let len = buf.checked_eat_u8().ok_or_else(truncated)?;
            let body = buf.checked_eat(usize::from(len)).ok_or_else(truncated)?;
            let mut b = ParseBuf(body);
            let (y, mo, d) = if len >= 4 {
                (
                    b.checked_eat_u16_le().ok_or_else(truncated)?,
                    b.checked_eat_u8().ok_or_else(truncated)?,
                    b.checked_eat_u8().ok_or_else(truncated)?,
                )
            } else {
                (0, 0, 0)
            };
            let (h, mi, s) = if len >= 7 {
                (
                    b.checked_eat_u8().ok_or_else(truncated)?,
                    b.checked_eat_u8().ok_or_else(truncated)?,
                    b.checked_eat_u8().ok_or_else(truncated)?,
                )
            } else {
                (0, 0, 0)
            };
            let us = if len >= 11 {
                b.checked_eat_u32_le().ok_or_else(truncated)?
            } else {
                0
            };
            if matches!(col.ty, T::MYSQL_TYPE_DATE | T::MYSQL_TYPE_NEWDATE) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!(
                    "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                    fraction(us, col.decimals)
                )
            }
        }
        T::MYSQL_TYPE_TIME => {
            let len = buf.checked_eat_u8().ok_or_else(truncated)?;
            let body = buf.checked_eat(usize::from(len)).ok_or_else(truncated)?;
            let mut b = ParseBuf(body);
            let (neg, days, h, mi, s) = if len >= 8 {
                (
                    b.checked_eat_u8().ok_or_else(truncated)? != 0,
                    b.checked_eat_u32_le().ok_or_else(truncated)?,
                    b.checked_eat_u8().ok_or_else(truncated)?,
                    b.checked_eat_u8().ok_or_else(truncated)?,
                    b.checked_eat_u8().ok_or_else(truncated)?,
                )
            } else {
                (false, 0, 0, 0, 0)
            };
            let us = if len >= 12 {
                b.checked_eat_u32_le().ok_or_else(truncated)?
            } else {
                0
            };
            let hours = u64::from(days) * 24 + u64::from(h);
            format!(
                "{}{hours:02}:{mi:02}:{s:02}{}",
                if neg { "-" } else { "" },
                fraction(us, col.decimals)
            )
        }
        T::MYSQL_TYPE_STRING
        | T::MYSQL_TYPE_VAR_STRING
        | T::MYSQL_TYPE_VARCHAR
        | T::MYSQL_TYPE_BLOB
        | T::MYSQL_TYPE_TINY_BLOB
        | T::MYSQL_TYPE_MEDIUM_BLOB
        | T::MYSQL_TYPE_LONG_BLOB
        | T::MYSQL_TYPE_ENUM
        | T::MYSQL_TYPE_SET
        | T::MYSQL_TYPE_DECIMAL
        | T::MYSQL_TYPE_NEWDECIMAL
        | T::MYSQL_TYPE_BIT
        | T::MYSQL_TYPE_GEOMETRY
        | T::MYSQL_TYPE_JSON
        | T::MYSQL_TYPE_VECTOR => {
            let v = buf.checked_eat_lenenc_str().ok_or_else(truncated)?;
            return Ok(Some(v.to_vec()));
        }
        other => {
            return Err(protocol(format!(
                "binary result column type {other:?} not supported"
            )))
        }
    };
    Ok(Some(text.into_bytes()))
}

/// `.ffffff` truncated to the column's declared fraction digits (0 → nothing).
fn fraction(us: u32, decimals: u8) -> String {
    let digits = usize::from(decimals.min(6));
    if digits == 0 {
        return String::new();
    }
    let full = format!("{:06}", us % 1_000_000);
    format!(".{}", full.get(..digits).unwrap_or(&full))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ty: ColumnType, unsigned: bool, decimals: u8) -> ColMeta {
        ColMeta {
            ty,
            unsigned,
            decimals,
        }
    }

    #[test]
    fn text_row_with_null() {
        let pkt = [0x01, b'a', 0xFB, 0x00];
        let row = parse_text_row(&pkt, 3).unwrap();
        assert_eq!(row, vec![Some(b"a".to_vec()), None, Some(Vec::new())]);
        assert!(parse_text_row(&pkt, 4).is_err());
        assert!(parse_text_row(&pkt, 2).is_err());
        assert!(parse_text_row(&[0x05, b'a'], 1).is_err());
    }

    #[test]
    fn binary_row_values_render_as_text() {
        let cols = [
            meta(ColumnType::MYSQL_TYPE_LONGLONG, false, 0),
            meta(ColumnType::MYSQL_TYPE_VAR_STRING, false, 0),
            meta(ColumnType::MYSQL_TYPE_TINY, true, 0),
            meta(ColumnType::MYSQL_TYPE_DATETIME, false, 3),
            meta(ColumnType::MYSQL_TYPE_TIME, false, 0),
            meta(ColumnType::MYSQL_TYPE_DATE, false, 0),
        ];
        // Bitmap (offset 2): column 1 is NULL -> bit 3.
        let mut pkt = vec![0x00, 0b0000_1000];
        pkt.extend_from_slice(&(-5i64).to_le_bytes());
        pkt.push(200);
        pkt.extend_from_slice(&[11, 0xE8, 0x07, 2, 29, 13, 5, 9]);
        pkt.extend_from_slice(&123_456u32.to_le_bytes());
        pkt.extend_from_slice(&[8, 1, 1, 0, 0, 0, 2, 3, 4]);
        pkt.extend_from_slice(&[0]);
        let row = parse_binary_row(&pkt, &cols).unwrap();
        let row: Vec<Option<String>> = row
            .into_iter()
            .map(|v| v.map(|b| String::from_utf8(b).unwrap()))
            .collect();
        assert_eq!(
            row,
            vec![
                Some("-5".into()),
                None,
                Some("200".into()),
                Some("2024-02-29 13:05:09.123".into()),
                Some("-26:03:04".into()),
                Some("0000-00-00".into()),
            ]
        );
        // Truncated input is an error, never a panic.
        for cut in 0..pkt.len() {
            assert!(parse_binary_row(&pkt[..cut], &cols).is_err());
        }
    }

    /// The server side of authentication exchanges, written by hand from the
    /// protocol description (independent of `mysql_common`), over a real local socket.
    mod auth_flows {
        use super::super::*;
        use cores::testing::{block_on, BlockingTcp};
        use sha2::{Digest, Sha256};
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};

        const NONCE: &[u8; 20] = b"abcdefghijklmnopqrst";

        fn send(s: &mut TcpStream, seq: u8, payload: &[u8]) {
            let len = u32::try_from(payload.len()).unwrap().to_le_bytes();
            s.write_all(&[len[0], len[1], len[2], seq]).unwrap();
            s.write_all(payload).unwrap();
        }

        fn recv(s: &mut TcpStream) -> (u8, Vec<u8>) {
            let mut h = [0u8; 4];
            s.read_exact(&mut h).unwrap();
            let mut p =
                vec![0u8; usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16];
            s.read_exact(&mut p).unwrap();
            (h[3], p)
        }

        fn handshake() -> Vec<u8> {
            let caps = (CapabilityFlags::CLIENT_PROTOCOL_41
                | CapabilityFlags::CLIENT_SECURE_CONNECTION
                | CapabilityFlags::CLIENT_LONG_PASSWORD
                | CapabilityFlags::CLIENT_CONNECT_WITH_DB
                | CapabilityFlags::CLIENT_PLUGIN_AUTH
                | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
                .bits();
            let mut p = vec![10];
            p.extend_from_slice(b"8.0.36\0");
            p.extend_from_slice(&7u32.to_le_bytes());
            p.extend_from_slice(&NONCE[..8]);
            p.push(0);
            p.extend_from_slice(&(caps as u16).to_le_bytes());
            p.push(45);
            p.extend_from_slice(&2u16.to_le_bytes());
            p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
            p.push(21);
            p.extend_from_slice(&[0; 10]);
            p.extend_from_slice(&NONCE[8..]);
            p.push(0);
            p.extend_from_slice(b"caching_sha2_password\0");
            p
        }

        /// Returns (user, auth data, plugin) from a HandshakeResponse41.
        fn parse_response(p: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
            let rest = &p[32..];
            let user_end = rest.iter().position(|b| *b == 0).unwrap();
            let user = rest[..user_end].to_vec();
            let rest = &rest[user_end + 1..];
            let n = usize::from(rest[0]);
            let auth = rest[1..1 + n].to_vec();
            let rest = &rest[1 + n..];
            let db_end = rest.iter().position(|b| *b == 0).unwrap();
            let rest = &rest[db_end + 1..];
            let plugin_end = rest.iter().position(|b| *b == 0).unwrap();
            (user, auth, rest[..plugin_end].to_vec())
        }

        fn expected_scramble(pass: &[u8]) -> Vec<u8> {
            let h1 = Sha256::digest(pass);
            let h2 = Sha256::digest(h1);
            let h3 = Sha256::digest([&h2[..], &NONCE[..]].concat());
            h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
        }

        const OK: [u8; 7] = [0, 0, 0, 2, 0, 0, 0];

        pub(super) const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsJuW+l+lQVhGaiRR75R/
z+XCY/thgHpLKXsThayxhZo+I4z6FNcvk8/fxoZGcXD9Ai0A0xHcUHUqSIIwNb3+
bbmGuhNUYYmSTGjU2lZY60om88KzktuRG2r3ORRpLBppOQG8EpJR0qVCCO4P0REf
x0CSUX46++jqDcaEqG6taRtr5Zv2ElHdse1GEsE60BkN7hrUpGzxHRiL1eM5m40E
dbLaTSv5oUrmyH0JQvGMuTyLR1JW5brgckCazO8irzWWZrvqZ3EpYAm3su5U9Xbq
jsznRsFTJcxVpQK1GERP2z68lMxfkNDxIuiIG8yvp1dE3qCrlLNGxs5qkmBnm8ST
8QIDAQAB
-----END PUBLIC KEY-----
";

        fn ping_then_quit(s: &mut TcpStream) {
            let (seq, ping) = recv(s);
            assert_eq!((seq, ping.as_slice()), (0, &[COM_PING][..]));
            send(s, 1, &OK);
            assert_eq!(recv(s), (0, vec![COM_QUIT]));
        }

        /// `key`: None = fast auth path; Some(pem) = full auth, the server sends `pem`.
        /// Returns the client's result and the last packet the server received.
        fn run(key: Option<Vec<u8>>) -> (Result<(), DbError>, Vec<u8>) {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                send(&mut s, 0, &handshake());
                let (seq, resp) = recv(&mut s);
                assert_eq!(seq, 1);
                let (user, auth, plugin) = parse_response(&resp);
                assert_eq!(user, b"alice");
                assert_eq!(plugin, b"caching_sha2_password");
                assert_eq!(auth, expected_scramble(b"pw"));
                if let Some(key) = key {
                    send(&mut s, 2, &[0x01, 0x04]);
                    let (seq, req) = recv(&mut s);
                    assert_eq!((seq, req.as_slice()), (3, &[0x02][..]));
                    send(&mut s, 4, &[&[0x01][..], &key].concat());
                    let mut buf = [0u8; 4];
                    // A refused key ends the exchange from the client side.
                    if s.peek(&mut buf).map_or(true, |n| n == 0) {
                        return Vec::new();
                    }
                    let (seq, encrypted) = recv(&mut s);
                    assert_eq!(seq, 5);
                    send(&mut s, 6, &OK);
                    ping_then_quit(&mut s);
                    return encrypted;
                }
                send(&mut s, 2, &[0x01, 0x03]);
                send(&mut s, 3, &OK);
                ping_then_quit(&mut s);
                resp
            });
            let url = DbUrl::parse(&format!("mysql://alice:pw@{addr}/db")).unwrap();
            let tcp = BlockingTcp(TcpStream::connect(addr).unwrap());
            let r = block_on(async {
                let mut c = MysqlConn::connect(tcp, &url, DbLimits::default()).await?;
                assert_eq!(c.connection_id(), 7);
                c.ping().await?;
                c.close().await.map(|_| ())
            });
            (r, server.join().unwrap())
        }

        /// Handshake offers caching_sha2_password, the account uses mysql_native_password:
        /// the server switches the client over (the usual MySQL 8 case).
        #[test]
        fn auth_switch_to_native_password() {
            use sha1::Sha1;
            let nonce2 = *b"ABCDEFGHIJKLMNOPQRST";
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                send(&mut s, 0, &handshake());
                let (seq, _) = recv(&mut s);
                assert_eq!(seq, 1);
                let mut switch = vec![0xFE];
                switch.extend_from_slice(b"mysql_native_password\0");
                switch.extend_from_slice(&nonce2);
                switch.push(0);
                send(&mut s, 2, &switch);
                let (seq, answer) = recv(&mut s);
                assert_eq!(seq, 3);
                let h1 = Sha1::digest(b"pw");
                let h2 = Sha1::digest(h1);
                let h3 = Sha1::digest([&nonce2[..], &h2[..]].concat());
                let expected: Vec<u8> = h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect();
                if answer == expected {
                    send(&mut s, 4, &OK);
                    ping_then_quit(&mut s);
                } else {
                    send(&mut s, 4, b"\xff\x15\x04#28000Access denied");
                }
            });
            let url = DbUrl::parse(&format!("mysql://alice:pw@{addr}/db")).unwrap();
            let tcp = BlockingTcp(TcpStream::connect(addr).unwrap());
            let r = block_on(async {
                let mut c = MysqlConn::connect(tcp, &url, DbLimits::default()).await?;
                c.ping().await?;
                c.close().await.map(|_| ())
            });
            server.join().unwrap();
            r.unwrap();
        }

        #[test]
        fn fast_auth_path() {
            let (r, _) = run(None);
            r.unwrap();
        }

        #[test]
        fn full_auth_over_plain_tcp_encrypts_with_the_server_key() {
            let (r, encrypted) = run(Some(PUBLIC_KEY.as_bytes().to_vec()));
            r.unwrap();
            // RSA-2048 ciphertext; its content is mysql_common's OAEP (not decrypted here).
            assert_eq!(encrypted.len(), 256);
            assert!(!encrypted.starts_with(b"pw"));
            // OAEP padding is random: a second handshake sends a different ciphertext. (A
            // search for the 2-byte password in 256 random bytes failed 0.4 % of runs.)
            let (r2, again) = run(Some(PUBLIC_KEY.as_bytes().to_vec()));
            r2.unwrap();
            assert_eq!(again.len(), 256);
            assert_ne!(encrypted, again);
        }

        #[test]
        fn hostile_server_keys_are_refused_without_panic() {
            let valid = PUBLIC_KEY.as_bytes();
            let body_start = valid.iter().position(|b| *b == b'\n').unwrap() + 1;
            let mut keys: Vec<Vec<u8>> = vec![
                b"garbage".to_vec(),
                b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----".to_vec(),
                b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----".to_vec(),
                b"-----BEGIN RSA PUBLIC KEY-----\nMAYCAQMCAQE=\n-----END RSA PUBLIC KEY-----"
                    .to_vec(),
            ];
            // Every truncation of the base64 body (on 4-character boundaries).
            for cut in (body_start + 4..valid.len() - 30).step_by(24) {
                let mut k = valid[..cut].to_vec();
                k.extend_from_slice(b"\n-----END PUBLIC KEY-----\n");
                keys.push(k);
            }
            for key in keys {
                let (r, _) = run(Some(key.clone()));
                assert!(
                    matches!(r, Err(DbError::Auth(_))),
                    "{} -> {r:?}",
                    String::from_utf8_lossy(&key)
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn row_decoders_never_panic(
            pkt in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            types in proptest::collection::vec(0usize..16, 0..6),
        ) {
            const TYPES: [ColumnType; 16] = [
                ColumnType::MYSQL_TYPE_TINY, ColumnType::MYSQL_TYPE_SHORT,
                ColumnType::MYSQL_TYPE_LONG, ColumnType::MYSQL_TYPE_LONGLONG,
                ColumnType::MYSQL_TYPE_FLOAT, ColumnType::MYSQL_TYPE_DOUBLE,
                ColumnType::MYSQL_TYPE_DATE, ColumnType::MYSQL_TYPE_DATETIME,
                ColumnType::MYSQL_TYPE_TIME, ColumnType::MYSQL_TYPE_YEAR,
                ColumnType::MYSQL_TYPE_VAR_STRING, ColumnType::MYSQL_TYPE_NULL,
                ColumnType::MYSQL_TYPE_NEWDECIMAL, ColumnType::MYSQL_TYPE_TIMESTAMP2,
                ColumnType::MYSQL_TYPE_INT24, ColumnType::MYSQL_TYPE_BLOB,
            ];
            let cols: Vec<ColMeta> = types
                .iter()
                .map(|t| meta(TYPES[*t], t % 2 == 0, (*t % 8) as u8))
                .collect();
            let _ = parse_text_row(&pkt, cols.len());
            let _ = parse_binary_row(&pkt, &cols);
        }

        #[test]
        fn server_key_check_never_panics(body in "[A-Za-z0-9+/=\n]{0,400}", pass_len in 0usize..300) {
            let pem = format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n");
            let _ = canonical_server_key(pem.as_bytes(), pass_len);
            let pem = format!("-----BEGIN RSA PUBLIC KEY-----\n{body}\n-----END RSA PUBLIC KEY-----\n");
            let _ = canonical_server_key(pem.as_bytes(), pass_len);
        }
    }

    /// DER of a valid 2048-bit SubjectPublicKeyInfo (the test key in `auth_flows`).
    fn valid_spki_der() -> Vec<u8> {
        use base64::Engine;
        let body: String = auth_flows::PUBLIC_KEY
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }

    proptest::proptest! {
        /// Whatever key passes the check, mysql_common can encrypt with it without panic.
        #[test]
        fn accepted_keys_are_safe_for_mysql_common(
            edits in proptest::collection::vec((0usize..300, proptest::num::u8::ANY), 0..4),
            cut in 0usize..300,
            pass_len in 0usize..260,
        ) {
            use base64::Engine;
            let mut der = valid_spki_der();
            for (at, byte) in edits {
                if let Some(b) = der.get_mut(at) {
                    *b = byte;
                }
            }
            der.truncate(cut.max(1));
            let pem = format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                base64::engine::general_purpose::STANDARD.encode(&der)
            );
            if let Ok(clean) = canonical_server_key(pem.as_bytes(), pass_len) {
                let pass = vec![b'p'; pass_len + 1];
                let _ = mysql_common::crypto::encrypt(&pass, &clean);
            }
        }
    }

    #[test]
    fn valid_key_is_accepted() {
        use base64::Engine;
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(valid_spki_der())
        );
        assert!(canonical_server_key(pem.as_bytes(), 10).is_ok());
        // 256-octet modulus: OAEP carries at most 214 octets (password + NUL).
        assert!(canonical_server_key(pem.as_bytes(), 213).is_ok());
        assert!(canonical_server_key(pem.as_bytes(), 214).is_err());
        let pass = vec![b'p'; 214];
        let clean = canonical_server_key(pem.as_bytes(), 213).unwrap();
        assert_eq!(
            mysql_common::crypto::encrypt(&pass, &clean).unwrap().len(),
            256
        );
    }

    #[test]
    fn eof_detection() {
        assert!(is_eof(&[0xFE, 0, 0, 0x08, 0]));
        assert!(
            eof_status(&[0xFE, 0, 0, 0x08, 0]).contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)
        );
        assert!(!is_eof(&[0xFE; 9]));
        assert!(!is_eof(&[0x00]));
    }
}
