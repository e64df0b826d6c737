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

    /// ER_ACCESS_DENIED_ERROR: the same for an unknown user and a wrong password.
    pub fn access_denied(user: &str, host: &str, using_password: bool) -> Self {
        let using = if using_password { "YES" } else { "NO" };
        Self::new(1045, "28000", format!("Access denied for user '{user}'@'{host}' (using password: {using})"))
    }

    /// ER_DBACCESS_DENIED_ERROR: the user has no privilege at all on `database`.
    pub fn database_access_denied(user: &str, host: &str, database: &str) -> Self {
        Self::new(1044, "42000", format!("Access denied for user '{user}'@'{host}' to database '{database}'"))
    }

    /// ER_TABLEACCESS_DENIED_ERROR: `command` (SELECT, INSERT, DROP ...) on `table` is not
    /// granted.
    pub fn table_access_denied(command: &str, user: &str, host: &str, table: &str) -> Self {
        Self::new(1142, "42000", format!("{command} command denied to user '{user}'@'{host}' for table '{table}'"))
    }

    /// ER_SPECIFIC_ACCESS_DENIED_ERROR: the statement needs an administrative privilege.
    pub fn specific_access_denied(privilege: &str) -> Self {
        Self::new(
            1227,
            "42000",
            format!("Access denied; you need (at least one of) the {privilege} privilege(s) for this operation"),
        )
    }

    /// ER_CANNOT_USER: CREATE USER of an existing user, DROP / ALTER USER of a missing one.
    pub fn cannot_user(operation: &str, user: &str, host: &str) -> Self {
        Self::new(1396, "HY000", format!("Operation {operation} failed for '{user}'@'{host}'"))
    }

    /// ER_NONEXISTING_GRANT: REVOKE or SHOW GRANTS for a user or a database-level grant that
    /// does not exist.
    pub fn no_such_grant(user: &str, host: &str) -> Self {
        Self::new(1141, "42000", format!("There is no such grant defined for user '{user}' on host '{host}'"))
    }

    /// ER_NONEXISTING_TABLE_GRANT: REVOKE of a table-level grant that does not exist.
    pub fn no_such_table_grant(user: &str, host: &str, table: &str) -> Self {
        Self::new(
            1147,
            "42000",
            format!("There is no such grant defined for user '{user}' on host '{host}' on table '{table}'"),
        )
    }

    /// ER_CANT_CREATE_USER_WITH_GRANT: GRANT to a user that does not exist.
    pub fn grant_to_missing_user() -> Self {
        Self::new(1410, "42000", "You are not allowed to create a user with GRANT")
    }

    /// ER_SECURE_TRANSPORT_REQUIRED: a plaintext login while TLS is required.
    pub fn secure_transport_required() -> Self {
        Self::new(
            3159,
            "HY000",
            "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
        )
    }

    /// ER_HANDSHAKE_ERROR
    pub fn bad_handshake() -> Self {
        Self::new(1043, "08S01", "Bad handshake")
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
