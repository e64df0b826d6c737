//! The SQL engine behind the MySQL protocol: Apache DataFusion with MySQL's dialect, plus
//! what DataFusion does not know about MySQL (databases, `USE`, `SHOW`, driver probes).
//!
//! Tables live in DataFusion's catalog `def` (MySQL's catalog name); each database is a schema.

mod errors;
pub mod probes;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use futures::{stream, StreamExt, TryStreamExt};
use parking_lot::RwLock;

use crate::mysql::auth::StoredCredential;
use crate::mysql::binary::Param;
use crate::mysql::error::MysqlError;
use crate::mysql::server::{QueryHandler, Response, Session};

/// MySQL's catalog name, used as DataFusion's default catalog.
pub const CATALOG: &str = "def";

/// The engine shared by every connection of a query node.
pub struct Engine {
    ctx: SessionContext,
    users: RwLock<HashMap<String, StoredCredential>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with user `root` (password `root_password`, empty allowed).
    pub fn new(root_password: &str) -> Arc<Self> {
        // No default catalog of DataFusion's own: every state built from this config would
        // create a fresh, empty `def` catalog and replace ours in the shared catalog list.
        let config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, "information_schema")
            .set_str("datafusion.sql_parser.dialect", "MySQL");
        let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
        let ctx = SessionContext::new_with_state(state);
        let catalog = Arc::new(MemoryCatalogProvider::new());
        ctx.register_catalog(CATALOG, catalog);
        let users = HashMap::from([("root".to_string(), StoredCredential::from_password(root_password))]);
        Arc::new(Engine { ctx, users: RwLock::new(users) })
    }

    fn catalog(&self) -> Arc<dyn CatalogProvider> {
        self.ctx.catalog(CATALOG).unwrap_or_else(|| Arc::new(MemoryCatalogProvider::new()))
    }

    fn databases(&self) -> Vec<String> {
        let mut names = self.catalog().schema_names();
        names.push("information_schema".to_string());
        names.sort();
        names.dedup();
        names
    }

    fn database_exists(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("information_schema") || self.catalog().schema(name).is_some()
    }

    /// A session context whose default schema is the session's database.
    fn session_context(&self, session: &Session) -> SessionContext {
        let state = self.ctx.state();
        let schema = session.database.clone().unwrap_or_else(|| "information_schema".to_string());
        let config = state.config().clone().with_default_catalog_and_schema(CATALOG, &schema);
        SessionContext::new_with_state(SessionStateBuilder::new_from_existing(state).with_config(config).build())
    }

    fn create_database(&self, name: &str, if_not_exists: bool) -> Result<Response, MysqlError> {
        if self.database_exists(name) {
            return if if_not_exists {
                Ok(Response::ok())
            } else {
                Err(MysqlError::new(1007, "HY000", format!("Can't create database '{name}'; database exists")))
            };
        }
        self.catalog()
            .register_schema(name, Arc::new(MemorySchemaProvider::new()))
            .map_err(|e| MysqlError::internal(e.to_string()))?;
        Ok(Response::Ok { affected_rows: 1, last_insert_id: 0, info: String::new() })
    }

    fn drop_database(&self, name: &str, if_exists: bool) -> Result<Response, MysqlError> {
        if self.catalog().schema(name).is_none() {
            return if if_exists {
                Ok(Response::ok())
            } else {
                Err(MysqlError::new(1008, "HY000", format!("Can't drop database '{name}'; database doesn't exist")))
            };
        }
        self.catalog().deregister_schema(name, true).map_err(|e| MysqlError::internal(e.to_string()))?;
        Ok(Response::ok())
    }

    fn show_tables(&self, session: &Session) -> Result<Response, MysqlError> {
        let db = session.database.clone().ok_or_else(MysqlError::no_database_selected)?;
        let schema = self.catalog().schema(&db).ok_or_else(|| MysqlError::unknown_database(&db))?;
        let mut names = schema.table_names();
        names.sort();
        Ok(rows(&[&format!("Tables_in_{db}")], names.into_iter().map(|n| vec![n]).collect()))
    }

    /// Runs SQL through DataFusion.
    async fn run(&self, session: &Session, sql: &str) -> Result<Response, MysqlError> {
        let ctx = self.session_context(session);
        // Classify before executing: DataFusion runs DDL eagerly and hands back an empty plan.
        let plan = ctx.state().create_logical_plan(sql).await.map_err(errors::to_mysql)?;
        let is_change = matches!(
            plan,
            LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Copy(_) | LogicalPlan::Statement(_)
        );
        let df = ctx.execute_logical_plan(plan).await.map_err(errors::to_mysql)?;
        // A result set needs at least one column; anything else is an OK.
        if is_change || df.schema().fields().is_empty() {
            let batches = df.collect().await.map_err(errors::to_mysql)?;
            let affected = batches
                .first()
                .and_then(|b| b.column(0).as_any().downcast_ref::<arrow_array::UInt64Array>().map(|a| a.value(0)))
                .unwrap_or(0);
            return Ok(Response::Ok { affected_rows: affected, last_insert_id: 0, info: String::new() });
        }
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = df.execute_stream().await.map_err(errors::to_mysql)?;
        let batches = stream.map_err(errors::to_mysql).boxed();
        Ok(Response::Rows { schema, table: String::new(), batches })
    }
}

fn rows(names: &[&str], rows: Vec<Vec<String>>) -> Response {
    let fields: Vec<Field> = names.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect();
    let schema = Arc::new(Schema::new(fields));
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|c| Arc::new(StringArray::from(rows.iter().map(|r| r[c].clone()).collect::<Vec<_>>())) as ArrayRef)
        .collect();
    match RecordBatch::try_new(schema.clone(), columns) {
        Ok(batch) => Response::Rows { schema, table: String::new(), batches: Box::pin(stream::iter([Ok(batch)])) },
        Err(e) => Response::Rows {
            schema,
            table: String::new(),
            batches: Box::pin(stream::iter([Err(MysqlError::internal(e.to_string()))])),
        },
    }
}

