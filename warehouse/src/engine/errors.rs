//! DataFusion errors as MySQL errors, with the codes clients and tools branch on.

use datafusion::error::DataFusionError;

use crate::mysql::error::MysqlError;
use crate::table::WhError;

/// Maps an engine error to the MySQL error a client expects.
pub(super) fn to_mysql(e: DataFusionError) -> MysqlError {
    // Diagnostics and contexts wrap the error that says what happened.
    let root = e.find_root();
    if let DataFusionError::ArrowError(inner, _) = root {
        let msg = inner.to_string();
        if msg.contains("non-nullable but contains null") {
            return MysqlError::new(1048, "23000", format!("Column cannot be null: {msg}"));
        }
    }
    match root {
        DataFusionError::SQL(e, _) => MysqlError::syntax(format!("You have an error in your SQL syntax: {e}")),
        DataFusionError::Plan(msg) => plan_error(msg),
        DataFusionError::SchemaError(e, _) => {
            let msg = e.to_string();
            if msg.contains("No field named") {
                MysqlError::new(1054, "42S22", msg)
            } else {
                MysqlError::internal(msg)
            }
        }
        DataFusionError::NotImplemented(msg) => MysqlError::not_supported(msg.clone()),
        DataFusionError::External(inner) => match inner.downcast_ref::<WhError>() {
            Some(e) => super::wh_to_mysql(e),
            None => MysqlError::internal(inner.to_string()),
        },
        root => MysqlError::internal(root.to_string()),
    }
}

fn plan_error(msg: &str) -> MysqlError {
    if msg.contains("table") && msg.contains("not found") {
        MysqlError::no_such_table(msg.to_string())
    } else if msg.contains("No field named") || msg.contains("not found in") {
        MysqlError::new(1054, "42S22", msg.to_string())
    } else {
        MysqlError::new(1105, "HY000", msg.to_string())
    }
}
