//! A small Kafka client for the source cluster of a topic link: one TCP connection (TLS when
//! the source asks for SSL or SASL_SSL), SASL/PLAIN or SASL/SCRAM when it asks for SASL,
//! requests encoded with kafka-protocol at versions negotiated through ApiVersions, so record
//! batches arrive as the source stored them (no client library decodes and re-encodes them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::security::sasl::SaslMechanism;
use crate::security::scram::ScramClient;

/// Largest response accepted from a source (a Fetch answers at most its max_bytes).
const MAX_RESPONSE: usize = 256 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to the source, as shown in link status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

fn err(message: impl std::fmt::Display) -> SourceError {
    SourceError(message.to_string())
}

/// How to reach a source cluster securely: TLS, and SASL credentials.
pub struct SourceSecurity {
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<(SaslMechanism, String, String)>,
}

impl std::fmt::Debug for SourceSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No password in logs.
        f.debug_struct("SourceSecurity")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|(m, user, _)| (m.name(), user)))
            .finish()
    }
}

impl SourceSecurity {
    /// Plaintext, no authentication.
    pub fn plaintext() -> Arc<Self> {
        Arc::new(SourceSecurity { tls: None, sasl: None })
    }

    /// From a link's source settings (already validated by `LinkSpec::validate`).
    pub fn of(source: &super::LinkSource) -> Result<Arc<Self>, SourceError> {
        let protocol = source.security_protocol.as_str();
        let tls = if matches!(protocol, "SSL" | "SASL_SSL") {
            let config = automq_common::tls::client_config(source.ca_pem.as_deref().map(str::as_bytes))
                .map_err(|e| err(format!("source TLS: {e}")))?;
            Some(config)
        } else {
            None
        };
        let sasl = if matches!(protocol, "SASL_PLAINTEXT" | "SASL_SSL") {
            let mechanism = source.sasl_mechanism.as_deref().and_then(SaslMechanism::parse).ok_or_else(|| {
                err(format!("unsupported SASL mechanism {:?}", source.sasl_mechanism.as_deref().unwrap_or("")))
            })?;
            let user = source.username.clone().ok_or_else(|| err("source.username is missing"))?;
            let password = source.password.clone().ok_or_else(|| err("source.password is missing"))?;
            Some((mechanism, user, password))
        } else {
            None
        };
        Ok(Arc::new(SourceSecurity { tls, sasl }))
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Io for T {}

/// One connection to one source broker.
pub struct SourceConnection {
    address: String,
    stream: Box<dyn Io>,
    security: Arc<SourceSecurity>,
    correlation_id: i32,
    client_id: StrBytes,
    /// Version range the source supports, by API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl std::fmt::Debug for SourceConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConnection").field("address", &self.address).field("security", &self.security).finish()
    }
}

impl SourceConnection {
    /// Connects (TLS and SASL as `security` says) and negotiates API versions (ApiVersions v0,
    /// which every broker answers).
    pub async fn connect(address: &str, client_id: &str, security: &Arc<SourceSecurity>) -> Result<Self, SourceError> {
        let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(address))
            .await
            .map_err(|_| err(format!("connecting to {address} timed out")))?
            .map_err(|e| err(format!("cannot connect to {address}: {e}")))?;
        tcp.set_nodelay(true).ok();
        let stream: Box<dyn Io> = match &security.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = address.rsplit_once(':').map_or(address, |(h, _)| h).trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|_| err(format!("{host:?} is not a valid TLS server name")))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
                    .await
                    .map_err(|_| err(format!("TLS handshake with {address} timed out")))?
                    .map_err(|e| err(format!("TLS handshake with {address} failed: {e}")))?;
                Box::new(tls)
            }
        };
        let mut conn = SourceConnection {
            address: address.to_string(),
            stream,
            security: security.clone(),
            correlation_id: 0,
            client_id: StrBytes::from_string(client_id.to_string()),
            versions: HashMap::new(),
        };
        let response: ApiVersionsResponse = conn.call_at(&ApiVersionsRequest::default(), 0).await?;
        if response.error_code != 0 {
            return Err(err(format!("{address} refused ApiVersions (error {})", response.error_code)));
        }
        conn.versions = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        if let Some((mechanism, user, password)) = &security.sasl {
            conn.authenticate(*mechanism, user, password).await?;
        }
        Ok(conn)
    }

    /// Another broker of the same cluster, reached the same way.
    pub async fn sibling(&self, address: &str) -> Result<Self, SourceError> {
        SourceConnection::connect(address, self.client_id.as_str(), &self.security).await
    }

    /// SaslHandshake, then the mechanism's exchange in SaslAuthenticate requests.
    async fn authenticate(&mut self, mechanism: SaslMechanism, user: &str, password: &str) -> Result<(), SourceError> {
        let name = mechanism.name();
        let (handshake, _) =
            self.call(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(name)), 1).await?;
        if handshake.error_code != 0 {
            let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(err(format!(
                "{} does not offer SASL mechanism {name} (it offers {})",
                self.address,
                offered.join(", ")
            )));
        }
        let address = self.address.clone();
        let refused = |r: &kafka_protocol::messages::SaslAuthenticateResponse| {
            err(format!(
                "{address} refused the login of {user:?}: {}",
                r.error_message.as_ref().map_or("authentication failed", |m| m.as_str())
            ))
        };
        match mechanism {
            SaslMechanism::Plain => {
                let token = format!("\0{user}\0{password}");
                let (r, _) = self
                    .call(&SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes())), 2)
                    .await?;
                if r.error_code != 0 {
                    return Err(refused(&r));
                }
            }
            SaslMechanism::Scram(m) => {
                let mut scram = ScramClient::new(m, user, password);
                let first = Bytes::from(scram.first().into_bytes());
                let (r, _) = self.call(&SaslAuthenticateRequest::default().with_auth_bytes(first), 2).await?;
                if r.error_code != 0 {
                    return Err(refused(&r));
                }
                let server_first = String::from_utf8_lossy(&r.auth_bytes).to_string();
                let last = scram.last(&server_first).map_err(|e| err(format!("SCRAM with {}: {e}", self.address)))?;
                let (r, _) = self
                    .call(&SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(last.into_bytes())), 2)
                    .await?;
                if r.error_code != 0 {
                    return Err(refused(&r));
                }
                scram
                    .verify(&String::from_utf8_lossy(&r.auth_bytes))
                    .map_err(|e| err(format!("SCRAM with {}: {e}", self.address)))?;
            }
        }
        Ok(())
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The highest version of `R` both sides support, at most `cap`.
    pub fn version<R: Request>(&self, cap: i16) -> Result<i16, SourceError> {
        let (min, max) = self
            .versions
            .get(&R::KEY)
            .copied()
            .ok_or_else(|| err(format!("{} does not support API key {}", self.address, R::KEY)))?;
        let version = max.min(cap).min(R::VERSIONS.max);
        if version < min.max(R::VERSIONS.min) {
            return Err(err(format!("{} supports API key {} only at versions {min}-{max}", self.address, R::KEY)));
        }
        Ok(version)
    }

    /// Sends `request` at the best version up to `cap` and returns the response with the
    /// version used.
    pub async fn call<R: Request>(&mut self, request: &R, cap: i16) -> Result<(R::Response, i16), SourceError> {
        let version = self.version::<R>(cap)?;
        Ok((self.call_at(request, version).await?, version))
    }

    async fn call_at<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, SourceError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).map_err(|e| err(format!("encoding a request: {e}")))?;
        request.encode(&mut body, version).map_err(|e| err(format!("encoding a request: {e}")))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(body.len() as u32);
        frame.extend_from_slice(&body);
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let size = self.stream.read_u32().await? as usize;
            if size > MAX_RESPONSE {
                return Err(std::io::Error::other(format!(
                    "a {size}-byte response exceeds the {MAX_RESPONSE}-byte limit"
                )));
            }
            let mut buf = vec![0u8; size];
            self.stream.read_exact(&mut buf).await?;
            Ok(Bytes::from(buf))
        };
        let mut buf = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| err(format!("{} did not answer within {TIMEOUT:?}", self.address)))?
            .map_err(|e| err(format!("connection to {} failed: {e}", self.address)))?;
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| err(format!("undecodable response header from {}: {e}", self.address)))?;
        if header.correlation_id != self.correlation_id {
            return Err(err(format!(
                "{} answered correlation id {} to request {}",
                self.address, header.correlation_id, self.correlation_id
            )));
        }
        let response = R::Response::decode(&mut buf, version)
            .map_err(|e| err(format!("undecodable response from {}: {e}", self.address)))?;
        if buf.has_remaining() {
            tracing::debug!(left = buf.remaining(), "trailing bytes after a source response");
        }
        Ok(response)
    }
}
