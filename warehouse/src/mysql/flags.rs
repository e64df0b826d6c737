//! Capability flags of the MySQL handshake, shared by the server and the client.

pub(crate) const CLIENT_LONG_PASSWORD: u32 = 1;
pub(crate) const CLIENT_FOUND_ROWS: u32 = 1 << 1;
pub(crate) const CLIENT_LONG_FLAG: u32 = 1 << 2;
pub(crate) const CLIENT_CONNECT_WITH_DB: u32 = 1 << 3;
pub(crate) const CLIENT_PROTOCOL_41: u32 = 1 << 9;
pub(crate) const CLIENT_SSL: u32 = 1 << 11;
pub(crate) const CLIENT_TRANSACTIONS: u32 = 1 << 13;
pub(crate) const CLIENT_SECURE_CONNECTION: u32 = 1 << 15;
pub(crate) const CLIENT_MULTI_RESULTS: u32 = 1 << 17;
pub(crate) const CLIENT_PS_MULTI_RESULTS: u32 = 1 << 18;
pub(crate) const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
pub(crate) const CLIENT_CONNECT_ATTRS: u32 = 1 << 20;
pub(crate) const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
pub(crate) const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;
