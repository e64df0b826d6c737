//! MySQL errors as clients see them: a code, a SQLSTATE and a message.

/// An error to send in an ERR packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERROR {code} ({sqlstate}): {message}")]
pub struct MysqlError {
    pub code: u16,
    pub sqlstate: &'static str,
    pub message: String,
}

impl MysqlError {
    pub fn new(code: u16, sqlstate: &'static str, message: impl Into<String>) -> Self {
        MysqlError { code, sqlstate, message: message.into() }
    }

    /// ER_PARSE_ERROR
    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(1064, "42000", message)
    }

    /// ER_NO_SUCH_TABLE
    pub fn no_such_table(message: impl Into<String>) -> Self {
        Self::new(1146, "42S02", message)
    }

    /// ER_BAD_DB_ERROR
    pub fn unknown_database(name: &str) -> Self {
        Self::new(1049, "42000", format!("Unknown database '{name}'"))
    }

    /// ER_ACCESS_DENIED_ERROR
    pub fn access_denied(user: &str, host: &str) -> Self {
        Self::new(1045, "28000", format!("Access denied for user '{user}'@'{host}' (using password: YES)"))
    }

    /// ER_NO_DB_ERROR
    pub fn no_database_selected() -> Self {
        Self::new(1046, "3D000", "No database selected")
    }

    /// ER_UNKNOWN_COM_ERROR
    pub fn unknown_command(command: u8) -> Self {
        Self::new(1047, "08S01", format!("Unknown command {command:#04x}"))
    }

    /// ER_NOT_SUPPORTED_YET
    pub fn not_supported(what: impl Into<String>) -> Self {
        Self::new(1235, "42000", format!("This version doesn't yet support '{}'", what.into()))
    }

    /// ER_UNKNOWN_STMT_HANDLER
    pub fn unknown_statement(id: u32) -> Self {
        Self::new(1243, "HY000", format!("Unknown prepared statement handler ({id}) given to mysqld_stmt_execute"))
    }

    /// ER_WRONG_ARGUMENTS
    pub fn wrong_arguments(message: impl Into<String>) -> Self {
        Self::new(1210, "HY000", message)
    }

    /// ER_UNKNOWN_ERROR (the engine failed in a way with no better code).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(1105, "HY000", message)
    }
}
