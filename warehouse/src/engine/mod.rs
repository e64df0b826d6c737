//! The SQL engine behind the MySQL protocol: Apache DataFusion with MySQL's dialect, plus
//! what DataFusion does not know about MySQL (databases, `USE`, `SHOW`, driver probes) and
//! StarRocks's table DDL. Tables are the warehouse's (see [`crate::table`]).
//!
//! The catalog `def` (MySQL's catalog name) has one schema per database.
//!
//! Every statement runs as its session's user: [`crate::access`] says what that user may do,
//! read afresh from the catalog at each statement, and each statement path checks it before
//! touching anything (DataFusion-planned statements on their logical plan).

mod accounts;
mod catalog;
mod errors;
mod insert;
mod loads;
mod prepared;
pub mod probes;
mod show;

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use automq_storage::object_store::MemoryStore;
use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use futures::{stream, StreamExt, TryStreamExt};

use crate::access::{plan, Access, Privilege};
use crate::load::RoutineLoads;
use crate::mysql::auth::StoredCredential;
use crate::mysql::binary::Param;
use crate::mysql::error::MysqlError;
use crate::mysql::server::{QueryHandler, Response, Session};
use crate::table::ddl::{self, ColumnDef};
use crate::table::{Warehouse, WarehouseConfig, WhError};

pub use catalog::INFORMATION_SCHEMA;
pub use prepared::{bind, count_placeholders};

/// MySQL's catalog name, used as DataFusion's default catalog.
pub const CATALOG: &str = "def";

/// The engine shared by every connection of a query node.
pub struct Engine {
    ctx: SessionContext,
    /// The bootstrap superuser's credential (`--root-password`); other users are in the catalog.
    root: StoredCredential,
    warehouse: Arc<Warehouse>,
    loads: Arc<RoutineLoads>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// A warehouse error as the MySQL error a client expects.
pub fn wh_to_mysql(e: &WhError) -> MysqlError {
    match e {
        WhError::UnknownDatabase(db) => MysqlError::unknown_database(db),
        WhError::DatabaseExists(_) => MysqlError::new(1007, "HY000", e.to_string()),
        WhError::UnknownTable(..) => MysqlError::no_such_table(e.to_string()),
        WhError::TableExists(_) => MysqlError::new(1050, "42S01", e.to_string()),
        WhError::Syntax(m) => MysqlError::syntax(m.clone()),
        WhError::Unsupported(m) => MysqlError::not_supported(m.clone()),
        WhError::Invalid(m) if m.starts_with("Column cannot be null") => MysqlError::new(1048, "23000", m.clone()),
        WhError::Invalid(m) if m.starts_with("Unknown column") => MysqlError::new(1054, "42S22", m.clone()),
        WhError::Invalid(m) if m.starts_with("Incorrect") => MysqlError::new(1103, "42000", m.clone()),
        WhError::Invalid(m) => MysqlError::new(1105, "HY000", m.clone()),
        WhError::Conflict(m) => MysqlError::new(1105, "HY000", m.clone()),
        WhError::Storage(m) | WhError::Internal(m) => MysqlError::internal(m.clone()),
    }
}

fn wh(e: WhError) -> MysqlError {
    wh_to_mysql(&e)
}

/// An identifier as written: backquoted ones keep their case, others are lowercased.
fn ident(word: &str) -> String {
    let w = word.trim_end_matches(';');
    match w.strip_prefix('`').and_then(|x| x.strip_suffix('`')) {
        Some(q) => q.replace("``", "`"),
        None => w.to_ascii_lowercase(),
    }
}

/// `db.table` or `table` (with the session's database).
fn qualified(word: &str, session: &Session) -> Result<(String, String), MysqlError> {
    let w = word.trim_end_matches(';');
    // Split on a dot outside backquotes.
    let mut quoted = false;
    let split = w.char_indices().find(|&(_, c)| {
        if c == '`' {
            quoted = !quoted;
        }
        c == '.' && !quoted
    });
    match split {
        Some((i, _)) => Ok((ident(&w[..i]), ident(&w[i + 1..]))),
        None => Ok((session.database.clone().ok_or_else(MysqlError::no_database_selected)?, ident(w))),
    }
}

/// The SQL type a column of Arrow type `dt` gets in `CREATE TABLE ... AS SELECT`.
fn sql_type_of(dt: &DataType) -> Result<String, MysqlError> {
    Ok(match dt {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::UInt8 => "tinyint unsigned".into(),
        DataType::UInt16 => "smallint unsigned".into(),
        DataType::UInt32 => "int unsigned".into(),
        DataType::UInt64 => "bigint unsigned".into(),
        DataType::Float16 | DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({},{})", (*p).min(38), s.max(&0)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "varchar".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "varbinary".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(..) => "datetime".into(),
        DataType::Null => "varchar".into(),
        other => return Err(MysqlError::not_supported(format!("cannot store a column of type {other} in a table"))),
    })
}

impl Engine {
    /// An engine over `warehouse`, with user `root` (password `root_password`, empty allowed).
    pub fn new(warehouse: Arc<Warehouse>, root_password: &str) -> Arc<Self> {
        let loads = RoutineLoads::new(warehouse.clone(), "0");
        Engine::with_loads(warehouse, loads, root_password)
    }

