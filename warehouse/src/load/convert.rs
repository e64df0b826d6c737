//! Raw rows to table rows: source text cast to the columns' types, `COLUMNS` expressions and
//! `WHERE` evaluated with DataFusion, the change kind of each row worked out, and bad rows set
//! aside with the reason (counted and sampled by the job, never loaded half-way).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::compute::{
    cast_with_options, concat_batches, filter_record_batch, take_record_batch, CastOptions,
};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::{col, lit, try_cast, Expr};
use datafusion::prelude::SessionContext;

use super::format::{Op, RawRow};
use super::stmt::ColumnMapping;
use crate::table::{KeyModel, TableMeta, WhError};

type R<T> = Result<T, WhError>;

const ROW: &str = "__automq_row";
const OP: &str = "__op";

/// The outcome of converting one batch.
#[derive(Debug, Default)]
pub struct Converted {
    pub upserts: Vec<RecordBatch>,
    pub deletes: Vec<RecordBatch>,
    /// Rows that will change the table (after collapsing changes to one key).
    pub loaded: u64,
    /// Rows refused, with a sample of reasons.
    pub error_rows: u64,
    pub error_samples: Vec<String>,
    /// Rows the WHERE clause left out.
    pub unselected: u64,
}

impl Converted {
    fn error(&mut self, reason: String) {
        self.error_rows += 1;
        if self.error_samples.len() < super::job::MAX_ERROR_SAMPLES {
            self.error_samples.push(reason);
        }
    }
}

/// Converts raw rows of one job into rows of its table.
pub struct Converter {
    table: SchemaRef,
    primary: bool,
    keys: Vec<usize>,
    source: Vec<String>,
    derived: Vec<(String, String)>,
    where_sql: Option<String>,
    ctx: SessionContext,
}

impl std::fmt::Debug for Converter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converter").field("source", &self.source).field("derived", &self.derived).finish()
    }
}

impl Converter {
    /// `columns`: the job's COLUMNS (None: the table's columns in order, plus `__op` for JSON).
    pub fn new(meta: &TableMeta, columns: Option<&[ColumnMapping]>, where_sql: Option<&str>, json: bool) -> R<Self> {
        let table = meta.schema();
        let (mut source, mut derived) = (Vec::new(), Vec::new());
        match columns {
            Some(cols) => {
                for c in cols {
                    match c {
                        ColumnMapping::Source(n) => source.push(n.to_ascii_lowercase()),
                        ColumnMapping::Derived { name, expr } => {
                            derived.push((name.to_ascii_lowercase(), expr.clone()))
                        }
                    }
                }
            }
            None => {
                source = table.fields().iter().map(|f| f.name().to_ascii_lowercase()).collect();
                if json {
                    source.push(OP.into());
                }
            }
        }
        let table_names: Vec<String> = table.fields().iter().map(|f| f.name().to_ascii_lowercase()).collect();
        for (name, _) in &derived {
            if name != OP && !table_names.contains(name) {
                return Err(WhError::Invalid(format!(
                    "Unknown column '{name}' in COLUMNS: table '{}' has no such column",
                    meta.name
                )));
            }
        }
        let keys = meta
            .def
            .keys
            .iter()
            .map(|k| table.index_of(k).map_err(|_| WhError::internal(format!("key column {k} missing"))))
            .collect::<R<Vec<_>>>()?;
        let primary = meta.def.model == KeyModel::Primary;
        if !primary && (source.iter().any(|s| s == OP) && columns.is_some() || derived.iter().any(|(n, _)| n == OP)) {
            return Err(WhError::Invalid(format!(
                "__op needs a primary-key table; '{}' is a duplicate-key table",
                meta.name
            )));
        }
        let converter = Converter {
            table,
            primary,
            keys,
            source,
            derived,
            where_sql: where_sql.map(str::to_string),
            ctx: SessionContext::new(),
        };
        Ok(converter)
    }

    pub fn source_columns(&self) -> Vec<String> {
        self.source.clone()
    }

    /// Validates COLUMNS expressions and WHERE by converting no rows (so mistakes surface at
    /// CREATE / ALTER rather than as a paused job).
    pub async fn validate(&self) -> R<()> {
        self.convert(Vec::new()).await.map(|_| ())
    }

