//! The connection phase: the server's greeting, the client's handshake response (after an
//! optional SSL request and TLS handshake, see [`super::server::serve`]), and password
//! authentication, switching the client to `mysql_native_password` when it offered a plugin
//! we do not know.
//!
//! Everything here reads bytes a client chose before proving who it is: every length is
//! checked against what is left, and any malformed packet ends the connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::auth;
use super::flags::*;
use super::packet::{get_lenenc_bytes, get_nul_str, PacketError, PacketStream};
use super::server::{QueryHandler, SERVER_VERSION};

const SERVER_CAPABILITIES: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_DEPRECATE_EOF;

pub(super) const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;
/// utf8mb4_general_ci
const CHARSET: u8 = 45;
/// An SSL request is a handshake response cut after its fixed part: capabilities, max packet
/// size, character set and 23 filler bytes.
const SSL_REQUEST_LEN: usize = 32;

/// Protocol-10 greeting; CLIENT_SSL is offered only when the listener has a certificate.
pub(super) fn greeting(connection_id: u32, nonce: &[u8; 20], tls: bool) -> BytesMut {
    let capabilities = if tls { SERVER_CAPABILITIES | CLIENT_SSL } else { SERVER_CAPABILITIES };
    let mut out = BytesMut::with_capacity(128);
    out.put_u8(10);
    out.put_slice(SERVER_VERSION.as_bytes());
    out.put_u8(0);
    out.put_u32_le(connection_id);
    out.put_slice(&nonce[..8]);
    out.put_u8(0);
    out.put_u16_le(capabilities as u16);
    out.put_u8(CHARSET);
    out.put_u16_le(SERVER_STATUS_AUTOCOMMIT);
    out.put_u16_le((capabilities >> 16) as u16);
    out.put_u8(21);
    out.put_slice(&[0; 10]);
    out.put_slice(&nonce[8..]);
    out.put_u8(0);
    out.put_slice(auth::NATIVE.as_bytes());
    out.put_u8(0);
    out
}

/// Whether the client's first packet asks to switch to TLS before saying who it is.
pub(super) fn is_ssl_request(packet: &[u8]) -> bool {
    packet.len() == SSL_REQUEST_LEN
        && u32::from_le_bytes([packet[0], packet[1], packet[2], packet[3]]) & CLIENT_SSL != 0
}

/// What the client said in its handshake response.
#[derive(Debug)]
pub(super) struct HandshakeResponse {
    pub(super) capabilities: u32,
    pub(super) user: String,
    pub(super) auth_response: Bytes,
    pub(super) database: Option<String>,
    pub(super) plugin: String,
}

pub(super) fn parse_response(mut b: Bytes) -> Result<HandshakeResponse, PacketError> {
    if b.len() < SSL_REQUEST_LEN {
        return Err(PacketError::Malformed("handshake response too short (pre-4.1 clients are not supported)"));
    }
    let capabilities = b.get_u32_le();
    if capabilities & CLIENT_PROTOCOL_41 == 0 {
        return Err(PacketError::Malformed("the client does not speak protocol 4.1"));
    }
    b.advance(4 + 1 + 23); // max packet, charset, filler
    let user = String::from_utf8_lossy(&get_nul_str(&mut b)?).into_owned();
    let auth_response = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        get_lenenc_bytes(&mut b)?.unwrap_or_default()
    } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        if !b.has_remaining() {
            return Err(PacketError::Malformed("missing auth response length"));
        }
        let n = b.get_u8() as usize;
        if b.remaining() < n {
            return Err(PacketError::Malformed("truncated auth response"));
        }
        b.split_to(n)
    } else {
        get_nul_str(&mut b)?
    };
    let mut database = None;
    if capabilities & CLIENT_CONNECT_WITH_DB != 0 && b.has_remaining() {
        let db = get_nul_str(&mut b)?;
        if !db.is_empty() {
            database = Some(String::from_utf8_lossy(&db).into_owned());
        }
    }
    let mut plugin = auth::NATIVE.to_string();
    if capabilities & CLIENT_PLUGIN_AUTH != 0 && b.has_remaining() {
        plugin = String::from_utf8_lossy(&get_nul_str(&mut b)?).into_owned();
    }
    // Connection attributes (CLIENT_CONNECT_ATTRS) follow; nothing uses them yet.
    Ok(HandshakeResponse { capabilities, user, auth_response, database, plugin })
}

