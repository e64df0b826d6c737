//! A small Kafka client for the source cluster of a topic link: one TCP connection, requests
//! encoded with kafka-protocol at versions negotiated through ApiVersions, so record batches
//! arrive as the source stored them (no client library decodes and re-encodes them).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// One connection to one source broker.
#[derive(Debug)]
pub struct SourceConnection {
    address: String,
    stream: TcpStream,
    correlation_id: i32,
    client_id: StrBytes,
    /// Version range the source supports, by API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl SourceConnection {
    /// Connects and negotiates API versions (ApiVersions v0, which every broker answers).
    pub async fn connect(address: &str, client_id: &str) -> Result<Self, SourceError> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(address))
            .await
            .map_err(|_| err(format!("connecting to {address} timed out")))?
            .map_err(|e| err(format!("cannot connect to {address}: {e}")))?;
        stream.set_nodelay(true).ok();
        let mut conn = SourceConnection {
            address: address.to_string(),
            stream,
            correlation_id: 0,
            client_id: StrBytes::from_string(client_id.to_string()),
            versions: HashMap::new(),
        };
        let response: ApiVersionsResponse = conn.call_at(&ApiVersionsRequest::default(), 0).await?;
        if response.error_code != 0 {
            return Err(err(format!("{address} refused ApiVersions (error {})", response.error_code)));
        }
        conn.versions = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(conn)
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
