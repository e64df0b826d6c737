//! The warehouse as DataFusion's catalog `def`: one schema per database, tables served from
//! the committed metadata, and MySQL's `information_schema` (SCHEMATA, TABLES, COLUMNS,
//! KEY_COLUMN_USAGE, STATISTICS) generated from it.
//!
//! Each statement gets its own catalog carrying its user's [`Access`]: names are listed (and
//! information_schema has rows) only for what the user holds some privilege on. Reading a table
//! is not refused here but on the statement's plan, with MySQL's error.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemTable, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};

use crate::access::Access;
use crate::table::provider::WarehouseTable;
use crate::table::types::SqlType;
use crate::table::{KeyModel, Warehouse};

pub const INFORMATION_SCHEMA: &str = "information_schema";

/// A table and the database it is in.
type TableRow = (String, Arc<crate::table::TableMeta>);

#[derive(Debug)]
pub(super) struct WarehouseCatalog {
    warehouse: Arc<Warehouse>,
    access: Arc<Access>,
}

impl WarehouseCatalog {
    pub(super) fn new(warehouse: Arc<Warehouse>, access: Arc<Access>) -> Arc<Self> {
        Arc::new(WarehouseCatalog { warehouse, access })
    }
}

impl CatalogProvider for WarehouseCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.warehouse.databases();
        names.retain(|db| self.access.sees_database(db));
        names.push(INFORMATION_SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name.eq_ignore_ascii_case(INFORMATION_SCHEMA) {
            return Some(Arc::new(InformationSchema {
                warehouse: self.warehouse.clone(),
                access: self.access.clone(),
            }));
        }
        self.warehouse.database_exists(name).then(|| {
            Arc::new(DatabaseSchema {
                warehouse: self.warehouse.clone(),
                db: name.to_string(),
                access: self.access.clone(),
            }) as _
        })
    }

    fn register_schema(
        &self,
        _name: &str,
        _schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Err(DataFusionError::NotImplemented("use CREATE DATABASE".into()))
    }
}

#[derive(Debug)]
struct DatabaseSchema {
    warehouse: Arc<Warehouse>,
    db: String,
    access: Arc<Access>,
}

#[async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.warehouse.tables(&self.db).unwrap_or_default();
        names.retain(|t| self.access.sees_table(&self.db, t));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .warehouse
            .table(&self.db, name)
            .map(|meta| Arc::new(WarehouseTable::new(self.warehouse.clone(), meta)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.warehouse.table(&self.db, name).is_some()
    }

    fn register_table(&self, _name: String, _table: Arc<dyn TableProvider>) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::NotImplemented("views and external tables are not supported".into()))
    }
}

#[derive(Debug)]
struct InformationSchema {
    warehouse: Arc<Warehouse>,
    access: Arc<Access>,
}

const INFO_TABLES: &[&str] = &["schemata", "tables", "columns", "key_column_usage", "statistics", "views"];