/// How authentication ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Authenticated {
    Yes,
    /// Unknown user or wrong password (deliberately one answer).
    No,
    /// The client hung up during an authentication switch.
    Gone,
}

/// Checks the client's proof of its password, switching it to `mysql_native_password` first
/// if it offered another plugin. On success with `caching_sha2_password`, queues the "fast
/// authentication succeeded" packet that must precede the OK.
pub(super) async fn authenticate<S, H>(
    packets: &mut PacketStream<S>,
    hello: &HandshakeResponse,
    nonce: &[u8; 20],
    handler: &H,
) -> Result<Authenticated, PacketError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: QueryHandler + ?Sized,
{
    let (plugin, response) = if hello.plugin == auth::NATIVE || hello.plugin == auth::CACHING_SHA2 {
        (hello.plugin.as_str(), hello.auth_response.clone())
    } else {
        let mut switch = BytesMut::new();
        switch.put_u8(0xfe);
        switch.put_slice(auth::NATIVE.as_bytes());
        switch.put_u8(0);
        switch.put_slice(nonce);
        switch.put_u8(0);
        packets.send(&switch).await?;
        let Some(answer) = packets.read().await? else { return Ok(Authenticated::Gone) };
        (auth::NATIVE, answer)
    };
    let credential = handler.credential(&hello.user).await;
    if !credential.is_some_and(|c| c.verify(plugin, nonce, &response)) {
        return Ok(Authenticated::No);
    }
    if plugin == auth::CACHING_SHA2 {
        packets.queue(&[0x01, 0x03]); // AuthMoreData: fast authentication succeeded
    }
    Ok(Authenticated::Yes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_prefix(capabilities: u32) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32_le(capabilities);
        b.put_u32_le(1 << 24);
        b.put_u8(45);
        b.put_slice(&[0; 23]);
        b
    }

    #[test]
    fn an_ssl_request_is_the_fixed_part_with_client_ssl_only() {
        let ssl = response_prefix(CLIENT_PROTOCOL_41 | CLIENT_SSL);
        assert!(is_ssl_request(&ssl));
        assert!(!is_ssl_request(&response_prefix(CLIENT_PROTOCOL_41)), "no CLIENT_SSL");
        let mut full = response_prefix(CLIENT_PROTOCOL_41 | CLIENT_SSL);
        full.put_slice(b"root\0\0");
        assert!(!is_ssl_request(&full), "a full response is not an SSL request");
        assert!(!is_ssl_request(&ssl[..31]));
    }

    #[test]
    fn a_full_response_is_parsed() {
        let mut b = response_prefix(
            CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_CONNECT_WITH_DB | CLIENT_PLUGIN_AUTH,
        );
        b.put_slice(b"alice\0");
        b.put_u8(3);
        b.put_slice(b"abc");
        b.put_slice(b"shop\0");
        b.put_slice(b"caching_sha2_password\0");
        let hello = parse_response(b.freeze()).unwrap();
        assert_eq!(hello.user, "alice");
        assert_eq!(&hello.auth_response[..], b"abc");
        assert_eq!(hello.database.as_deref(), Some("shop"));
        assert_eq!(hello.plugin, auth::CACHING_SHA2);
    }

    #[test]
    fn truncated_responses_are_errors() {
        let mut b = response_prefix(CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION);
        b.put_slice(b"alice\0");
        b.put_u8(20);
        b.put_slice(b"short");
        assert!(parse_response(b.freeze()).is_err());
        assert!(parse_response(Bytes::from_static(&[0xff; 31])).is_err());
    }
}
