//! One MySQL connection: the connection phase (greeting, optional TLS, authentication; see
//! [`super::handshake`]) and the command loop, on top of a [`QueryHandler`]. Result sets
//! stream: rows are written as batches arrive, flushed in chunks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::auth::{self, StoredCredential};
use super::binary::{binary_rows, decode_param, Param};
use super::error::MysqlError;
use super::handshake::{self, Authenticated, SERVER_STATUS_AUTOCOMMIT};
use super::login::{LoginOutcome, Logins};
use super::packet::{get_nul_str, put_lenenc_int, PacketError, PacketStream};
use super::resultset::{column_definition, text_rows};
use super::tls::TlsFiles;

/// What the server calls itself (clients parse the leading version).
pub const SERVER_VERSION: &str = "8.0.33-automq";

/// Rows are flushed to the client once this much is queued.
const FLUSH_BYTES: usize = 64 << 10;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_FIELD_LIST: u8 = 0x04;
const COM_PING: u8 = 0x0e;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_RESET: u8 = 0x1a;
const COM_RESET_CONNECTION: u8 = 0x1f;

/// The connection state a handler sees and may change.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub user: String,
    pub client_host: String,
    pub connection_id: u32,
    /// The current database (`USE`, COM_INIT_DB, the handshake).
    pub database: Option<String>,
    /// Set once the connection switched to TLS (before authenticating).
    pub tls: Option<TlsSession>,
}

/// What a connection's TLS handshake settled on (`SHOW STATUS LIKE 'Ssl_%'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSession {
    /// As MySQL writes it: `TLSv1.2`, `TLSv1.3`.
    pub version: String,
    /// The cipher suite's IANA-style name as rustls gives it, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// What a statement returns.
pub enum Response {
    /// No result set (DDL, DML, SET ...).
    Ok { affected_rows: u64, last_insert_id: u64, info: String },
    /// A result set: its schema, the table its columns come from (may be empty), and batches.
    Rows { schema: SchemaRef, table: String, batches: BoxStream<'static, Result<RecordBatch, MysqlError>> },
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Response::Ok { affected_rows, .. } => f.debug_struct("Ok").field("affected_rows", affected_rows).finish(),
            Response::Rows { schema, .. } => f.debug_struct("Rows").field("columns", &schema.fields().len()).finish(),
        }
    }
}

impl Response {
    pub fn ok() -> Self {
        Response::Ok { affected_rows: 0, last_insert_id: 0, info: String::new() }
    }
}

/// The SQL side of the protocol. The protocol module knows nothing else about the engine.
#[async_trait]
pub trait QueryHandler: Send + Sync + 'static {
    /// The stored credential of `user`; `None` if unknown (which fails like a wrong password).
    async fn credential(&self, user: &str) -> Option<StoredCredential>;

    /// Makes `database` current (COM_INIT_DB, or the handshake's database).
    async fn use_database(&self, session: &mut Session, database: &str) -> Result<(), MysqlError>;

    /// Runs one statement (COM_QUERY).
    async fn query(&self, session: &mut Session, sql: &str) -> Result<Response, MysqlError>;

    /// The columns of `table` in the current database (COM_FIELD_LIST, used by the mysql CLI's
    /// completion).
    async fn field_list(&self, session: &mut Session, table: &str) -> Result<SchemaRef, MysqlError>;

    /// Checks a statement to be prepared and returns how many `?` parameters it has.
    async fn prepare(&self, session: &mut Session, sql: &str) -> Result<usize, MysqlError>;

    /// Runs a prepared statement with its parameters bound (results go out in the binary
    /// protocol).
    async fn execute(&self, session: &mut Session, sql: &str, params: &[Param]) -> Result<Response, MysqlError>;
}

/// A statement prepared on this connection.
#[derive(Debug)]
struct Prepared {
    sql: String,
    params: usize,
    /// Parameter types (type, unsigned) from the last execute that bound them.
    types: Vec<(u8, bool)>,
    /// COM_STMT_SEND_LONG_DATA chunks, by parameter.
    long_data: std::collections::HashMap<u16, Vec<u8>>,
}

/// Settings of the protocol layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// max_allowed_packet
    pub max_message: usize,
    /// Becomes true when the server stops: a connection then closes instead of reading its next
    /// command (the statement in progress finishes and is answered first).
    pub closing: Option<tokio::sync::watch::Receiver<bool>>,
    /// The certificate offered to clients that ask for TLS (CLIENT_SSL is advertised only with
    /// one).
    pub tls: Option<Arc<TlsFiles>>,
    /// MySQL's `require_secure_transport`: a client that does not switch to TLS is refused
    /// (error 3159) before it authenticates.
    pub require_secure_transport: bool,
    /// How long a client may take from connecting to being authenticated (MySQL's
    /// `connect_timeout`), TLS handshake included.
    pub connect_timeout: Duration,
    /// Login outcomes counted, failed logins slowed down per client address.
    pub logins: Arc<Logins>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message: 64 << 20,
            closing: None,
            tls: None,
            require_secure_transport: false,
            connect_timeout: Duration::from_secs(10),
            logins: Arc::new(Logins::default()),
        }
    }
}