    pub async fn convert(&self, rows: Vec<RawRow>) -> R<Converted> {
        let mut out = Converted::default();
        let n = rows.len();
        // 1. Source text, cast to the type of the table column of the same name.
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        let mut bad: Vec<Option<String>> = vec![None; n];
        for (i, name) in self.source.iter().enumerate() {
            let raw = StringArray::from_iter(rows.iter().map(|r| r.values.get(i).cloned().flatten()));
            let target = self.table.fields().iter().find(|f| f.name().eq_ignore_ascii_case(name));
            let array: ArrayRef = match target {
                Some(f) if f.data_type() != &DataType::Utf8 => {
                    let typed =
                        cast_with_options(&raw, f.data_type(), &CastOptions { safe: true, ..Default::default() })
                            .map_err(|e| WhError::internal(e.to_string()))?;
                    for (r, slot) in bad.iter_mut().enumerate() {
                        if raw.is_valid(r) && typed.is_null(r) && slot.is_none() {
                            *slot = Some(format!(
                                "column '{name}': '{}' is not a valid {}",
                                raw.value(r).chars().take(100).collect::<String>(),
                                f.data_type()
                            ));
                        }
                    }
                    typed
                }
                _ => Arc::new(raw),
            };
            fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        fields.push(Field::new(ROW, DataType::UInt32, false));
        arrays.push(Arc::new(UInt32Array::from_iter_values(0..n as u32)));
        let input = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| WhError::internal(e.to_string()))?;
        let keep: arrow_array::BooleanArray = bad.iter().map(|b| Some(b.is_none())).collect();
        for reason in bad.into_iter().flatten() {
            out.error(reason);
        }
        let input = filter_record_batch(&input, &keep).map_err(|e| WhError::internal(e.to_string()))?;
        let selected_in = input.num_rows();

        // 2. Table columns (and __op) from the source columns and COLUMNS expressions; WHERE.
        let mapped = self.map(input).await?;
        out.unselected = (selected_in - mapped.num_rows()) as u64;

        // 3. The change kind of each row.
        let rows_col = mapped.column_by_name(ROW).ok_or_else(|| WhError::internal("row number lost"))?;
        let rows_col = rows_col.as_any().downcast_ref::<UInt32Array>().ok_or_else(|| WhError::internal("row type"))?;
        let op_col = mapped.column_by_name(OP).map(|c| cast_with_options(c, &DataType::Utf8, &CastOptions::default()));
        let op_col = op_col.transpose().map_err(|e| WhError::internal(e.to_string()))?;
        let op_text = op_col.as_ref().and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
        let columns: Vec<ArrayRef> = self
            .table
            .fields()
            .iter()
            .map(|f| {
                mapped.column_by_name(f.name()).cloned().ok_or_else(|| WhError::internal(format!("{} lost", f.name())))
            })
            .collect::<R<_>>()?;
        let loose = Arc::new(Schema::new(
            self.table.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>(),
        ));
        let table_rows = RecordBatch::try_new(loose, columns).map_err(|e| WhError::internal(e.to_string()))?;
        let mut ops: Vec<Option<Op>> = Vec::with_capacity(table_rows.num_rows());
        for r in 0..table_rows.num_rows() {
            let from_column =
                op_text.as_ref().filter(|a| a.is_valid(r)).map(|a| a.value(r).trim().to_ascii_lowercase());
            let op = match from_column.as_deref() {
                Some("0" | "upsert" | "c" | "r" | "u" | "insert" | "update") => Op::Upsert,
                Some("1" | "delete" | "d") => Op::Delete,
                Some(other) => {
                    out.error(format!("__op '{other}' is neither 0 (upsert) nor 1 (delete)"));
                    ops.push(None);
                    continue;
                }
                None => rows[rows_col.value(r) as usize].op.unwrap_or(Op::Upsert),
            };
            // 4. Constraints: every NOT NULL column for an upsert, the key for a delete.
            let needed: Vec<usize> = match op {
                Op::Upsert => (0..self.table.fields().len()).filter(|&c| !self.table.field(c).is_nullable()).collect(),
                Op::Delete => self.keys.clone(),
            };
            if let Some(c) = needed.iter().find(|&&c| table_rows.column(c).is_null(r)) {
                out.error(format!("column '{}' cannot be NULL", self.table.field(*c).name()));
                ops.push(None);
                continue;
            }
            if op == Op::Delete && !self.primary {
                out.error("a delete needs a primary-key table".into());
                ops.push(None);
                continue;
            }
            ops.push(Some(op));
        }

        // 5. On primary-key tables the last change to a key wins.
        let mut last: Vec<Option<Op>> = ops.clone();
        if self.primary && !self.keys.is_empty() {
            let fields = self.keys.iter().map(|&k| SortField::new(self.table.field(k).data_type().clone())).collect();
            let conv = RowConverter::new(fields).map_err(|e| WhError::internal(e.to_string()))?;
            let key_cols: Vec<ArrayRef> = self.keys.iter().map(|&k| table_rows.column(k).clone()).collect();
            let encoded = conv.convert_columns(&key_cols).map_err(|e| WhError::internal(e.to_string()))?;
            let mut winner: HashMap<&[u8], usize> = HashMap::new();
            for (r, op) in ops.iter().enumerate() {
                if op.is_some() {
                    if let Some(prev) = winner.insert(encoded.row(r).data(), r) {
                        last[prev] = None;
                    }
                }
            }
        }
        let pick = |want: Op| -> R<Option<RecordBatch>> {
            let idx: Vec<u32> =
                last.iter().enumerate().filter(|(_, o)| **o == Some(want)).map(|(r, _)| r as u32).collect();
            if idx.is_empty() {
                return Ok(None);
            }
            let taken = take_record_batch(&table_rows, &UInt32Array::from(idx))
                .map_err(|e| WhError::internal(e.to_string()))?;
            Ok(Some(
                RecordBatch::try_new(self.table.clone(), taken.columns().to_vec())
                    .map_err(|e| WhError::internal(e.to_string()))?,
            ))
        };
        let (ups, dels) = (pick(Op::Upsert)?, pick(Op::Delete)?);
        out.loaded = ups.as_ref().map_or(0, |b| b.num_rows()) as u64 + dels.as_ref().map_or(0, |b| b.num_rows()) as u64;
        out.upserts.extend(ups);
        out.deletes.extend(dels);
        Ok(out)
    }

