//! The email channel: lettre over SMTP on tokio, TLS through rustls.
//!
//! The subject names the count, the tier and the instance; the body is the plain text of
//! `text`, with `MIME-Version: 1.0` beside its Content-Type and Content-Transfer-Encoding
//! (RFC 2045). WhatsApp-sourced strings never reach a header: the subject is built from
//! counts and the configured instance name only, and is flattened to one line anyway.
//! A refusal that cannot change by retrying (a 5xx, or a client-side one such as a
//! non-ASCII address to a relay without SMTPUTF8) is permanent: the notification is dead
//! at once instead of retried for a day.

use super::{ChannelType, Context, SendError, Sender, Setup, text};
use crate::alert::{AlertDoc, Shape};
use crate::secret::{Redactor, Secret};
use lettre::message::{Mailbox, header::ContentType, header::MIME_VERSION_1_0};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `type = "email"`: the table's keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    tls: Option<TlsMode>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    from: Option<String>,
    to: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
    helo_name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: TlsMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    /// Extra roots to trust (PEM), for a relay with a private CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The name said in EHLO. Default: the host's fully qualified name, or, without
    /// one, the address literal of the interface that reaches the server (strict relays,
    /// such as Postfix with `reject_non_fqdn_helo_hostname`, refuse a bare `vm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helo_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Starttls,
    Tls,
    None,
}

impl ChannelType for Settings {
    const NAME: &'static str = "email";
    const SHAPE: Shape = Shape::Digest;
    type Keys = Keys;
    type Sender = Email;

    fn new(keys: Keys, setup: &mut Setup) -> Result<Self, String> {
        let table = setup.table().to_string();
        let tls = keys.tls.unwrap_or(TlsMode::Starttls);
        let smtp_host = keys
            .smtp_host
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| format!("{table}: smtp_host is required"))?;
        let from = keys
            .from
            .ok_or_else(|| format!("{table}: from is required"))?;
        from.parse::<Mailbox>()
            .map_err(|e| format!("{table}.from: \"{from}\" is not an address: {e}"))?;
        let to = keys.to.unwrap_or_default();
        if to.is_empty() {
            return Err(format!("{table}: to needs at least one address"));
        }
        for addr in &to {
            addr.parse::<Mailbox>()
                .map_err(|e| format!("{table}.to: \"{addr}\" is not an address: {e}"))?;
        }
        let password = setup.secret("password", keys.password, keys.password_file)?;
        if password.is_some() && keys.username.is_none() {
            return Err(format!("{table}: a password needs a username"));
        }
        if keys.username.is_some() && password.is_none() {
            return Err(format!(
                "{table}: username is set; set password or password_file too"
            ));
        }
        let ca_file = keys.ca_file.map(|p| setup.path(p));
        if let Some(name) = &keys.helo_name {
            let literal = name.starts_with('[') && name.ends_with(']');
            let domain = !name.is_empty()
                && name.len() <= 255
                && name.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !(literal || domain) {
                return Err(format!(
                    "{table}.helo_name: \"{name}\" is not a host name like sla.example.com"
                ));
            }
        }
        Ok(Settings {
            smtp_host,
            smtp_port: keys.smtp_port.unwrap_or(match tls {
                TlsMode::Starttls => 587,
                TlsMode::Tls => 465,
                TlsMode::None => 25,
            }),
            tls,
            username: keys.username,
            password,
            from,
            to,
            ca_file,
            helo_name: keys.helo_name,
        })
    }

    fn secrets(&self) -> Vec<&Secret> {
        self.password.iter().collect()
    }

    fn sender(&self, context: &Context) -> Result<Email, String> {
        Email::new(self, context.timeout, context.redactor.clone())
    }
}

pub struct Email {
    /// With a known EHLO name (`helo_name` or the host's fully qualified name).
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    /// Without one: a transport is built per send, saying the address literal of the
    /// interface that reaches the server (RFC 5321 section 4.1.4).
    builder: AsyncSmtpTransportBuilder,
    host: String,
    port: u16,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// Scrubs the SMTP password out of server answers and errors.
    redactor: Redactor,
}

