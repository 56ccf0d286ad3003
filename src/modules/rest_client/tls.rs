//! TLS client for rest_client: a rustls [`ClientConnection`] driven over any
//! [`AsyncStream`], itself an [`AsyncStream`] ([`TlsStream`]).
//!
//! Owns: the client configuration built from the `ssl_verifypeer`, `ssl_verifyhost` and
//! `ssl_capath` module parameters ([`TlsOptions`] → [`TlsClient`]), and the record-layer
//! pumping between rustls and the inner stream (RFC 8446 / RFC 5246 via rustls). The
//! handshake runs inside [`TlsStream::connect`]; SNI and name verification use the URL
//! host (RFC 6066 §3; RFC 9110 §4.3.4). ALPN offers `http/1.1` (RFC 7301).
//!
//! Invariants: ciphertext is handed to rustls only while its plaintext buffer is empty,
//! so `read_tls` never hits rustls' back-pressure error; every byte rustls queues for
//! sending is written out before an async fn returns. A peer that closes TCP without
//! `close_notify` yields `UnexpectedEof` from `read` (a possible truncation).
//!
//! **Insecure options.** `ssl_verifypeer=0` installs [`AcceptAnyServerCert`], which
//! accepts any certificate chain from anyone (only the handshake signature is still
//! checked) — an active attacker can read and change all traffic. `ssl_verifyhost=0`
//! installs [`IgnoreServerName`], which checks the chain against the trusted roots but
//! accepts a certificate issued for any other name — any holder of a certificate from a
//! trusted CA can impersonate the server. Both exist because OpenSIPS' rest_client has
//! them; both log a warning when the configuration is built.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cores::AsyncStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use thiserror::Error;

use super::url::{Host, Url};

/// The TLS-related module parameters, as OpenSIPS names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// `ssl_verifypeer`: verify the server's certificate chain (default true).
    pub verify_peer: bool,
    /// `ssl_verifyhost`: verify that the certificate names the URL host (default true).
    pub verify_host: bool,
    /// `ssl_capath`: a PEM file or a directory of PEM files whose certificates are trusted
    /// in addition to the built-in (webpki-roots) set.
    pub ca_path: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            verify_peer: true,
            verify_host: true,
            ca_path: None,
        }
    }
}

/// Why a TLS client configuration could not be built (at start-up).
#[derive(Debug, Error)]
pub enum TlsConfigError {
    #[error("ssl_capath {path:?}: {source}")]
    CaPathRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("ssl_capath {path:?}: bad PEM: {detail}")]
    CaPathPem { path: PathBuf, detail: String },
    #[error("ssl_capath {path:?}: no usable CA certificate found")]
    CaPathEmpty { path: PathBuf },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS verifier: {0}")]
    Verifier(String),
}

/// Why a TLS connection failed.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("URL host {0:?} cannot be used as a TLS server name")]
    ServerName(String),
    #[error("TLS handshake with {host}: {source}")]
    Handshake {
        host: String,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS I/O with {host}: {source}")]
    Io {
        host: String,
        #[source]
        source: io::Error,
    },
}