    /// Source batch -> table columns (+ `__op`, + row number), WHERE applied.
    async fn map(&self, input: RecordBatch) -> R<RecordBatch> {
        let derived_op = self.derived.iter().find(|(n, _)| n == OP);
        let needs_sql = !self.derived.is_empty() || self.where_sql.is_some();
        if !needs_sql {
            let n = input.num_rows();
            let mut fields = Vec::new();
            let mut arrays = Vec::new();
            for f in self.table.fields() {
                let array = match input.column_by_name(&f.name().to_ascii_lowercase()) {
                    Some(a) => cast_with_options(a, f.data_type(), &CastOptions::default())
                        .map_err(|e| WhError::internal(e.to_string()))?,
                    None => datafusion::arrow::array::new_null_array(f.data_type(), n),
                };
                fields.push(Field::new(f.name(), f.data_type().clone(), true));
                arrays.push(array);
            }
            for extra in [OP, ROW] {
                if let Some(a) = input.column_by_name(extra) {
                    fields.push(Field::new(extra, a.data_type().clone(), true));
                    arrays.push(a.clone());
                }
            }
            return RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
                .map_err(|e| WhError::internal(e.to_string()));
        }
        let sql_err = |what: &str, e: datafusion::error::DataFusionError| {
            WhError::Invalid(format!("{what}: {}", e.to_string().lines().next().unwrap_or_default()))
        };
        let df = self.ctx.read_batch(input).map_err(|e| WhError::internal(e.to_string()))?;
        let mut exprs: Vec<Expr> = Vec::new();
        for f in self.table.fields() {
            let lower = f.name().to_ascii_lowercase();
            let e = match self.derived.iter().find(|(n, _)| *n == lower) {
                Some((_, sql)) => {
                    let parsed =
                        df.parse_sql_expr(sql).map_err(|e| sql_err(&format!("in COLUMNS ({lower} = {sql})"), e))?;
                    let parsed = numeric_text(parsed, df.schema().as_arrow()).map_err(|e| sql_err("in COLUMNS", e))?;
                    try_cast(parsed, f.data_type().clone())
                }
                None if self.source.contains(&lower) => col(format!("\"{lower}\"")),
                None => try_cast(lit(datafusion::scalar::ScalarValue::Null), f.data_type().clone()),
            };
            exprs.push(e.alias(f.name()));
        }
        if let Some((_, sql)) = derived_op {
            let parsed = df.parse_sql_expr(sql).map_err(|e| sql_err(&format!("in COLUMNS (__op = {sql})"), e))?;
            exprs.push(numeric_text(parsed, df.schema().as_arrow()).map_err(|e| sql_err("in COLUMNS", e))?.alias(OP));
        } else if self.source.iter().any(|s| s == OP) {
            exprs.push(col(format!("\"{OP}\"")));
        }
        exprs.push(col(ROW));
        let mut df = df.select(exprs).map_err(|e| sql_err("in COLUMNS", e))?;
        if let Some(w) = &self.where_sql {
            let cond = df.parse_sql_expr(w).map_err(|e| sql_err("in WHERE", e))?;
            df = df.filter(cond).map_err(|e| sql_err("in WHERE", e))?;
        }
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(|e| sql_err("evaluating COLUMNS / WHERE", e))?;
        concat_batches(&schema, &batches).map_err(|e| WhError::internal(e.to_string()))
    }
}