fn text_table(columns: &[&str], rows: Vec<Vec<Option<String>>>) -> Result<Arc<dyn TableProvider>> {
    let schema =
        Arc::new(Schema::new(columns.iter().map(|c| Field::new(*c, DataType::Utf8, true)).collect::<Vec<_>>()));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| Arc::new(StringArray::from(rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>())) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

impl InformationSchema {
    fn tables_of(&self) -> Vec<(String, Arc<crate::table::TableMeta>)> {
        let mut out = Vec::new();
        for db in self.warehouse.databases() {
            for name in self.warehouse.tables(&db).unwrap_or_default() {
                if !self.access.sees_table(&db, &name) {
                    continue;
                }
                if let Some(meta) = self.warehouse.table(&db, &name) {
                    out.push((db.clone(), meta));
                }
            }
        }
        out
    }

    fn build(&self, name: &str) -> Result<Arc<dyn TableProvider>> {
        let s = |v: &str| Some(v.to_string());
        match name {
            "schemata" => {
                let mut dbs = self.warehouse.databases();
                dbs.retain(|db| self.access.sees_database(db));
                dbs.push(INFORMATION_SCHEMA.into());
                text_table(
                    &[
                        "catalog_name",
                        "schema_name",
                        "default_character_set_name",
                        "default_collation_name",
                        "sql_path",
                    ],
                    dbs.iter().map(|d| vec![s("def"), s(d), s("utf8mb4"), s("utf8mb4_general_ci"), None]).collect(),
                )
            }
            "tables" => {
                let rows: Vec<(String, Arc<crate::table::TableMeta>)> = self.tables_of();
                let schema = Arc::new(Schema::new(vec![
                    Field::new("table_catalog", DataType::Utf8, false),
                    Field::new("table_schema", DataType::Utf8, false),
                    Field::new("table_name", DataType::Utf8, false),
                    Field::new("table_type", DataType::Utf8, false),
                    Field::new("engine", DataType::Utf8, false),
                    Field::new("table_rows", DataType::UInt64, false),
                    Field::new("data_length", DataType::UInt64, false),
                    Field::new("table_comment", DataType::Utf8, false),
                    Field::new("create_time", DataType::Utf8, true),
                    Field::new("update_time", DataType::Utf8, true),
                ]));
                let time = |ms: u64| {
                    chrono::DateTime::from_timestamp_millis(ms as i64)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                };
                let col = |f: &dyn Fn(&TableRow) -> Option<String>| {
                    Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
                };
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        col(&|_| s("def")),
                        col(&|(db, _)| s(db)),
                        col(&|(_, t)| s(&t.name)),
                        col(&|_| s("BASE TABLE")),
                        col(&|_| s("OLAP")),
                        Arc::new(UInt64Array::from(rows.iter().map(|(_, t)| t.live_rows()).collect::<Vec<_>>())),
                        Arc::new(UInt64Array::from(rows.iter().map(|(_, t)| t.data_bytes()).collect::<Vec<_>>())),
                        col(&|(_, t)| s(&t.def.comment)),
                        col(&|(_, t)| time(t.created_ms)),
                        col(&|(_, t)| time(t.updated_ms)),
                    ],
                )?;
                Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
            }
            "columns" => {
                let mut rows = Vec::new();
                for (db, t) in self.tables_of() {
                    for (i, c) in t.def.columns.iter().enumerate() {
                        let ty = SqlType::parse(&c.sql_type).ok();
                        let key = t.def.keys.iter().any(|k| k == &c.name);
                        rows.push(vec![
                            s("def"),
                            s(&db),
                            s(&t.name),
                            s(&c.name),
                            Some((i + 1).to_string()),
                            c.default.clone(),
                            s(if c.nullable { "YES" } else { "NO" }),
                            ty.as_ref().map(|t| t.data_type().to_string()),
                            ty.as_ref().map(SqlType::column_type),
                            s(match (key, t.def.model) {
                                (true, KeyModel::Primary) => "PRI",
                                (true, KeyModel::Duplicate) => "DUP",
                                _ => "",
                            }),
                            s(""),
                            s(&c.comment),
                        ]);
                    }
                }
                text_table(
                    &[
                        "table_catalog",
                        "table_schema",
                        "table_name",
                        "column_name",
                        "ordinal_position",
                        "column_default",
                        "is_nullable",
                        "data_type",
                        "column_type",
                        "column_key",
                        "extra",
                        "column_comment",
                    ],
                    rows,
                )
            }
            "key_column_usage" | "statistics" => {
                let mut rows = Vec::new();
                for (db, t) in self.tables_of() {
                    if t.def.model == KeyModel::Primary {
                        for (i, k) in t.def.keys.iter().enumerate() {
                            rows.push(vec![s("PRIMARY"), s(&db), s(&t.name), s(k), Some((i + 1).to_string())]);
                        }
                    }
                }
                let index_name = if name == "statistics" { "index_name" } else { "constraint_name" };
                let position = if name == "statistics" { "seq_in_index" } else { "ordinal_position" };
                text_table(&[index_name, "table_schema", "table_name", "column_name", position], rows)
            }
            "views" => text_table(&["table_schema", "table_name", "view_definition"], Vec::new()),
            other => Err(DataFusionError::Plan(format!("table 'information_schema.{other}' not found"))),
        }
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        INFO_TABLES.iter().map(|s| s.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let lower = name.to_ascii_lowercase();
        if !INFO_TABLES.contains(&lower.as_str()) {
            return Ok(None);
        }
        self.build(&lower).map(Some)
    }

    fn table_exist(&self, name: &str) -> bool {
        INFO_TABLES.contains(&name.to_ascii_lowercase().as_str())
    }
}
