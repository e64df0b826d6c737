//! A small MySQL client for our own tools (`automq demo`): connect with a password
//! (`mysql_native_password`, or `caching_sha2_password` fast authentication), run text-protocol
//! queries, read results as text. It speaks to any MySQL-protocol server (ours, StarRocks,
//! MySQL); it is not a driver: no TLS, no prepared statements, no pooling.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

use super::auth;
use super::packet::{get_lenenc_bytes, get_lenenc_int, get_nul_str, PacketError, PacketStream};

use super::flags::{
    CLIENT_CONNECT_WITH_DB, CLIENT_LONG_PASSWORD, CLIENT_PLUGIN_AUTH, CLIENT_PROTOCOL_41, CLIENT_SECURE_CONNECTION,
    CLIENT_TRANSACTIONS,
};
const UTF8MB4: u8 = 45;
const COM_QUERY: u8 = 0x03;
const COM_QUIT: u8 = 0x01;
const MAX_MESSAGE: usize = 1 << 30;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error(transparent)]
    Packet(#[from] PacketError),
    #[error("the server closed the connection")]
    Closed,
    /// An ERR packet: the server's error code, SQL state and message.
    #[error("ERROR {code} ({state}): {message}")]
    Server { code: u16, state: String, message: String },
    #[error("unexpected reply from the server: {0}")]
    Protocol(String),
}

/// The result of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// A statement without a result set.
    Ok { affected_rows: u64 },
    /// Column names and rows (NULL is `None`), every value as the server's text.
    Rows { columns: Vec<String>, rows: Vec<Vec<Option<String>>> },
}

impl QueryResult {
    /// The rows (empty for a statement without a result set).
    pub fn rows(&self) -> &[Vec<Option<String>>] {
        match self {
            QueryResult::Rows { rows, .. } => rows,
            QueryResult::Ok { .. } => &[],
        }
    }
}

/// One connection.
#[derive(Debug)]
pub struct Client {
    packets: PacketStream<TcpStream>,
}

fn malformed(what: &'static str) -> ClientError {
    ClientError::Packet(PacketError::Malformed(what))
}

fn server_error(mut p: Bytes) -> ClientError {
    p.advance(1);
    if p.len() < 2 {
        return malformed("short ERR packet");
    }
    let code = p.get_u16_le();
    let state = if p.first() == Some(&b'#') && p.len() >= 6 {
        let s = String::from_utf8_lossy(&p[1..6]).into_owned();
        p.advance(6);
        s
    } else {
        "HY000".to_string()
    };
    ClientError::Server { code, state, message: String::from_utf8_lossy(&p).into_owned() }
}

impl Client {
    /// Connects to `addr` (`host:port`) as `user`, optionally selecting `database`.
    pub async fn connect(addr: &str, user: &str, password: &str, database: Option<&str>) -> Result<Self, ClientError> {
        let stream =
            TcpStream::connect(addr).await.map_err(|source| ClientError::Connect { addr: addr.to_string(), source })?;
        stream.set_nodelay(true).ok();
        let mut packets = PacketStream::new(stream, MAX_MESSAGE);
        let mut hello = packets.read().await?.ok_or(ClientError::Closed)?;
        if hello.first() == Some(&0xff) {
            return Err(server_error(hello));
        }
        if hello.first() != Some(&10) {
            return Err(ClientError::Protocol("not a MySQL protocol 10 handshake".into()));
        }
        hello.advance(1);
        get_nul_str(&mut hello)?; // server version
        if hello.len() < 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10 {
            return Err(malformed("short handshake"));
        }
        hello.advance(4); // connection id
        let mut nonce = hello.split_to(8).to_vec();
        hello.advance(1);
        let caps_low = hello.get_u16_le() as u32;
        hello.advance(1 + 2); // charset, status
        let caps = caps_low | (hello.get_u16_le() as u32) << 16;
        let nonce_len = hello.get_u8() as usize;
        hello.advance(10);
        if caps & CLIENT_SECURE_CONNECTION != 0 {
            let n = nonce_len.saturating_sub(8).max(13).min(hello.len());
            let part = hello.split_to(n);
            nonce.extend_from_slice(part.strip_suffix(&[0]).unwrap_or(&part));
        }
        let plugin = if caps & CLIENT_PLUGIN_AUTH != 0 {
            String::from_utf8_lossy(&get_nul_str(&mut hello)?).into_owned()
        } else {
            auth::NATIVE.to_string()
        };
        let mut ours = CLIENT_LONG_PASSWORD
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION
            | CLIENT_PLUGIN_AUTH;
        if database.is_some() {
            ours |= CLIENT_CONNECT_WITH_DB;
        }
        let proof = auth::scramble(&plugin, password, &nonce);
        let mut out = BytesMut::new();
        out.put_u32_le(ours & (caps | CLIENT_PLUGIN_AUTH));
        out.put_u32_le(MAX_MESSAGE as u32);
        out.put_u8(UTF8MB4);
        out.put_bytes(0, 23);
        out.put_slice(user.as_bytes());
        out.put_u8(0);
        out.put_u8(proof.len() as u8);
        out.put_slice(&proof);
        if let Some(db) = database {
            out.put_slice(db.as_bytes());
            out.put_u8(0);
        }
        out.put_slice(plugin.as_bytes());
        out.put_u8(0);
        packets.send(&out).await?;
        let mut client = Client { packets };
        client.finish_auth(password).await?;
        Ok(client)
    }