/// A shareable, immutable client configuration (one per process, built at start-up).
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Builds the configuration. Reads `ca_path` from disk: call at start-up only.
    pub fn new(opts: &TlsOptions) -> Result<TlsClient, TlsConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &opts.ca_path {
            for cert in load_ca_path(path)? {
                roots.add(cert).map_err(|e| TlsConfigError::CaPathPem {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            }
        }
        let roots = Arc::new(roots);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mut config = if !opts.verify_peer {
            tracing::warn!(
                "rest_client: ssl_verifypeer=0: server certificates are NOT verified (insecure)"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert { provider }))
                .with_no_client_auth()
        } else {
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsConfigError::Verifier(e.to_string()))?;
            if !opts.verify_host {
                tracing::warn!(
                    "rest_client: ssl_verifyhost=0: certificate names are NOT verified (insecure)"
                );
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(IgnoreServerName { inner: webpki }))
                    .with_no_client_auth()
            } else {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// The underlying rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

/// Reads every certificate in a PEM file, or in every regular file of a directory
/// (files without certificates are skipped; a directory must yield at least one).
fn load_ca_path(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let read_err = |source| TlsConfigError::CaPathRead {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mut files = Vec::new();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            if entry.file_type().map_err(read_err)?.is_file()
                || std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
            {
                files.push(entry.path());
            }
        }
        files.sort();
    } else {
        files.push(path.to_owned());
    }
    let mut certs = Vec::new();
    for f in files {
        let data = std::fs::read(&f).map_err(|source| TlsConfigError::CaPathRead {
            path: f.clone(),
            source,
        })?;
        for item in CertificateDer::pem_slice_iter(&data) {
            match item {
                Ok(c) => certs.push(c),
                Err(e) => {
                    return Err(TlsConfigError::CaPathPem {
                        path: f.clone(),
                        detail: e.to_string(),
                    })
                }
            }
        }
    }
    if certs.is_empty() {
        return Err(TlsConfigError::CaPathEmpty {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The TLS server name (SNI + verification identity) of a URL host.
pub fn server_name(host: &Host) -> Result<ServerName<'static>, TlsError> {
    match host {
        Host::Domain(d) => {
            ServerName::try_from(d.clone()).map_err(|_| TlsError::ServerName(d.clone()))
        }
        Host::Ipv4(a) => Ok(ServerName::IpAddress(std::net::IpAddr::V4(*a).into())),
        Host::Ipv6(a) => Ok(ServerName::IpAddress(std::net::IpAddr::V6(*a).into())),
    }
}

/// **Insecure** (`ssl_verifypeer=0`): accepts any server certificate. Handshake
/// signatures are still verified with the provider's algorithms, so the peer must hold
/// the key of the certificate it sent — but nothing ties that certificate to anyone.
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// **Insecure** (`ssl_verifyhost=0`): full chain verification against the trusted
/// roots, but a certificate valid for another name is accepted.
#[derive(Debug)]
pub struct IgnoreServerName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for IgnoreServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain
        // itself was accepted.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Ciphertext read buffer: one maximal TLS record plus header and slack.
const TLS_READ_BUF: usize = 16 * 1024 + 2048;

/// A TLS client session over an inner stream.
pub struct TlsStream<S> {
    inner: S,
    conn: ClientConnection,
    /// Ciphertext read from `inner` and not yet handed to rustls: `rbuf[rpos..rend]`.
    rbuf: Box<[u8]>,
    rpos: usize,
    rend: usize,
    /// The inner stream reported end of file.
    inner_eof: bool,
    /// Ciphertext rustls produced, waiting to be written.
    wbuf: Vec<u8>,
}

impl<S: AsyncStream> TlsStream<S> {
    /// Runs the client handshake for `host` over `inner` (already connected).
    pub async fn connect(inner: S, client: &TlsClient, host: &Host) -> Result<Self, TlsError> {
        let name = server_name(host)?;
        let host_text = host.to_string();
        let conn = ClientConnection::new(client.config.clone(), name).map_err(|source| {
            TlsError::Handshake {
                host: host_text.clone(),
                source,
            }
        })?;
        let mut s = TlsStream {
            inner,
            conn,
            rbuf: vec![0u8; TLS_READ_BUF].into_boxed_slice(),
            rpos: 0,
            rend: 0,
            inner_eof: false,
            wbuf: Vec::new(),
        };
        let io_err = |source| TlsError::Io {
            host: host_text.clone(),
            source,
        };
        while s.conn.is_handshaking() {
            s.flush_tls().await.map_err(io_err)?;
            if !s.conn.is_handshaking() {
                break;
            }
            if !s.conn.wants_read() {
                // rustls always waits for the peer here once its output is flushed.
                return Err(io_err(io::Error::other("TLS handshake stalled")));
            }
            {
                match s.pull_tls().await {
                    Ok(()) => {}
                    Err(PullError::Tls(source)) => {
                        // Tell the server why (alert queued by rustls), best effort.
                        let _ = s.flush_tls().await;
                        return Err(TlsError::Handshake {
                            host: host_text,
                            source,
                        });
                    }
                    Err(PullError::Io(e)) => return Err(io_err(e)),
                }
                if s.inner_eof && s.conn.is_handshaking() {
                    return Err(io_err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection during the TLS handshake",
                    )));
                }
            }
        }
        s.flush_tls().await.map_err(io_err)?;
        Ok(s)
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Sends `close_notify` (RFC 8446 §6.1). The stream must not be used afterwards.
    pub async fn close_notify(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush_tls().await
    }

    /// Writes out everything rustls has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.wbuf.clear();
            self.conn.write_tls(&mut self.wbuf)?;
            if self.wbuf.is_empty() {
                break;
            }
            self.inner.write_all(&self.wbuf).await?;
        }
        Ok(())
    }

    /// Hands buffered ciphertext to rustls, reading more from `inner` if none is
    /// buffered, and processes it. Only called with rustls' plaintext buffer empty.
    async fn pull_tls(&mut self) -> Result<(), PullError> {
        if self.rpos == self.rend && !self.inner_eof {
            let n = self
                .inner
                .read(&mut self.rbuf)
                .await
                .map_err(PullError::Io)?;
            self.rpos = 0;
            self.rend = n;
            if n == 0 {
                self.inner_eof = true;
            }
        }
        if self.rpos < self.rend {
            let mut pending = self.rbuf.get(self.rpos..self.rend).unwrap_or(&[]);
            let before = pending.len();
            self.conn.read_tls(&mut pending).map_err(PullError::Io)?;
            self.rpos += before - pending.len();
        } else {
            // Tell rustls about end of file.
            self.conn
                .read_tls(&mut io::empty())
                .map_err(PullError::Io)?;
        }
        self.conn.process_new_packets().map_err(PullError::Tls)?;
        Ok(())
    }
}