/// The words of a statement, lowercased, for recognising the MySQL-only ones.
fn words(sql: &str) -> Vec<String> {
    sql.trim().trim_end_matches(';').split_whitespace().map(|w| w.trim_matches('`').to_ascii_lowercase()).collect()
}

/// Counts `?` placeholders outside quotes and comments.
pub fn count_placeholders(sql: &str) -> usize {
    let mut n = 0;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), '\\') if q != '`' => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '?') => n += 1,
            _ => {}
        }
    }
    n
}

/// The SQL literal for a bound parameter.
fn literal(p: &Param) -> String {
    match p {
        Param::Null => "NULL".into(),
        Param::Int(v) => v.to_string(),
        Param::UInt(v) => v.to_string(),
        Param::Float(v) if v.is_finite() => format!("{v:?}"),
        Param::Float(_) => "NULL".into(),
        Param::Text(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        Param::Bytes(b) => format!("'{}'", String::from_utf8_lossy(b).replace('\\', "\\\\").replace('\'', "''")),
    }
}

/// Replaces the `?` placeholders of `sql` with `params`, outside quotes.
pub fn bind(sql: &str, params: &[Param]) -> Result<String, MysqlError> {
    let mut out = String::with_capacity(sql.len() + params.len() * 8);
    let mut next = params.iter();
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), '\\') if q != '`' => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"' | '`') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                out.push_str(&literal(next.next().ok_or_else(|| MysqlError::wrong_arguments("too few parameters"))?))
            }
            (None, c) => out.push(c),
        }
    }
    if next.next().is_some() {
        return Err(MysqlError::wrong_arguments("too many parameters"));
    }
    Ok(out)
}

#[async_trait]
impl QueryHandler for Engine {
    async fn credential(&self, user: &str) -> Option<StoredCredential> {
        self.users.read().get(user).cloned()
    }

    async fn use_database(&self, session: &mut Session, database: &str) -> Result<(), MysqlError> {
        if !self.database_exists(database) {
            return Err(MysqlError::unknown_database(database));
        }
        session.database = Some(database.to_string());
        Ok(())
    }

    #[tracing::instrument(skip(self, session), fields(db = ?session.database))]
    async fn query(&self, session: &mut Session, sql: &str) -> Result<Response, MysqlError> {
        if let Some(answer) = probes::answer(sql, session) {
            return Ok(answer);
        }
        let w = words(sql);
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["use", db] => {
                self.use_database(session, db).await?;
                Ok(Response::ok())
            }
            ["create", "database" | "schema", "if", "not", "exists", name] => self.create_database(name, true),
            ["create", "database" | "schema", name, ..] => self.create_database(name, false),
            ["drop", "database" | "schema", "if", "exists", name] => self.drop_database(name, true),
            ["drop", "database" | "schema", name] => self.drop_database(name, false),
            ["show", "databases" | "schemas"] => {
                Ok(rows(&["Database"], self.databases().into_iter().map(|d| vec![d]).collect()))
            }
            ["show", "tables"] | ["show", "full", "tables"] => self.show_tables(session),
            _ => self.run(session, &probes::substitute_session_values(sql, session)).await,
        }
    }

    async fn field_list(&self, session: &mut Session, table: &str) -> Result<SchemaRef, MysqlError> {
        let ctx = self.session_context(session);
        let provider = ctx.table_provider(table).await.map_err(|_| {
            MysqlError::no_such_table(format!(
                "Table '{}.{table}' doesn't exist",
                session.database.clone().unwrap_or_default()
            ))
        })?;
        Ok(provider.schema())
    }

    async fn prepare(&self, session: &mut Session, sql: &str) -> Result<usize, MysqlError> {
        let n = count_placeholders(sql);
        // Check the statement parses (with NULLs for the parameters).
        if probes::answer(sql, session).is_none() {
            let probe = bind(sql, &vec![Param::Null; n])?;
            let dialect = datafusion::sql::sqlparser::dialect::MySqlDialect {};
            datafusion::sql::parser::DFParser::parse_sql_with_dialect(&probe, &dialect)
                .map_err(|e| MysqlError::syntax(format!("You have an error in your SQL syntax: {e}")))?;
        }
        Ok(n)
    }

    async fn execute(&self, session: &mut Session, sql: &str, params: &[Param]) -> Result<Response, MysqlError> {
        let sql = bind(sql, params)?;
        self.query(session, &sql).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tables_survive_later_statements() {
        let engine = Engine::new("");
        let mut s = Session::default();
        for sql in ["CREATE DATABASE shop", "USE shop", "CREATE TABLE t1 (id BIGINT)", "CREATE TABLE t2 (id BIGINT)"] {
            engine.query(&mut s, sql).await.unwrap();
        }
        let mut names = engine.catalog().schema("shop").unwrap().table_names();
        names.sort();
        assert_eq!(names, ["t1", "t2"]);
    }

    #[test]
    fn placeholders_outside_quotes_are_bound() {
        assert_eq!(count_placeholders("SELECT ?, '?', \"a?\", `b?`, ?"), 2);
        let sql = bind("SELECT ? + 1, '?', ?", &[Param::Int(41), Param::Text("it's \\ ok".into())]).unwrap();
        assert_eq!(sql, "SELECT 41 + 1, '?', 'it''s \\\\ ok'");
        assert!(bind("SELECT ?", &[]).is_err());
        assert!(bind("SELECT 1", &[Param::Null]).is_err());
    }
}