    /// An engine whose routine-load statements go to `loads`.
    pub fn with_loads(warehouse: Arc<Warehouse>, loads: Arc<RoutineLoads>, root_password: &str) -> Arc<Self> {
        // No default catalog of DataFusion's own: every state built from this config would
        // create a fresh, empty `def` catalog and replace ours in the shared catalog list.
        let config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .with_default_catalog_and_schema(CATALOG, INFORMATION_SCHEMA)
            .set_str("datafusion.sql_parser.dialect", "MySQL");
        let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(CATALOG, catalog::WarehouseCatalog::new(warehouse.clone(), Arc::new(Access::root())));
        let root = StoredCredential::from_password(root_password);
        Arc::new(Engine { ctx, root, warehouse, loads })
    }

    /// An engine on a private in-memory bucket (tests, examples).
    pub async fn in_memory(root_password: &str) -> Result<Arc<Self>, WhError> {
        let warehouse =
            Warehouse::open(Arc::new(MemoryStore::new()), WarehouseConfig::default(), automq_storage::clock::system())
                .await?;
        Ok(Engine::new(warehouse, root_password))
    }

    pub fn warehouse(&self) -> &Arc<Warehouse> {
        &self.warehouse
    }

    pub fn loads(&self) -> &Arc<RoutineLoads> {
        &self.loads
    }

    fn databases(&self) -> Vec<String> {
        let mut names = self.warehouse.databases();
        names.push(INFORMATION_SCHEMA.to_string());
        names.sort();
        names.dedup();
        names
    }

    fn database_exists(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(INFORMATION_SCHEMA) || self.warehouse.database_exists(name)
    }

    /// A session context whose default schema is the session's database, and whose catalog
    /// (information_schema in particular) shows only what `access` may see.
    fn session_context(&self, session: &Session, access: &Access) -> SessionContext {
        let state = self.ctx.state();
        let schema = default_schema(session);
        let config = state.config().clone().with_default_catalog_and_schema(CATALOG, &schema);
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        catalogs.register_catalog(
            CATALOG.to_string(),
            catalog::WarehouseCatalog::new(self.warehouse.clone(), Arc::new(access.clone())),
        );
        SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(state).with_config(config).with_catalog_list(catalogs).build(),
        )
    }

    /// Plans `sql` and checks the user may touch every table the plan reads or writes.
    async fn checked_plan(
        &self,
        ctx: &SessionContext,
        session: &Session,
        access: &Access,
        sql: &str,
    ) -> Result<LogicalPlan, MysqlError> {
        let plan = match ctx.state().create_logical_plan(sql).await {
            Ok(plan) => plan,
            Err(e) => {
                let e = errors::to_mysql(e);
                // MySQL checks privileges before existence: a missing table is reported only
                // to a user who may see every table the statement names.
                if e.code == 1146 && !access.is_root() {
                    for (db, table) in plan::named_tables(sql, &default_schema(session)) {
                        access.require_sees_table("SELECT", &db, &table)?;
                    }
                }
                return Err(e);
            }
        };
        access.check_plan(&plan::needs(&plan, &default_schema(session)))?;
        Ok(plan)
    }

    async fn create_database(&self, name: &str, if_not_exists: bool) -> Result<Response, MysqlError> {
        if name.eq_ignore_ascii_case(INFORMATION_SCHEMA) {
            return Err(MysqlError::new(1007, "HY000", format!("Can't create database '{name}'; database exists")));
        }
        let created = self.warehouse.create_database(name, if_not_exists).await.map_err(wh)?;
        Ok(Response::Ok { affected_rows: created as u64, last_insert_id: 0, info: String::new() })
    }