enum PullError {
    Io(io::Error),
    Tls(rustls::Error),
}

impl From<PullError> for io::Error {
    fn from(e: PullError) -> io::Error {
        match e {
            PullError::Io(e) => e,
            PullError::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

impl<S: AsyncStream> AsyncStream for TlsStream<S> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.conn.reader().read(buf) {
                // Ok(0): the peer sent close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // UnexpectedEof: TCP closed without close_notify.
                Err(e) => return Err(e),
            }
            let pulled = self.pull_tls().await;
            // Alerts or post-handshake messages (key update) may need sending.
            let flushed = self.flush_tls().await;
            pulled?;
            flushed?;
        }
    }

    async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.conn.writer().write(buf)?;
            self.flush_tls().await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS session accepts no more data",
                ));
            }
            buf = buf.get(n..).unwrap_or(&[]);
        }
        Ok(())
    }
}

/// A connection to an `http` or `https` URL's server.
pub enum HttpStream<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
}

impl<S: AsyncStream> HttpStream<S> {
    /// Wraps a connected `inner` stream for `url`: runs the TLS handshake for `https`.
    pub async fn open(inner: S, url: &Url, tls: &TlsClient) -> Result<Self, TlsError> {
        if url.is_tls() {
            Ok(HttpStream::Tls(Box::new(
                TlsStream::connect(inner, tls, &url.host).await?,
            )))
        } else {
            Ok(HttpStream::Plain(inner))
        }
    }
}

impl<S: AsyncStream> AsyncStream for HttpStream<S> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            HttpStream::Plain(s) => s.read(buf).await,
            HttpStream::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            HttpStream::Plain(s) => s.write_all(buf).await,
            HttpStream::Tls(s) => s.write_all(buf).await,
        }
    }
}