/// Text fields used in arithmetic are read as numbers (as StarRocks casts VARCHAR implicitly):
/// `cents / 100` works on a CSV or JSON field that is not a table column.
fn numeric_text(expr: Expr, schema: &Schema) -> datafusion::error::Result<Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::BinaryExpr;
    let is_text = |e: &Expr| matches!(e, Expr::Column(c) if schema.field_with_name(&c.name).is_ok_and(|f| f.data_type() == &DataType::Utf8));
    let widen = |e: Box<Expr>| -> Box<Expr> {
        if is_text(&e) {
            Box::new(try_cast(*e, DataType::Float64))
        } else {
            e
        }
    };
    expr.transform(|e| {
        Ok(match e {
            Expr::BinaryExpr(b) if b.op.is_numerical_operators() && (is_text(&b.left) || is_text(&b.right)) => {
                Transformed::yes(Expr::BinaryExpr(BinaryExpr { left: widen(b.left), op: b.op, right: widen(b.right) }))
            }
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::ddl::parse_create_table;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type};

    fn meta(sql: &str) -> TableMeta {
        let c = parse_create_table(sql).unwrap().unwrap();
        let mut def = c.def;
        crate::table::ddl::validate(&mut def).unwrap();
        TableMeta {
            id: "t".into(),
            database: "d".into(),
            name: c.name,
            def,
            segments: Vec::new(),
            version: 1,
            commit: String::new(),
            created_ms: 0,
            updated_ms: 0,
            read_digest: String::new(),
            source: Default::default(),
        }
    }

    fn raw(values: &[&str], op: Option<Op>) -> RawRow {
        RawRow { values: values.iter().map(|v| (*v != "NULL").then(|| v.to_string())).collect(), op }
    }

    #[tokio::test]
    async fn casts_errors_and_last_change_per_key() {
        let m = meta("CREATE TABLE t (id BIGINT NOT NULL, qty INT, name VARCHAR(10)) PRIMARY KEY (id)");
        let c = Converter::new(&m, None, None, true).unwrap();
        assert_eq!(c.source_columns(), ["id", "qty", "name", "__op"]);
        let out = c
            .convert(vec![
                raw(&["1", "5", "a", "NULL"], None),
                raw(&["2", "x", "b", "NULL"], None),    // bad int
                raw(&["NULL", "1", "c", "NULL"], None), // NULL key
                raw(&["1", "6", "a2", "0"], None),      // replaces the first row
                raw(&["3", "NULL", "NULL", "NULL"], Some(Op::Upsert)),
                raw(&["3", "NULL", "NULL", "NULL"], Some(Op::Delete)), // deletes it again
                raw(&["4", "1", "d", "7"], None),                      // bad op
            ])
            .await
            .unwrap();
        assert_eq!(out.error_rows, 3, "{:?}", out.error_samples);
        assert!(out.error_samples[0].contains("'x' is not a valid Int32"), "{:?}", out.error_samples);
        assert_eq!(out.upserts.len(), 1);
        let ups = &out.upserts[0];
        assert_eq!(ups.column(0).as_primitive::<Int64Type>().values(), &[1]);
        assert_eq!(ups.column(1).as_primitive::<Int32Type>().values(), &[6]);
        assert_eq!(out.deletes[0].column(0).as_primitive::<Int64Type>().values(), &[3]);
        assert_eq!(out.loaded, 2);
    }

    #[tokio::test]
    async fn columns_expressions_and_where() {
        let m = meta("CREATE TABLE t (id BIGINT, amount DECIMAL(10,2), note VARCHAR(20)) DUPLICATE KEY (id)");
        let cols = vec![
            ColumnMapping::Source("id".into()),
            ColumnMapping::Source("cents".into()),
            ColumnMapping::Derived { name: "amount".into(), expr: "cents / 100".into() },
        ];
        let c = Converter::new(&m, Some(&cols), Some("amount > 1 AND id <> 3"), false).unwrap();
        let out =
            c.convert(vec![raw(&["1", "250"], None), raw(&["2", "50"], None), raw(&["3", "900"], None)]).await.unwrap();
        assert_eq!(out.unselected, 2);
        assert_eq!(out.loaded, 1);
        let b = &out.upserts[0];
        assert_eq!(b.column(0).as_primitive::<Int64Type>().values(), &[1]);
        assert_eq!(arrow_cast::display::array_value_to_string(b.column(1), 0).unwrap(), "2.50");
        assert!(b.column(2).is_null(0));

        let wrong = Converter::new(&m, Some(&cols), Some("nope > 1"), false).unwrap();
        assert!(matches!(wrong.validate().await, Err(WhError::Invalid(_))));
        let op_on_dup =
            vec![ColumnMapping::Source("id".into()), ColumnMapping::Derived { name: "__op".into(), expr: "0".into() }];
        assert!(Converter::new(&m, Some(&op_on_dup), None, false).is_err());
    }
}