impl Email {
    pub fn new(config: &Settings, timeout: Duration, redactor: Redactor) -> Result<Email, String> {
        let mut tls_params = TlsParameters::builder(config.smtp_host.clone());
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("ca_file {} is not a PEM certificate: {e}", ca.display()))?;
            tls_params = tls_params.add_root_certificate(cert);
        }
        let tls = match config.tls {
            TlsMode::None => Tls::None,
            mode => {
                let params = tls_params
                    .build_rustls()
                    .map_err(|e| format!("cannot set up TLS for {}: {e}", config.smtp_host))?;
                if mode == TlsMode::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.smtp_host.clone())
                .port(config.smtp_port)
                .tls(tls)
                .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        let from = config
            .from
            .parse()
            .map_err(|e| format!("from \"{}\" is not an address: {e}", config.from))?;
        let to = config
            .to
            .iter()
            .map(|t| {
                t.parse()
                    .map_err(|e| format!("to \"{t}\" is not an address: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let hello = config
            .helo_name
            .as_deref()
            .map(client_id)
            .or_else(|| crate::host::fully_qualified_name().map(ClientId::Domain));
        let transport = hello.map(|h| builder.clone().hello_name(h).build());
        Ok(Email {
            transport,
            builder,
            host: config.smtp_host.clone(),
            port: config.smtp_port,
            from,
            to,
            redactor,
        })
    }

    /// Builds the message for a document (public for tests of the rendering).
    pub fn message(&self, doc: &AlertDoc) -> Result<Message, SendError> {
        let (summary, body) = text::render(doc);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(format!("[inbox-sla] {summary}"))
            .date_now()
            .message_id(None)
            .user_agent(concat!("inbox-sla/", env!("CARGO_PKG_VERSION")).to_string());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let footer = "\n-- \nSent by inbox-sla. Mute a chat with: inbox-sla mute <JID> --for 4h\n";
        builder
            .header(MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .body(format!("{summary}\n\n{body}{footer}"))
            .map_err(|e| SendError::Permanent(format!("cannot build the email: {e}")))
    }
}

impl Sender for Email {
    async fn send(&self, doc: &AlertDoc) -> Result<String, SendError> {
        let message = self.message(doc)?;
        let built;
        let transport = match &self.transport {
            Some(t) => t,
            None => {
                let hello = local_address_toward(&self.host, self.port)
                    .await
                    .map_or_else(ClientId::default, |ip| match ip {
                        IpAddr::V4(a) => ClientId::Ipv4(a),
                        IpAddr::V6(a) => ClientId::Ipv6(a),
                    });
                built = self.builder.clone().hello_name(hello).build();
                &built
            }
        };
        match transport.send(message).await {
            Ok(response) => Ok(self.redactor.redact(&format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            ))),
            Err(e) => {
                let reason = self.redactor.redact(&describe(&e));
                if e.is_permanent() {
                    Err(SendError::Permanent(format!(
                        "the SMTP server refused: {reason}"
                    )))
                } else if e.is_client() {
                    Err(SendError::Permanent(format!(
                        "cannot send through this SMTP server: {reason}"
                    )))
                } else {
                    Err(SendError::Retry {
                        reason: format!("SMTP: {reason}"),
                        retry_after: None,
                    })
                }
            }
        }
    }
}

/// `helo_name` as written: a name, or an address literal such as `[192.0.2.1]`.
fn client_id(name: &str) -> ClientId {
    let literal = name.strip_prefix('[').and_then(|n| n.strip_suffix(']'));
    match literal.map(|l| l.trim_start_matches("IPv6:").parse::<IpAddr>()) {
        Some(Ok(IpAddr::V4(a))) => ClientId::Ipv4(a),
        Some(Ok(IpAddr::V6(a))) => ClientId::Ipv6(a),
        _ => ClientId::Domain(name.to_string()),
    }
}

/// The local address this host would use to reach the SMTP server (a UDP "connect" sends
/// nothing; it only picks the route).
async fn local_address_toward(host: &str, port: u16) -> Option<IpAddr> {
    let server = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let any: std::net::SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(server).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

fn describe(e: &lettre::transport::smtp::Error) -> String {
    crate::with_causes(e.to_string(), e)
}