    async fn drop_database(&self, name: &str, if_exists: bool) -> Result<Response, MysqlError> {
        if name.eq_ignore_ascii_case(INFORMATION_SCHEMA) {
            return Err(MysqlError::new(1044, "42000", format!("Access denied to database '{name}'")));
        }
        match self.warehouse.drop_database(name, if_exists).await {
            Ok(_) => Ok(Response::ok()),
            Err(WhError::UnknownDatabase(_)) => {
                Err(MysqlError::new(1008, "HY000", format!("Can't drop database '{name}'; database doesn't exist")))
            }
            Err(e) => Err(wh(e)),
        }
    }

    fn show_tables(
        &self,
        access: &Access,
        db: Option<String>,
        full: bool,
        like: Option<&str>,
    ) -> Result<Response, MysqlError> {
        let db = db.ok_or_else(MysqlError::no_database_selected)?;
        access.require_sees_database(&db)?;
        let mut names = if db.eq_ignore_ascii_case(INFORMATION_SCHEMA) {
            vec![
                "columns".into(),
                "key_column_usage".into(),
                "schemata".into(),
                "statistics".into(),
                "tables".into(),
                "views".into(),
            ]
        } else {
            self.warehouse.tables(&db).map_err(wh)?
        };
        names.retain(|n| like.is_none_or(|p| probes::like(n, p)) && access.sees_table(&db, n));
        names.sort();
        let header = format!("Tables_in_{db}");
        if full {
            Ok(rows(&[&header, "Table_type"], names.into_iter().map(|n| vec![n, "BASE TABLE".into()]).collect()))
        } else {
            Ok(rows(&[&header], names.into_iter().map(|n| vec![n]).collect()))
        }
    }

    fn table_meta(&self, db: &str, name: &str) -> Result<Arc<crate::table::TableMeta>, MysqlError> {
        if !self.database_exists(db) {
            return Err(MysqlError::unknown_database(db));
        }
        self.warehouse
            .table(db, name)
            .ok_or_else(|| MysqlError::no_such_table(format!("Table '{db}.{name}' doesn't exist")))
    }

