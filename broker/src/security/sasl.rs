//! SASL on a Kafka connection (KIP-43 framing: SaslHandshake v1, then SaslAuthenticate): PLAIN
//! and SCRAM-SHA-256/512 against the cluster's SCRAM credentials. Until a connection has
//! authenticated it may send only ApiVersions, SaslHandshake and SaslAuthenticate; anything
//! else closes it, as Kafka does.
//!
//! A failed authentication answers SASL_AUTHENTICATION_FAILED with the same message whether or
//! not the user exists, is logged (peer and mechanism, not the user name: clients sometimes put
//! a password there) and counted, and is delayed, more for each failure in a row from the same
//! address (100 ms doubling up to 5 s), then the connection closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use super::credentials;
use super::scram::{Mechanism, ScramServer};
use crate::broker::Broker;

/// Kafka's message for every failed authentication.
const FAILED: &str = "Authentication failed: Invalid username or password";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            other => Mechanism::from_name(other).map(SaslMechanism::Scram),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }
}

/// What an authenticate step led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// More messages to exchange.
    Continue,
    /// The connection is `user`'s from now on.
    Authenticated(String),
    /// Answer, then close the connection.
    Failed,
}

/// One connection's authentication.
#[derive(Debug, Default)]
pub struct SaslSession {
    mechanism: Option<SaslMechanism>,
    scram: Option<ScramServer>,
    principal: Option<String>,
}

impl SaslSession {
    /// The authenticated user.
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    pub fn handshake(&mut self, enabled: &[SaslMechanism], r: &SaslHandshakeRequest) -> SaslHandshakeResponse {
        let names: Vec<StrBytes> = enabled.iter().map(|m| StrBytes::from_static_str(m.name())).collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(names);
        if self.mechanism.is_some() || self.principal.is_some() {
            return response.with_error_code(ResponseError::IllegalSaslState.code());
        }
        match SaslMechanism::parse(r.mechanism.as_str()).filter(|m| enabled.contains(m)) {
            Some(m) => {
                self.mechanism = Some(m);
                if let SaslMechanism::Scram(s) = m {
                    self.scram = Some(ScramServer::new(s));
                }
                response
            }
            None => response.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
        }
    }

    /// One SaslAuthenticate request.
    pub async fn authenticate(
        &mut self,
        broker: &Broker,
        peer: Option<IpAddr>,
        r: &SaslAuthenticateRequest,
    ) -> (SaslAuthenticateResponse, Step) {
        let Some(mechanism) = self.mechanism else {
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(Some(StrBytes::from_static_str("SaslAuthenticate before SaslHandshake")));
            return (response, Step::Failed);
        };
        let outcome = match mechanism {
            SaslMechanism::Plain => plain(broker, &r.auth_bytes).map(|user| (Bytes::new(), Some(user))),
            SaslMechanism::Scram(m) => self.scram_step(broker, m, &r.auth_bytes),
        };
        match outcome {
            Ok((reply, Some(user))) => {
                broker.metrics.authentication(mechanism.name(), true);
                broker.auth_throttle.succeeded(peer);
                tracing::debug!(?peer, mechanism = mechanism.name(), "authenticated");
                self.principal = Some(user.clone());
                (SaslAuthenticateResponse::default().with_auth_bytes(reply), Step::Authenticated(user))
            }
            Ok((reply, None)) => (SaslAuthenticateResponse::default().with_auth_bytes(reply), Step::Continue),
            Err(why) => {
                broker.metrics.authentication(mechanism.name(), false);
                let delay = broker.auth_throttle.failed(peer);
                tracing::warn!(
                    ?peer,
                    mechanism = mechanism.name(),
                    reason = why,
                    delay_ms = delay.as_millis() as u64,
                    "authentication failed"
                );
                tokio::time::sleep(delay).await;
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(FAILED)));
                (response, Step::Failed)
            }
        }
    }

    /// A SCRAM message: the server-first answer (no user yet), or the server-final one and the
    /// user.
    fn scram_step(
        &mut self,
        broker: &Broker,
        m: Mechanism,
        bytes: &Bytes,
    ) -> Result<(Bytes, Option<String>), &'static str> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
        let server = self.scram.as_mut().ok_or("no exchange")?;
        if text.starts_with("c=") {
            let (last, user) = server.last(text).map_err(|e| match e {
                super::scram::ScramError::BadCredentials => "wrong password or unknown user",
                _ => "malformed client-final message",
            })?;
            return Ok((Bytes::from(last), Some(user)));
        }
        let user = ScramServer::user_of(text).map_err(|_| "malformed client-first message")?;
        let credential = credentials::lookup(broker, &user, m);
        let nonce: [u8; 18] = rand::random();
        let nonce = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, nonce);
        let first = server.first(text, credential, &nonce).map_err(|_| "malformed client-first message")?;
        Ok((Bytes::from(first), None))
    }
}

/// SASL/PLAIN: `[authzid] NUL user NUL password`, checked against the user's SCRAM credential.
fn plain(broker: &Broker, bytes: &Bytes) -> Result<String, &'static str> {
    let mut parts = bytes.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed PLAIN message");
    };
    let user = std::str::from_utf8(user).map_err(|_| "malformed PLAIN message")?;
    let password = std::str::from_utf8(password).map_err(|_| "malformed PLAIN message")?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err("authorization id differs from the user");
    }
    let credential = credentials::lookup(broker, user, Mechanism::Sha512)
        .or_else(|| credentials::lookup(broker, user, Mechanism::Sha256));
    match credential {
        Some(c) if c.matches_password(password) => Ok(user.to_string()),
        _ => Err("wrong password or unknown user"),
    }
}

/// Slows repeated failures from one address.
#[derive(Debug, Default)]
pub struct AuthThrottle(Mutex<HashMap<IpAddr, (u32, Instant)>>);

impl AuthThrottle {
    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);
    /// Failures older than this are forgotten.
    const MEMORY: Duration = Duration::from_secs(60);

    /// Records a failure; returns how long to wait before answering.
    pub fn failed(&self, peer: Option<IpAddr>) -> Duration {
        let Some(ip) = peer else { return Self::BASE };
        let mut map = self.0.lock();
        let now = Instant::now();
        map.retain(|_, (_, at)| now.duration_since(*at) < Self::MEMORY);
        let entry = map.entry(ip).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        Self::BASE.saturating_mul(1u32 << (entry.0 - 1).min(6)).min(Self::MAX)
    }

    pub fn succeeded(&self, peer: Option<IpAddr>) {
        if let Some(ip) = peer {
            self.0.lock().remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_wait_longer() {
        let t = AuthThrottle::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let waits: Vec<u128> = (0..8).map(|_| t.failed(Some(ip)).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        t.succeeded(Some(ip));
        assert_eq!(t.failed(Some(ip)).as_millis(), 100);
        assert_eq!(t.failed(Some("10.0.0.2".parse().unwrap())).as_millis(), 100, "per address");
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(SaslMechanism::parse("PLAIN"), Some(SaslMechanism::Plain));
        assert_eq!(SaslMechanism::parse("SCRAM-SHA-512"), Some(SaslMechanism::Scram(Mechanism::Sha512)));
        assert_eq!(SaslMechanism::parse("GSSAPI"), None);
    }
}
