//! HTTPS for the status page (`http.tls_cert_file`, `http.tls_key_file`), through rustls.
//!
//! [`Identity`] is a certificate chain and its key, parsed and matched when the
//! configuration loads (so `check` judges them and a reload with a broken pair keeps the
//! running one). [`server_config`] asks a closure for the identity at every handshake:
//! the HTTP layer hands it the running configuration's, so a certificate renewed on disk
//! is served after SIGHUP without a restart. [`TlsListener`] completes handshakes on their
//! own tasks, with a deadline, so one slow or silent client never holds up the others.
//! Nothing here may print a key.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// A handshake not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at most; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// A certificate chain and the private key that matches its first certificate.
#[derive(Clone)]
pub struct Identity(Arc<CertifiedKey>);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({} certificates, key ***)", self.0.cert.len())
    }
}

impl Identity {
    /// Parses PEM text: the chain (leaf first), and one private key (PKCS#8, PKCS#1 or
    /// SEC1). `Err` says which file is wrong and how, never its contents.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Identity, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls_cert_file: not PEM certificates ({e})"))?;
        if chain.is_empty() {
            return Err("tls_cert_file: no certificate in it (PEM, leaf first)".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| "tls_key_file: no PEM private key in it".to_string())?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "tls_key_file: the key does not match tls_cert_file's first certificate".to_string()
            }
            other => format!("tls_key_file / tls_cert_file: {other}"),
        })?;
        Ok(Identity(Arc::new(certified)))
    }

    /// The first certificate, as served (DER).
    pub fn leaf(&self) -> &[u8] {
        self.0.cert.first().map_or(&[], |c| c.as_ref())
    }
}

/// Asks for the identity in force at each handshake.
struct Current(Box<dyn Fn() -> Option<Identity> + Send + Sync>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Current")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        (self.0)().map(|i| i.0)
    }
}

/// A rustls server configuration that serves whatever `current` returns at each
/// handshake (HTTP/1.1 only, as the server speaks).
pub fn server_config(
    current: impl Fn() -> Option<Identity> + Send + Sync + 'static,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(Current(Box::new(current))));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and hands out those whose TLS handshake completed.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as axum does.
                        tracing::debug!("HTTPS accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(client = %peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The acceptor ended (it never does while the listener lives): serve nothing.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
