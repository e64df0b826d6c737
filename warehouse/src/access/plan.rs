//! The tables a statement planned by DataFusion reads and writes, found in its logical plan
//! (every table scan, in joins, unions, CTEs and subqueries in expressions alike, and the
//! target of INSERT / DELETE / UPDATE), so that privileges are checked on what will actually
//! run rather than on the statement's text. [`named_tables`] reads the names from the syntax
//! instead, for statements that did not plan.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::TableReference;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart, Query, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::MySqlDialect;

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

/// The tables `sql` names, CTE names excepted, as (database, table); unqualified ones are in
/// `default_db`. From the syntax alone: for a statement that did not plan (a table missing),
/// whose names must still be checked before saying which table is missing.
pub fn named_tables(sql: &str, default_db: &str) -> Vec<(String, String)> {
    /// Identifiers as DataFusion resolves them: unquoted ones lowercased.
    fn normalize(ident: &Ident) -> String {
        match ident.quote_style {
            Some(_) => ident.value.clone(),
            None => ident.value.to_ascii_lowercase(),
        }
    }
    #[derive(Default)]
    struct Names {
        ctes: HashSet<String>,
        relations: Vec<Vec<String>>,
    }
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
                self.ctes.insert(normalize(&cte.alias.name));
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
            let parts = relation.0.iter().filter_map(|p| match p {
                ObjectNamePart::Identifier(i) => Some(normalize(i)),
                _ => None,
            });
            self.relations.push(parts.collect());
            ControlFlow::Continue(())
        }
    }
    let Ok(statements) = DFParser::parse_sql_with_dialect(sql, &MySqlDialect {}) else { return Vec::new() };
    let mut names = Names::default();
    for statement in &statements {
        if let DFStatement::Statement(s) = statement {
            let _ = s.visit(&mut names);
        }
    }
    let Names { ctes, relations } = names;
    relations
        .into_iter()
        .filter_map(|parts| match parts.as_slice() {
            [table] if !ctes.contains(table) => Some((default_db.to_string(), table.clone())),
            [.., db, table] => Some((db.clone(), table.clone())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_syntax_without_ctes() {
        let names = named_tables(
            "WITH recent AS (SELECT * FROM Orders) SELECT * FROM recent JOIN crm.`Leads` l ON true \
             WHERE x IN (SELECT id FROM def.shop.customers)",
            "shop",
        );
        let expected = [("shop", "orders"), ("crm", "Leads"), ("shop", "customers")];
        assert_eq!(names, expected.map(|(d, t)| (d.to_string(), t.to_string())));
        assert!(named_tables("not sql at all", "shop").is_empty());
    }
}
