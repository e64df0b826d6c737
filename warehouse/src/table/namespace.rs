//! Databases and tables: the names in the catalog, their creation and removal.

use std::sync::Arc;

use automq_storage::metadata::state::{kv_digest, CatalogRecord};
use serde::{Deserialize, Serialize};

use super::types::SqlType;
use super::{ddl, is_inline, random_id, segment_objects, TableDef, TableMeta, Warehouse, WhError, MAX_ATTEMPTS, R};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DatabaseMeta {
    created_ms: u64,
}

fn db_key(db: &str) -> String {
    format!("wh/db/{db}")
}

pub(super) fn table_key(db: &str, name: &str) -> String {
    format!("wh/table/{db}/{name}")
}

fn tables_prefix(db: &str) -> String {
    format!("wh/table/{db}/")
}

pub(super) const GARBAGE_PREFIX: &str = "wh/garbage/";

fn check_name(kind: &str, name: &str) -> R<()> {
    if name.is_empty() || name.len() > 64 || name.contains('/') || name.chars().any(char::is_control) {
        return Err(WhError::Invalid(format!("Incorrect {kind} name '{name}'")));
    }
    Ok(())
}

impl Warehouse {
    pub fn databases(&self) -> Vec<String> {
        let state = self.catalog.state();
        state
            .kv
            .range("wh/db/".to_string()..)
            .take_while(|(k, _)| k.starts_with("wh/db/"))
            .map(|(k, _)| k["wh/db/".len()..].to_string())
            .collect()
    }

    pub fn database_exists(&self, db: &str) -> bool {
        self.catalog.state().kv.contains_key(&db_key(db))
    }

