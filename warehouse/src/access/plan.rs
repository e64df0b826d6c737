//! The tables a statement planned by DataFusion reads and writes, found in its logical plan
//! (every table scan, in joins, unions, CTEs and subqueries in expressions alike, and the
//! target of INSERT / DELETE / UPDATE), so that privileges are checked on what will actually
//! run rather than on the statement's text.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::TableReference;
use datafusion::logical_expr::{LogicalPlan, WriteOp};

use super::{Access, Privilege};
use crate::engine::INFORMATION_SCHEMA;
use crate::mysql::error::MysqlError;

/// One use of a table by a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableUse {
    pub db: String,
    pub table: String,
    pub privilege: Privilege,
    /// The command MySQL's error names (SELECT, INSERT, DELETE, ...).
    pub command: &'static str,
}

/// What a planned statement needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PlanNeeds {
    /// Writes first (in plan order), then reads.
    pub tables: Vec<TableUse>,
    /// Set for statements only an administrator may run (COPY writes files on the server).
    pub admin: Option<&'static str>,
}

fn resolve(reference: &TableReference, default_db: &str) -> (String, String) {
    (reference.schema().unwrap_or(default_db).to_string(), reference.table().to_string())
}

/// The tables `plan` touches; unqualified names are in `default_db`.
pub fn needs(plan: &LogicalPlan, default_db: &str) -> PlanNeeds {
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    let mut admin = None;
    // The closure never fails, so neither does the walk.
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                let (db, table) = resolve(&scan.table_name, default_db);
                reads.push(TableUse { db, table, privilege: Privilege::Select, command: "SELECT" });
            }
            LogicalPlan::Dml(dml) => {
                let (privilege, command) = match &dml.op {
                    WriteOp::Insert(_) => (Privilege::Insert, "INSERT"),
                    WriteOp::Delete => (Privilege::All, "DELETE"),
                    WriteOp::Ctas => (Privilege::All, "CREATE"),
                    WriteOp::Truncate => (Privilege::All, "DROP"),
                    // UPDATE, MERGE and write operations DataFusion may add later.
                    _ => (Privilege::All, "UPDATE"),
                };
                let (db, table) = resolve(&dml.table_name, default_db);
                writes.push(TableUse { db, table, privilege, command });
            }
            LogicalPlan::Copy(_) => admin = Some("FILE"),
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    writes.extend(reads);
    writes.dedup();
    PlanNeeds { tables: writes, admin }
}

impl Access {
    /// Refuses the statement unless every table use in `needs` is allowed.
    pub fn check_plan(&self, needs: &PlanNeeds) -> Result<(), MysqlError> {
        if let Some(privilege) = needs.admin {
            self.require_admin(privilege)?;
        }
        for u in &needs.tables {
            if u.db.eq_ignore_ascii_case(INFORMATION_SCHEMA) && u.privilege == Privilege::Select {
                continue;
            }
            self.require(u.privilege, u.command, &u.db, &u.table)?;
        }
        Ok(())
    }
}
