//! The Kafka listener: framing, request decoding, in-order responses.
//!
//! Requests of one connection are handled in order, as Kafka does, so a client sees the
//! effects of its requests in the order it sent them. A handler may hand back a *pending*
//! reply (a produce waiting for durability): the connection then goes on to the next request
//! while a writer task sends replies strictly in request order. This pipelines produce
//! requests on one connection without reordering them.
//!
//! Hostile input: a frame size below 0 or above `max_request_bytes`, an unknown API key, an
//! unsupported version (other than of ApiVersions) or an undecodable body closes the
//! connection, as Kafka does; nothing a client sends can crash the broker (decoding runs
//! under `catch_unwind`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::broker::Broker;
use crate::handlers::{self, Reply};
use crate::security::listener::Listener;
use crate::security::sasl::{SaslSession, Step};

/// Replies queued per connection before the reader stops taking requests.
const MAX_IN_FLIGHT: usize = 64;

/// Why a frame could not be handled (the connection is closed).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {0} is outside 0..={1}")]
    Size(i32, usize),
    #[error("frame of {0} bytes is too short for a request header")]
    Short(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{0:?} version {1} is not supported")]
    UnsupportedVersion(ApiKey, i16),
    #[error("cannot decode {0:?} v{1}: {2}")]
    Malformed(ApiKey, i16, String),
}

/// A decoded request with what its response needs.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
    /// The client's address (set by the connection).
    pub peer: Option<SocketAddr>,
    /// The authenticated user (SASL), if any; ACLs see `User:{principal}`, or `User:ANONYMOUS`.
    pub principal: Option<String>,
    /// The listener the request came in through (set by the connection).
    pub listener: Option<Arc<Listener>>,
}

/// Decodes one frame body (without its size prefix).
pub fn decode_request(frame: Bytes) -> Result<Request, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Short(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(key).map_err(|_| FrameError::UnknownApiKey(key))?;
    let supported = handlers::supported_versions(api_key);
    let in_range = supported.is_some_and(|(min, max)| (min..=max).contains(&version));
    if !in_range && api_key != ApiKey::ApiVersions {
        return Err(FrameError::UnsupportedVersion(api_key, version));
    }
    // An ApiVersions request of a version we do not know is answered (with an error and our
    // versions, in v0) from its header alone, as Kafka does.
    let decode_version = if in_range { version } else { 0 };
    let decoded = std::panic::catch_unwind(move || {
        let mut buf = frame;
        let header = RequestHeader::decode(&mut buf, api_key.request_header_version(decode_version))?;
        let body = RequestKind::decode(api_key, &mut buf, decode_version)?;
        Ok::<_, anyhow::Error>((header, body))
    });
    match decoded {
        Ok(Ok((mut header, body))) => {
            header.request_api_version = version;
            Ok(Request { header, api_key, body, peer: None, principal: None, listener: None })
        }
        Ok(Err(e)) => Err(FrameError::Malformed(api_key, version, e.to_string())),
        Err(_) => Err(FrameError::Malformed(api_key, version, "decoder panicked".into())),
    }
}

/// Encodes a response frame (size prefix, header, body).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header.encode(&mut buf, api_key.response_header_version(version))?;
    body.encode(&mut buf, version)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Accepts connections on one Kafka listener until `shutdown` fires.