    pub fn tables(&self, db: &str) -> R<Vec<String>> {
        let state = self.catalog.state();
        if !state.kv.contains_key(&db_key(db)) {
            return Err(WhError::UnknownDatabase(db.to_string()));
        }
        let prefix = tables_prefix(db);
        Ok(state
            .kv
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k[prefix.len()..].to_string())
            .collect())
    }

    /// A table's committed metadata (None if absent). Names match exactly, then ignoring case.
    pub fn table(&self, db: &str, name: &str) -> Option<Arc<TableMeta>> {
        let state = self.catalog.state();
        let value = state.kv.get(&table_key(db, name)).or_else(|| {
            let prefix = tables_prefix(db);
            state
                .kv
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .find(|(k, _)| k[prefix.len()..].eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })?;
        match serde_json::from_str::<TableMeta>(value) {
            Ok(meta) => Some(Arc::new(TableMeta {
                read_digest: kv_digest(value),
                source: super::StateRef(Some(state.clone())),
                ..meta
            })),
            Err(e) => {
                tracing::error!(db, table = name, error = %e, "unreadable table metadata");
                None
            }
        }
    }

    pub(super) fn require_table(&self, db: &str, name: &str) -> R<Arc<TableMeta>> {
        if !self.database_exists(db) {
            return Err(WhError::UnknownDatabase(db.to_string()));
        }
        self.table(db, name).ok_or_else(|| WhError::UnknownTable(db.to_string(), name.to_string()))
    }

    pub async fn create_database(&self, db: &str, if_not_exists: bool) -> R<bool> {
        check_name("database", db)?;
        for _ in 0..MAX_ATTEMPTS {
            if self.database_exists(db) {
                return if if_not_exists { Ok(false) } else { Err(WhError::DatabaseExists(db.to_string())) };
            }
            let value = serde_json::to_string(&DatabaseMeta { created_ms: self.clock.now_ms() })
                .map_err(|e| WhError::internal(e.to_string()))?;
            let records =
                vec![Self::expect(&db_key(db), None), CatalogRecord::KvPut { key: db_key(db), value: value.clone() }];
            if self
                .submit(records, |w| w.catalog.state().kv.get(&db_key(db)).map(|v| &**v) == Some(value.as_str()))
                .await?
            {
                return Ok(true);
            }
        }
        Err(WhError::Storage("too many conflicting catalog changes; try again".into()))
    }

    pub async fn drop_database(&self, db: &str, if_exists: bool) -> R<bool> {
        for _ in 0..MAX_ATTEMPTS {
            if !self.database_exists(db) {
                return if if_exists { Ok(false) } else { Err(WhError::UnknownDatabase(db.to_string())) };
            }
            // Every table is dropped as read; a table created meanwhile conflicts on the
            // database key (creation expects it), one changed meanwhile on its own key.
            let state = self.catalog.state();
            let Some(db_value) = state.kv.get(&db_key(db)) else { continue };
            let mut records =
                vec![Self::expect(&db_key(db), Some(db_value)), CatalogRecord::KvDelete { key: db_key(db) }];
            let prefix = tables_prefix(db);
            for (key, value) in state.kv.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
                records.push(Self::expect(key, Some(value)));
                records.push(CatalogRecord::KvDelete { key: key.clone() });
                match serde_json::from_str::<TableMeta>(value) {
                    Ok(meta) => records.extend(self.garbage_records(meta.segments.iter().flat_map(segment_objects))),
                    Err(e) => {
                        tracing::error!(key, error = %e, "unreadable table metadata; its objects stay in the bucket")
                    }
                }
            }
            if self.submit(records, |w| !w.database_exists(db)).await? {
                return Ok(true);
            }
        }
        Err(WhError::Storage("too many conflicting catalog changes; try again".into()))
    }

    /// Records dropping objects no longer referenced: queued for deletion after the grace
    /// period, or, for inline payloads, deleted from the catalog at once (readers of older
    /// versions read them from the state they planned against).
    pub(super) fn garbage_records(&self, keys: impl IntoIterator<Item = String>) -> Vec<CatalogRecord> {
        let now = self.clock.now_ms().to_string();
        keys.into_iter()
            .map(|k| match is_inline(&k) {
                true => CatalogRecord::KvDelete { key: k },
                false => CatalogRecord::KvPut { key: format!("{GARBAGE_PREFIX}{k}"), value: now.clone() },
            })
            .collect()
    }

    pub async fn create_table(&self, db: &str, name: &str, mut def: TableDef, if_not_exists: bool) -> R<bool> {
        check_name("table", name)?;
        ddl::validate(&mut def)?;
        for c in &def.columns {
            check_name("column", &c.name)?;
            SqlType::parse(&c.sql_type).map_err(WhError::Unsupported)?;
        }
        let now = self.clock.now_ms();
        let meta = TableMeta {
            id: format!("{}-{}", now, random_id()),
            database: db.to_string(),
            name: name.to_string(),
            def,
            segments: Vec::new(),
            version: 1,
            commit: random_id(),
            created_ms: now,
            updated_ms: now,
            read_digest: String::new(),
            source: Default::default(),
        };
        let value = serde_json::to_string(&meta).map_err(|e| WhError::internal(e.to_string()))?;
        for _ in 0..MAX_ATTEMPTS {
            if !self.database_exists(db) {
                return Err(WhError::UnknownDatabase(db.to_string()));
            }
            if self.table(db, name).is_some() {
                return if if_not_exists { Ok(false) } else { Err(WhError::TableExists(name.to_string())) };
            }
            let state = self.catalog.state();
            let records = vec![
                Self::expect(&db_key(db), state.kv.get(&db_key(db)).map(|v| &**v)),
                Self::expect(&table_key(db, name), state.kv.get(&table_key(db, name)).map(|v| &**v)),
                CatalogRecord::KvPut { key: table_key(db, name), value: value.clone() },
            ];
            if self.submit(records, |w| w.table(db, name).is_some_and(|t| t.commit == meta.commit)).await? {
                return Ok(true);
            }
        }
        Err(WhError::Storage("too many conflicting catalog changes; try again".into()))
    }

    pub async fn drop_table(&self, db: &str, name: &str, if_exists: bool) -> R<bool> {
        for _ in 0..MAX_ATTEMPTS {
            let meta = match self.require_table(db, name) {
                Ok(m) => m,
                Err(WhError::UnknownTable(..)) if if_exists => return Ok(false),
                Err(e) => return Err(e),
            };
            let key = table_key(db, &meta.name);
            let mut records = vec![
                CatalogRecord::KvExpect { key: key.clone(), digest: Some(meta.read_digest.clone()) },
                CatalogRecord::KvDelete { key },
            ];
            records.extend(self.garbage_records(meta.segments.iter().flat_map(segment_objects)));
            if self.submit(records, |w| w.table(db, &meta.name).is_none_or(|t| t.id != meta.id)).await? {
                self.writers.lock().remove(&meta.id);
                return Ok(true);
            }
        }
        Err(WhError::Storage("too many conflicting catalog changes; try again".into()))
    }
}