fn ok_packet(header: u8, affected: u64, last_insert_id: u64, info: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(16 + info.len());
    out.put_u8(header);
    put_lenenc_int(&mut out, affected);
    put_lenenc_int(&mut out, last_insert_id);
    out.put_u16_le(SERVER_STATUS_AUTOCOMMIT);
    out.put_u16_le(0);
    out.put_slice(info.as_bytes());
    out
}

fn err_packet(e: &MysqlError) -> BytesMut {
    let mut out = BytesMut::with_capacity(16 + e.message.len());
    out.put_u8(0xff);
    out.put_u16_le(e.code);
    out.put_u8(b'#');
    out.put_slice(e.sqlstate.as_bytes());
    out.put_slice(e.message.as_bytes());
    out
}

fn eof_packet() -> [u8; 5] {
    let s = SERVER_STATUS_AUTOCOMMIT.to_le_bytes();
    [0xfe, 0, 0, s[0], s[1]]
}

/// `future`, or a timeout error once `deadline` passes.
async fn before<T>(
    deadline: Instant,
    future: impl std::future::Future<Output = Result<T, impl Into<PacketError>>>,
) -> Result<T, PacketError> {
    match tokio::time::timeout_at(deadline, future).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(PacketError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not complete the connection phase in time",
        ))),
    }
}

/// Serves one connection until the client quits or the connection fails.
///
/// A client that asks for TLS sends an SSL request (sequence 1), then the TLS handshake runs on
/// the same socket and the real handshake response follows inside it as sequence 2: the packet
/// sequence carries on across the switch, as in MySQL.
pub async fn serve<S, H>(
    stream: S,
    handler: Arc<H>,
    mut session: Session,
    config: &ServerConfig,
) -> Result<(), PacketError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: QueryHandler + ?Sized,
{
    let deadline = Instant::now() + config.connect_timeout;
    let mut packets = PacketStream::new(stream, config.max_message);
    let nonce = auth::nonce();
    packets.send(&handshake::greeting(session.connection_id, &nonce, config.tls.is_some())).await?;
    let Some(first) = before(deadline, packets.read()).await? else { return Ok(()) };
    if !handshake::is_ssl_request(&first) {
        if config.require_secure_transport {
            config.logins.count(LoginOutcome::InsecureTransport);
            tracing::info!(peer = %session.client_host, "plaintext MySQL login refused: TLS is required");
            packets.send(&err_packet(&MysqlError::secure_transport_required())).await?;
            return Ok(());
        }
        return connect(packets, first, &nonce, handler, session, config, deadline).await;
    }
    let Some(tls) = &config.tls else {
        packets.send(&err_packet(&MysqlError::bad_handshake())).await?;
        return Err(PacketError::Malformed("SSL request, but the listener has no TLS certificate"));
    };
    let sequence = packets.sequence();
    let stream = match before(deadline, tls.acceptor().accept(packets.into_inner())).await {
        Ok(stream) => stream,
        Err(e) => {
            config.logins.tls_handshake_failed();
            return Err(e);
        }
    };
    let (_, connection) = stream.get_ref();
    session.tls = Some(TlsSession {
        version: match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
            other => format!("{other:?}"),
        },
        cipher: connection.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default(),
    });
    let mut packets = PacketStream::resume(stream, config.max_message, sequence);
    let Some(response) = before(deadline, packets.read()).await? else { return Ok(()) };
    connect(packets, response, &nonce, handler, session, config, deadline).await
}