    async fn create_table(&self, session: &Session, access: &Access, sql: &str) -> Result<Response, MysqlError> {
        let parsed = match ddl::parse_create_table(sql).map_err(|e| wh(e.into()))? {
            Some(p) => p,
            None => return Err(MysqlError::not_supported("only CREATE TABLE and CREATE DATABASE are supported")),
        };
        let db = match parsed.database.clone().or_else(|| session.database.clone()) {
            Some(db) => db,
            None => return Err(MysqlError::no_database_selected()),
        };
        access.require(Privilege::All, "CREATE", &db, &parsed.name)?;
        let Some(query) = parsed.as_query.clone() else {
            let created =
                self.warehouse.create_table(&db, &parsed.name, parsed.def, parsed.if_not_exists).await.map_err(wh)?;
            return Ok(Response::Ok {
                affected_rows: 0,
                last_insert_id: 0,
                info: if created { String::new() } else { "table exists".into() },
            });
        };
        // CREATE TABLE ... AS SELECT: the query's columns (unless declared) and its rows.
        let ctx = self.session_context(session, access);
        let plan = self.checked_plan(&ctx, session, access, &query).await?;
        let df = ctx.execute_logical_plan(plan).await.map_err(errors::to_mysql)?;
        let result_schema = df.schema().as_arrow().clone();
        let mut def = parsed.def.clone();
        if def.columns.is_empty() {
            def.columns = result_schema
                .fields()
                .iter()
                .map(|f| {
                    Ok(ColumnDef {
                        name: f.name().clone(),
                        sql_type: sql_type_of(f.data_type())?,
                        nullable: true,
                        default: None,
                        comment: String::new(),
                    })
                })
                .collect::<Result<_, MysqlError>>()?;
        }
        let created =
            self.warehouse.create_table(&db, &parsed.name, def.clone(), parsed.if_not_exists).await.map_err(wh)?;
        if !created {
            return Ok(Response::ok());
        }
        let batches = df.collect().await.map_err(errors::to_mysql)?;
        let meta = self.table_meta(&db, &parsed.name)?;
        let target = meta.schema();
        let cast = batches
            .iter()
            .map(|b| {
                let columns = (0..target.fields().len())
                    .map(|i| {
                        let column = b
                            .columns()
                            .get(i)
                            .ok_or_else(|| MysqlError::new(1136, "21S01", "Column count doesn't match value count"))?;
                        datafusion::arrow::compute::cast(column, target.field(i).data_type())
                            .map_err(|e| MysqlError::internal(e.to_string()))
                    })
                    .collect::<Result<Vec<ArrayRef>, MysqlError>>()?;
                RecordBatch::try_new(target.clone(), columns).map_err(|e| MysqlError::internal(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.warehouse.write(&db, &meta.name, crate::table::Write::Insert(cast)).await.map_err(wh)?;
        Ok(Response::Ok { affected_rows: n, last_insert_id: 0, info: String::new() })
    }

    async fn drop_tables(
        &self,
        session: &Session,
        access: &Access,
        names: &[String],
        if_exists: bool,
    ) -> Result<Response, MysqlError> {
        for word in names {
            for part in word.split(',').filter(|p| !p.is_empty()) {
                let (db, name) = qualified(part, session)?;
                access.require(Privilege::All, "DROP", &db, &name)?;
                if !self.database_exists(&db) {
                    return Err(MysqlError::unknown_database(&db));
                }
                match self.warehouse.drop_table(&db, &name, if_exists).await {
                    Err(WhError::UnknownTable(..)) => {
                        return Err(MysqlError::new(1051, "42S02", format!("Unknown table '{db}.{name}'")))
                    }
                    other => other.map_err(wh)?,
                };
            }
        }
        Ok(Response::ok())
    }

    /// `INSERT ... VALUES` with literals only, without the planner.
    async fn literal_insert(
        &self,
        session: &Session,
        access: &Access,
        parsed: insert::LiteralInsert,
    ) -> Result<Response, MysqlError> {
        let db = match parsed.database.clone().or_else(|| session.database.clone()) {
            Some(db) => db,
            None => return Err(MysqlError::no_database_selected()),
        };
        access.require(Privilege::Insert, "INSERT", &db, &parsed.table)?;
        let meta = self.table_meta(&db, &parsed.table)?;
        let batch = insert::to_batch(&parsed, &meta).map_err(|(code, msg)| {
            let state = match code {
                1048 => "23000",
                1054 => "42S22",
                1136 => "21S01",
                _ => "HY000",
            };
            MysqlError::new(code, state, msg)
        })?;
        let n = self.warehouse.write(&db, &meta.name, crate::table::Write::Insert(vec![batch])).await.map_err(wh)?;
        Ok(Response::Ok { affected_rows: n, last_insert_id: 0, info: String::new() })
    }

    /// Runs SQL through DataFusion.
    async fn run(&self, session: &Session, access: &Access, sql: &str) -> Result<Response, MysqlError> {
        let ctx = self.session_context(session, access);
        // Classify before executing: DataFusion runs DDL eagerly and hands back an empty plan.
        let plan = self.checked_plan(&ctx, session, access, sql).await?;
        if let LogicalPlan::Ddl(ddl) = &plan {
            return Err(MysqlError::not_supported(format!("{} is not supported", ddl.name())));
        }
        let is_change = matches!(plan, LogicalPlan::Dml(_) | LogicalPlan::Copy(_) | LogicalPlan::Statement(_));
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

/// The schema unqualified names resolve in: the session's database, else information_schema.
fn default_schema(session: &Session) -> String {
    session.database.clone().unwrap_or_else(|| INFORMATION_SCHEMA.to_string())
}

fn rows(names: &[&str], rows: Vec<Vec<String>>) -> Response {
    let rows = rows.into_iter().map(|r| r.into_iter().map(Some).collect()).collect();
    text_rows(names, rows, false)
}

/// Text columns that may hold NULLs.
fn nullable_rows(names: &[&str], rows: Vec<Vec<Option<String>>>) -> Response {
    text_rows(names, rows, true)
}

fn text_rows(names: &[&str], rows: Vec<Vec<Option<String>>>, nullable: bool) -> Response {
    let fields: Vec<Field> = names.iter().map(|n| Field::new(*n, DataType::Utf8, nullable)).collect();
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

#[async_trait]
impl QueryHandler for Engine {
    async fn credential(&self, user: &str) -> Option<StoredCredential> {
        self.stored_credential(user).await
    }

    async fn use_database(&self, session: &mut Session, database: &str) -> Result<(), MysqlError> {
        // Privileges first: whether a database exists is not told to whoever may not see it.
        self.access(session).require_sees_database(database)?;
        if !self.database_exists(database) {
            self.warehouse.refresh().await.map_err(wh)?;
        }
        if !self.database_exists(database) {
            return Err(MysqlError::unknown_database(database));
        }
        session.database = Some(database.to_string());
        Ok(())
    }

    #[tracing::instrument(skip(self, session), fields(db = ?session.database))]
    async fn query(&self, session: &mut Session, sql: &str) -> Result<Response, MysqlError> {
        if accounts::is_account_statement(sql) {
            self.warehouse.refresh_if_stale().await.map_err(wh)?;
            let access = self.access(session);
            return self.account_statement(session, &access, sql).await;
        }
        if let Some(answer) = probes::answer(sql, session) {
            return Ok(answer);
        }
        self.warehouse.refresh_if_stale().await.map_err(wh)?;
        let access = self.access(session);
        let w = words(sql);
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        let orig: Vec<&str> = sql.trim().trim_end_matches(';').split_whitespace().collect();
        let like = |i: usize| -> Option<String> {
            (w.get(i) == Some(&"like"))
                .then(|| orig.get(i + 1).map(|p| p.trim_matches(|c| c == '\'' || c == '"').to_string()))
                .flatten()
        };
        match w.as_slice() {
            ["use", _] => {
                self.use_database(session, &ident(orig[1])).await?;
                Ok(Response::ok())
            }
            ["create", "database" | "schema", "if", "not", "exists", _, ..] => {
                let name = ident(orig[5]);
                access.require_database(Privilege::All, &name)?;
                self.create_database(&name, true).await
            }
            ["create", "database" | "schema", _, ..] => {
                let name = ident(orig[2]);
                access.require_database(Privilege::All, &name)?;
                self.create_database(&name, false).await
            }
            ["drop", "database" | "schema", "if", "exists", _] => {
                let name = ident(orig[4]);
                access.require_database(Privilege::All, &name)?;
                self.drop_database(&name, true).await
            }
            ["drop", "database" | "schema", _] => {
                let name = ident(orig[2]);
                access.require_database(Privilege::All, &name)?;
                self.drop_database(&name, false).await
            }
            ["create", "table", ..] | ["create", "external", "table", ..] | ["create", "temporary", "table", ..] => {
                self.create_table(session, &access, sql).await
            }
            ["drop", "table", "if", "exists", ..] => {
                let names: Vec<String> =
                    orig[4..].iter().filter(|n| !n.eq_ignore_ascii_case("force")).map(|s| s.to_string()).collect();
                self.drop_tables(session, &access, &names, true).await
            }
            ["drop", "table", ..] => {
                let names: Vec<String> =
                    orig[2..].iter().filter(|n| !n.eq_ignore_ascii_case("force")).map(|s| s.to_string()).collect();
                self.drop_tables(session, &access, &names, false).await
            }
            ["create" | "alter" | "pause" | "resume" | "stop", "routine", "load", ..]
            | ["show", "routine", "load", ..]
            | ["show", "all", "routine", "load", ..] => match self.routine_load(session, &access, sql).await? {
                Some(r) => Ok(r),
                None => Err(MysqlError::syntax("You have an error in your SQL syntax near 'ROUTINE LOAD'")),
            },
            ["insert", "into", ..] => match insert::parse(sql) {
                Some(parsed) => self.literal_insert(session, &access, parsed).await,
                None => self.run(session, &access, &probes::substitute_session_values(sql, session)).await,
            },
            ["truncate", "table", _] | ["truncate", _] => {
                let (db, name) = qualified(orig[orig.len() - 1], session)?;
                access.require(Privilege::All, "DROP", &db, &name)?;
                let meta = self.table_meta(&db, &name)?;
                let n = self.warehouse.write(&db, &meta.name, crate::table::Write::Truncate).await.map_err(wh)?;
                Ok(Response::Ok { affected_rows: n, last_insert_id: 0, info: String::new() })
            }
            ["alter", "table", _, "compact", ..] => {
                let (db, name) = qualified(orig[2], session)?;
                access.require(Privilege::All, "ALTER", &db, &name)?;
                let meta = self.table_meta(&db, &name)?;
                self.warehouse.compact(&db, &meta.name, true).await.map_err(wh)?;
                Ok(Response::ok())
            }
            ["show", "databases" | "schemas", ..] => {
                let pattern = like(2);
                let dbs = self
                    .databases()
                    .into_iter()
                    .filter(|d| pattern.as_deref().is_none_or(|p| probes::like(d, p)) && access.sees_database(d));
                Ok(rows(&["Database"], dbs.map(|d| vec![d]).collect()))
            }
            ["show", "tables", "from" | "in", _, ..] => {
                self.show_tables(&access, Some(ident(orig[3])), false, like(4).as_deref())
            }
            ["show", "full", "tables", "from" | "in", _, ..] => {
                self.show_tables(&access, Some(ident(orig[4])), true, like(5).as_deref())
            }
            ["show", "tables", ..] => self.show_tables(&access, session.database.clone(), false, like(2).as_deref()),
            ["show", "full", "tables", ..] => {
                self.show_tables(&access, session.database.clone(), true, like(3).as_deref())
            }
            ["show", "create", "table", _] => {
                let (db, name) = qualified(orig[3], session)?;
                access.require_sees_table("SHOW", &db, &name)?;
                let meta = self.table_meta(&db, &name)?;
                Ok(rows(&["Table", "Create Table"], vec![vec![meta.name.clone(), show::create_table(&meta)]]))
            }
            ["describe" | "desc" | "explain", _] => {
                let (db, name) = qualified(orig[1], session)?;
                access.require_sees_table("SELECT", &db, &name)?;
                let meta = self.table_meta(&db, &name)?;
                let (names, r) = show::columns(&meta, false);
                Ok(rows(&names, r))
            }
            ["show", "columns" | "fields", "from" | "in", _, ..]
            | ["show", "full", "columns" | "fields", "from" | "in", _, ..] => {
                let full = w[1] == "full";
                let at = if full { 4 } else { 3 };
                let (mut db, name) =
                    qualified(orig[at], session).or_else(|_| Ok::<_, MysqlError>((String::new(), ident(orig[at]))))?;
                if matches!(w.get(at + 1), Some(&"from") | Some(&"in")) {
                    db = ident(orig.get(at + 2).copied().unwrap_or_default());
                }
                if db.is_empty() {
                    return Err(MysqlError::no_database_selected());
                }
                access.require_sees_table("SELECT", &db, &name)?;
                let meta = self.table_meta(&db, &name)?;
                let (names, mut r) = show::columns(&meta, full);
                if let Some(p) = w.iter().position(|x| *x == "like").and_then(like) {
                    r.retain(|row| probes::like(&row[0], &p));
                }
                Ok(rows(&names, r))
            }
            ["show", "table", "status", ..] => {
                let db = session.database.clone().ok_or_else(MysqlError::no_database_selected)?;
                access.require_sees_database(&db)?;
                let mut names = self.warehouse.tables(&db).map_err(wh)?;
                names.retain(|n| access.sees_table(&db, n));
                names.sort();
                let r = names
                    .iter()
                    .filter_map(|n| self.warehouse.table(&db, n))
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            "OLAP".into(),
                            t.live_rows().to_string(),
                            t.data_bytes().to_string(),
                            t.def.comment.clone(),
                        ]
                    })
                    .collect();
                Ok(rows(&["Name", "Engine", "Rows", "Data_length", "Comment"], r))
            }
            _ => self.run(session, &access, &probes::substitute_session_values(sql, session)).await,
        }
    }

    async fn field_list(&self, session: &mut Session, table: &str) -> Result<SchemaRef, MysqlError> {
        let access = self.access(session);
        if let Some(db) = &session.database {
            access.require_sees_table("SELECT", db, table)?;
        }
        let ctx = self.session_context(session, &access);
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
        if probes::answer(sql, session).is_none() && !accounts::is_account_statement(sql) {
            let probe = bind(sql, &vec![Param::Null; n])?;
            let dialect = datafusion::sql::sqlparser::dialect::MySqlDialect {};
            datafusion::sql::parser::DFParser::parse_sql_with_dialect(&probe, &dialect)
                .map_err(|e| MysqlError::syntax(format!("You have an error in your SQL syntax: {e}")))?;
            self.check_prepared(session, &probe).await?;
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
        let engine = Engine::in_memory("").await.unwrap();
        let mut s = Session { user: "root".into(), ..Session::default() };
        for sql in ["CREATE DATABASE shop", "USE shop", "CREATE TABLE t1 (id BIGINT)", "CREATE TABLE t2 (id BIGINT)"] {
            engine.query(&mut s, sql).await.unwrap();
        }
        let mut names = engine.warehouse.tables("shop").unwrap();
        names.sort();
        assert_eq!(names, ["t1", "t2"]);
    }
}