pub async fn serve(
    socket: TcpListener,
    listener: Arc<Listener>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(accept(stream, peer, listener.clone(), broker.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs one connection, after the TLS handshake when the listener has TLS.
async fn accept(stream: TcpStream, peer: SocketAddr, listener: Arc<Listener>, broker: Arc<Broker>) {
    let Some(tls) = &listener.tls else {
        return connection(stream, peer, listener, broker).await;
    };
    let handshake = tls.acceptor().accept(stream);
    match tokio::time::timeout(std::time::Duration::from_secs(10), handshake).await {
        Ok(Ok(stream)) => connection(stream, peer, listener.clone(), broker).await,
        Ok(Err(e)) => {
            broker.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            broker.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
}

struct ConnectionGauge(Arc<Broker>);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.metrics.connections.dec();
    }
}

/// One queued reply: where it goes and what it is.
struct Queued {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    reply: Reply,
}

#[tracing::instrument(skip_all, fields(peer = %peer, listener = %listener.name))]
async fn connection<S>(stream: S, peer: SocketAddr, listener: Arc<Listener>, broker: Arc<Broker>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    broker.metrics.connections.inc();
    let _gauge = ConnectionGauge(broker.clone());
    let (mut reader, writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Queued>(MAX_IN_FLIGHT);
    let writer_broker = broker.clone();
    let writer_task = tokio::spawn(async move {
        let mut out = BufWriter::with_capacity(64 << 10, writer);
        while let Some(q) = rx.recv().await {
            let body = match q.reply {
                Reply::Now(body) => body,
                Reply::Later(fut) => fut.await,
            };
            let Some(body) = body else { continue }; // acks=0: no response
            match encode_response(q.api_key, q.version, q.correlation_id, &body) {
                Ok(frame) => {
                    if out.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(api = ?q.api_key, version = q.version, error = %e, "cannot encode response; closing the connection");
                    return;
                }
            }
            if rx.is_empty() && out.flush().await.is_err() {
                return;
            }
        }
        let _ = out.flush().await;
        drop(writer_broker);
    });
    let max = broker.config.max_request_bytes;
    let idle = std::time::Duration::from_millis(broker.config.connections_max_idle_ms.max(1));
    // With SASL, nothing but ApiVersions and the exchange itself until authenticated.
    let mut sasl = (!listener.sasl.is_empty()).then(SaslSession::default);
    // Until the client closes, a read fails, or the connection idles past the limit.
    while let Ok(Ok(size)) = tokio::time::timeout(idle, reader.read_i32()).await {
        if size < 0 || size as usize > max {
            broker.metrics.rejected_frames.inc();
            tracing::warn!(size, max, "frame size out of range; closing the connection");
            break;
        }
        let mut frame = vec![0u8; size as usize];
        if !matches!(tokio::time::timeout(idle, reader.read_exact(&mut frame)).await, Ok(Ok(_))) {
            tracing::debug!(size, "connection closed or stalled mid-frame");
            break;
        }
        let mut request = match decode_request(Bytes::from(frame)) {
            Ok(r) => r,
            Err(e) => {
                broker.metrics.rejected_frames.inc();
                tracing::warn!(error = %e, "bad request; closing the connection");
                break;
            }
        };
        request.peer = Some(peer);
        request.listener = Some(listener.clone());
        let (api_key, mut version, correlation_id) =
            (request.api_key, request.header.request_api_version, request.header.correlation_id);
        if api_key == ApiKey::ApiVersions
            && !handlers::supported_versions(api_key).is_some_and(|(lo, hi)| (lo..=hi).contains(&version))
        {
            // The UNSUPPORTED_VERSION answer goes out in v0, which every client reads.
            version = 0;
        }
        if let Some(session) = sasl.as_mut().filter(|s| s.principal().is_none()) {
            let (reply, close) = match request.body {
                RequestKind::ApiVersions(_) => (handlers::dispatch(&broker, request).await, false),
                RequestKind::SaslHandshake(r) => {
                    let response = session.handshake(&listener.sasl, &r);
                    let failed = response.error_code != 0;
                    (Reply::Now(Some(ResponseKind::SaslHandshake(response))), failed)
                }
                RequestKind::SaslAuthenticate(r) => {
                    let (response, step) = session.authenticate(&broker, Some(peer.ip()), &r).await;
                    (Reply::Now(Some(ResponseKind::SaslAuthenticate(response))), step == Step::Failed)
                }
                _ => {
                    broker.metrics.authentication("none", false);
                    tracing::warn!(api = ?api_key, "request before authentication; closing the connection");
                    break;
                }
            };
            if tx.send(Queued { api_key, version, correlation_id, reply }).await.is_err() || close {
                break;
            }
            continue;
        }
        request.principal = sasl.as_ref().and_then(|s| s.principal().map(str::to_string));
        let reply = handlers::dispatch(&broker, request).await;
        if tx.send(Queued { api_key, version, correlation_id, reply }).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer_task.await;
}