/// Authenticates the client of `response` (its handshake response), then serves its commands.
async fn connect<S, H>(
    mut packets: PacketStream<S>,
    response: Bytes,
    nonce: &[u8; 20],
    handler: Arc<H>,
    mut session: Session,
    config: &ServerConfig,
    deadline: Instant,
) -> Result<(), PacketError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: QueryHandler + ?Sized,
{
    let hello = handshake::parse_response(response)?;
    session.user = hello.user.clone();
    let peer: Option<IpAddr> = session.client_host.parse().ok();
    match before(deadline, handshake::authenticate(&mut packets, &hello, nonce, &*handler)).await? {
        Authenticated::Yes => {
            config.logins.count(LoginOutcome::Accepted);
            config.logins.succeeded(peer);
        }
        Authenticated::Gone => return Ok(()),
        Authenticated::No => {
            // One message for an unknown user and a wrong password, in the log as on the wire.
            config.logins.count(LoginOutcome::Denied);
            let delay = config.logins.failed(peer);
            tracing::info!(
                user = %hello.user,
                peer = %session.client_host,
                tls = session.tls.is_some(),
                delay_ms = delay.as_millis() as u64,
                "MySQL login refused: unknown user or wrong password"
            );
            tokio::time::sleep(delay).await;
            let using_password = !hello.auth_response.is_empty();
            packets
                .send(&err_packet(&MysqlError::access_denied(&hello.user, &session.client_host, using_password)))
                .await?;
            return Ok(());
        }
    }
    if let Some(db) = &hello.database {
        if let Err(e) = handler.use_database(&mut session, db).await {
            packets.send(&err_packet(&e)).await?;
            return Ok(());
        }
    }
    packets.send(&ok_packet(0x00, 0, 0, "")).await?;
    let deprecate_eof = hello.capabilities & super::flags::CLIENT_DEPRECATE_EOF != 0;
    commands(packets, &*handler, session, config, deprecate_eof).await
}