    /// Follows the server through authentication to its OK or ERR.
    async fn finish_auth(&mut self, password: &str) -> Result<(), ClientError> {
        loop {
            let mut p = self.packets.read().await?.ok_or(ClientError::Closed)?;
            match p.first() {
                Some(0x00) => return Ok(()),
                Some(0xff) => return Err(server_error(p)),
                Some(0xfe) => {
                    // Auth switch: answer the named plugin's challenge.
                    p.advance(1);
                    let plugin = String::from_utf8_lossy(&get_nul_str(&mut p)?).into_owned();
                    let nonce = p.strip_suffix(&[0]).unwrap_or(&p).to_vec();
                    self.packets.send(&auth::scramble(&plugin, password, &nonce)).await?;
                }
                Some(0x01) if p.get(1) == Some(&0x03) => {} // fast authentication succeeded
                Some(0x01) => {
                    return Err(ClientError::Protocol(
                        "the server wants caching_sha2_password full authentication (needs TLS); \
                         use a mysql_native_password account"
                            .into(),
                    ))
                }
                _ => return Err(ClientError::Protocol("unexpected packet during authentication".into())),
            }
        }
    }

    /// Runs one statement.
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, ClientError> {
        self.packets.reset_sequence();
        let mut out = Vec::with_capacity(sql.len() + 1);
        out.push(COM_QUERY);
        out.extend_from_slice(sql.as_bytes());
        self.packets.send(&out).await?;
        let mut first = self.read().await?;
        match first.first() {
            Some(0x00) => {
                first.advance(1);
                let affected_rows = get_lenenc_int(&mut first)?.unwrap_or(0);
                return Ok(QueryResult::Ok { affected_rows });
            }
            Some(0xff) => return Err(server_error(first)),
            _ => {}
        }
        let count = get_lenenc_int(&mut first)?.ok_or_else(|| malformed("column count"))? as usize;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let mut def = self.read().await?;
            for _ in 0..4 {
                get_lenenc_bytes(&mut def)?; // catalog, schema, table, org_table
            }
            let name = get_lenenc_bytes(&mut def)?.ok_or_else(|| malformed("column name"))?;
            columns.push(String::from_utf8_lossy(&name).into_owned());
        }
        let eof = self.read().await?;
        if !is_eof(&eof) {
            return Err(ClientError::Protocol("missing EOF after the column definitions".into()));
        }
        let mut rows = Vec::new();
        loop {
            let mut p = self.read().await?;
            if is_eof(&p) {
                break;
            }
            if p.first() == Some(&0xff) {
                return Err(server_error(p));
            }
            let mut row = Vec::with_capacity(count);
            for _ in 0..count {
                if p.first() == Some(&0xfb) {
                    p.advance(1);
                    row.push(None);
                } else {
                    let v = get_lenenc_bytes(&mut p)?.ok_or_else(|| malformed("row value"))?;
                    row.push(Some(String::from_utf8_lossy(&v).into_owned()));
                }
            }
            rows.push(row);
        }
        Ok(QueryResult::Rows { columns, rows })
    }

    /// Says goodbye (the server closes the connection).
    pub async fn quit(mut self) {
        self.packets.reset_sequence();
        let _ = self.packets.send(&[COM_QUIT]).await;
    }

    async fn read(&mut self) -> Result<Bytes, ClientError> {
        self.packets.read().await?.ok_or(ClientError::Closed)
    }
}

fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xfe) && p.len() < 9
}