/// The command phase: one command at a time until the client quits or the server closes.
async fn commands<S, H>(
    mut packets: PacketStream<S>,
    handler: &H,
    mut session: Session,
    config: &ServerConfig,
    deprecate_eof: bool,
) -> Result<(), PacketError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: QueryHandler + ?Sized,
{
    let mut statements: std::collections::HashMap<u32, Prepared> = std::collections::HashMap::new();
    let mut next_statement = 1u32;
    let mut closing = config.closing.clone();
    loop {
        packets.reset_sequence();
        let next = match closing.as_mut() {
            // Between statements only: a statement being served is never cut off.
            Some(rx) => tokio::select! {
                biased;
                _ = rx.wait_for(|closing| *closing) => return Ok(()),
                read = packets.read() => read?,
            },
            None => packets.read().await?,
        };
        let Some(mut command) = next else { return Ok(()) };
        if command.is_empty() {
            return Err(PacketError::Malformed("empty command packet"));
        }
        let code = command.get_u8();
        let result: Result<Option<Response>, MysqlError> = match code {
            COM_QUIT => return Ok(()),
            COM_PING | COM_RESET_CONNECTION => Ok(None),
            COM_INIT_DB => {
                let db = String::from_utf8_lossy(&command).into_owned();
                handler.use_database(&mut session, &db).await.map(|()| None)
            }
            COM_QUERY => {
                let sql = String::from_utf8_lossy(&command).into_owned();
                handler.query(&mut session, &sql).await.map(Some)
            }
            COM_FIELD_LIST => {
                let table =
                    get_nul_str(&mut command).map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
                match handler.field_list(&mut session, &table).await {
                    Ok(schema) => {
                        for field in schema.fields() {
                            let mut def = BytesMut::new();
                            column_definition(&mut def, session.database.as_deref().unwrap_or(""), &table, field);
                            packets.queue(&def);
                        }
                        if deprecate_eof {
                            packets.queue(&ok_packet(0xfe, 0, 0, ""));
                        } else {
                            packets.queue(&eof_packet());
                        }
                        packets.flush().await?;
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            COM_STMT_PREPARE => {
                let sql = String::from_utf8_lossy(&command).into_owned();
                match handler.prepare(&mut session, &sql).await {
                    Ok(params) => {
                        let id = next_statement;
                        next_statement = next_statement.wrapping_add(1).max(1);
                        statements
                            .insert(id, Prepared { sql, params, types: Vec::new(), long_data: Default::default() });
                        let mut out = BytesMut::new();
                        out.put_u8(0);
                        out.put_u32_le(id);
                        out.put_u16_le(0); // result columns are announced by each execute
                        out.put_u16_le(params as u16);
                        out.put_u8(0);
                        out.put_u16_le(0);
                        packets.queue(&out);
                        if params > 0 {
                            let placeholder = arrow_schema::Field::new("?", arrow_schema::DataType::Utf8, true);
                            for _ in 0..params {
                                let mut def = BytesMut::new();
                                column_definition(&mut def, "", "", &placeholder);
                                packets.queue(&def);
                            }
                            if !deprecate_eof {
                                packets.queue(&eof_packet());
                            }
                        }
                        packets.flush().await?;
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            COM_STMT_EXECUTE => match execute(&mut command, &mut statements) {
                Ok((sql, params)) => match handler.execute(&mut session, &sql, &params).await {
                    Ok(Response::Rows { schema, table, batches }) => {
                        write_rows(&mut packets, &session, &schema, &table, batches, deprecate_eof, true).await?;
                        continue;
                    }
                    other => other.map(Some),
                },
                Err(e) => Err(e),
            },
            COM_STMT_SEND_LONG_DATA => {
                if command.remaining() >= 6 {
                    let id = command.get_u32_le();
                    let param = command.get_u16_le();
                    if let Some(s) = statements.get_mut(&id) {
                        s.long_data.entry(param).or_default().extend_from_slice(&command);
                    }
                }
                continue; // no response, by protocol
            }
            COM_STMT_CLOSE => {
                if command.remaining() >= 4 {
                    statements.remove(&command.get_u32_le());
                }
                continue; // no response, by protocol
            }
            COM_STMT_RESET => {
                let id = if command.remaining() >= 4 { command.get_u32_le() } else { 0 };
                match statements.get_mut(&id) {
                    Some(s) => {
                        s.long_data.clear();
                        Ok(None)
                    }
                    None => Err(MysqlError::unknown_statement(id)),
                }
            }
            other => Err(MysqlError::unknown_command(other)),
        };
        match result {
            Ok(None) => packets.send(&ok_packet(0x00, 0, 0, "")).await?,
            Ok(Some(Response::Ok { affected_rows, last_insert_id, info })) => {
                packets.send(&ok_packet(0x00, affected_rows, last_insert_id, &info)).await?
            }
            Ok(Some(Response::Rows { schema, table, batches })) => {
                write_rows(&mut packets, &session, &schema, &table, batches, deprecate_eof, false).await?
            }
            Err(e) => packets.send(&err_packet(&e)).await?,
        }
    }
}

/// Parses COM_STMT_EXECUTE: the statement and its bound parameters.
fn execute(
    command: &mut Bytes,
    statements: &mut std::collections::HashMap<u32, Prepared>,
) -> Result<(String, Vec<Param>), MysqlError> {
    if command.remaining() < 9 {
        return Err(MysqlError::wrong_arguments("malformed COM_STMT_EXECUTE"));
    }
    let id = command.get_u32_le();
    let _flags = command.get_u8();
    let _iterations = command.get_u32_le();
    let s = statements.get_mut(&id).ok_or(MysqlError::unknown_statement(id))?;
    let mut params = Vec::with_capacity(s.params);
    if s.params > 0 {
        let bitmap_len = s.params.div_ceil(8);
        if command.remaining() < bitmap_len + 1 {
            return Err(MysqlError::wrong_arguments("malformed COM_STMT_EXECUTE: missing NULL bitmap"));
        }
        let bitmap = command.split_to(bitmap_len);
        let rebound = command.get_u8() == 1;
        if rebound {
            if command.remaining() < 2 * s.params {
                return Err(MysqlError::wrong_arguments("malformed COM_STMT_EXECUTE: missing parameter types"));
            }
            s.types = (0..s.params).map(|_| (command.get_u8(), command.get_u8() & 0x80 != 0)).collect();
        }
        if s.types.len() != s.params {
            return Err(MysqlError::wrong_arguments("COM_STMT_EXECUTE without parameter types"));
        }
        for (i, (ty, unsigned)) in s.types.iter().enumerate() {
            if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                params.push(Param::Null);
            } else if let Some(data) = s.long_data.remove(&(i as u16)) {
                params.push(Param::Bytes(data));
            } else {
                params.push(decode_param(command, *ty, *unsigned)?);
            }
        }
    }
    Ok((s.sql.clone(), params))
}

async fn write_rows<S: AsyncRead + AsyncWrite + Unpin>(
    packets: &mut PacketStream<S>,
    session: &Session,
    schema: &SchemaRef,
    table: &str,
    mut batches: BoxStream<'static, Result<RecordBatch, MysqlError>>,
    deprecate_eof: bool,
    binary: bool,
) -> Result<(), PacketError> {
    let mut count = BytesMut::new();
    put_lenenc_int(&mut count, schema.fields().len() as u64);
    packets.queue(&count);
    let database = session.database.as_deref().unwrap_or("");
    for field in schema.fields() {
        let mut def = BytesMut::new();
        column_definition(&mut def, database, table, field);
        packets.queue(&def);
    }
    if !deprecate_eof {
        packets.queue(&eof_packet());
    }
    while let Some(batch) = batches.next().await {
        match batch {
            Ok(batch) => {
                if binary {
                    binary_rows(&batch, |row| packets.queue(row));
                } else {
                    text_rows(&batch, |row| packets.queue(row));
                }
                if packets.queued() >= FLUSH_BYTES {
                    packets.flush().await?;
                }
            }
            Err(e) => {
                // An error mid-result replaces the rest of it.
                packets.send(&err_packet(&e)).await?;
                return Ok(());
            }
        }
    }
    if deprecate_eof {
        packets.queue(&ok_packet(0xfe, 0, 0, ""));
    } else {
        packets.queue(&eof_packet());
    }
    packets.flush().await
}
