//! DataFusion's view of a warehouse table: scans over the committed segments (pruned by their
//! statistics), and INSERT / DELETE / UPDATE / TRUNCATE committed through [`Warehouse::write`].

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, Constraint, Constraints, DFSchema, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::TryStreamExt;

use super::segment::{stat_value, SegmentMeta};
use super::{KeyModel, TableMeta, Warehouse, WhError, Write};

fn external(e: WhError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// One statement's view of a table: the metadata committed when the statement was planned.
pub struct WarehouseTable {
    warehouse: Arc<Warehouse>,
    meta: Arc<TableMeta>,
    schema: SchemaRef,
    constraints: Constraints,
    defaults: HashMap<String, Expr>,
}

impl std::fmt::Debug for WarehouseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseTable").field("table", &self.meta.name).field("version", &self.meta.version).finish()
    }
}

impl WarehouseTable {
    pub fn new(warehouse: Arc<Warehouse>, meta: Arc<TableMeta>) -> Self {
        let schema = meta.schema();
        let constraints = match meta.def.model {
            KeyModel::Primary => {
                let indices = meta.def.keys.iter().filter_map(|k| schema.index_of(k).ok()).collect();
                Constraints::new_unverified(vec![Constraint::PrimaryKey(indices)])
            }
            KeyModel::Duplicate => Constraints::default(),
        };
        let defaults = meta
            .def
            .columns
            .iter()
            .filter_map(|c| {
                let text = c.default.as_deref()?;
                let dt = schema.field_with_name(&c.name).ok()?.data_type().clone();
                Some((c.name.clone(), default_expr(text, &dt)?))
            })
            .collect();
        WarehouseTable { warehouse, meta, schema, constraints, defaults }
    }

    fn physical(&self, state: &dyn Session, expr: &Expr) -> Result<Arc<dyn PhysicalExpr>> {
        let df_schema = DFSchema::try_from(self.schema.clone())?;
        state.create_physical_expr(expr.clone(), &df_schema)
    }

    fn mask_fn(
        &self,
        state: &dyn Session,
        filters: &[Expr],
    ) -> Result<impl Fn(&RecordBatch) -> Result<BooleanArray, WhError> + Send + Sync> {
        let predicate = match conjunction(filters.to_vec()) {
            Some(expr) => Some(self.physical(state, &expr)?),
            None => None,
        };
        Ok(move |batch: &RecordBatch| -> Result<BooleanArray, WhError> {
            match &predicate {
                None => Ok(BooleanArray::from(vec![true; batch.num_rows()])),
                Some(p) => {
                    let value = p.evaluate(batch).map_err(|e| WhError::Invalid(e.to_string()))?;
                    let array = value.into_array(batch.num_rows()).map_err(|e| WhError::Invalid(e.to_string()))?;
                    array
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .cloned()
                        .ok_or_else(|| WhError::Invalid("WHERE condition is not a boolean".into()))
                }
            }
        })
    }

    /// Which segments may hold rows matching `filters`.
    fn prune(&self, state: &dyn Session, filters: &[Expr]) -> Vec<SegmentMeta> {
        let all = self.meta.segments.clone();
        let Some(expr) = conjunction(filters.to_vec()) else { return all };
        let keep = self
            .physical(state, &expr)
            .and_then(|p| PruningPredicateBuilder::new().with_file_schema(self.schema.clone()).try_build(p))
            .and_then(|pp| pp.prune(&SegmentStats { segments: &all, schema: &self.schema }));
        match keep {
            Ok(keep) => all.into_iter().zip(keep).filter(|(_, k)| *k).map(|(s, _)| s).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "segment pruning skipped");
                all
            }
        }
    }
}

/// A literal default as an expression of the column's type.
fn default_expr(text: &str, dt: &DataType) -> Option<Expr> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("null") {
        return Some(Expr::Literal(ScalarValue::try_from(dt).ok()?, None));
    }
    if t.eq_ignore_ascii_case("current_timestamp") || t.eq_ignore_ascii_case("now()") {
        return Some(datafusion::functions::datetime::expr_fn::now());
    }
    let unquoted = t.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).unwrap_or(t);
    Some(Expr::Literal(ScalarValue::try_from_string(unquoted.to_string(), dt).ok()?, None))
}

struct SegmentStats<'a> {
    segments: &'a [SegmentMeta],
    schema: &'a SchemaRef,
}

impl SegmentStats<'_> {
    fn values(&self, column: &Column, pick: impl Fn(&super::segment::ColumnStats) -> Option<&str>) -> Option<ArrayRef> {
        let i = self.schema.index_of(&column.name).ok()?;
        let dt = self.schema.field(i).data_type();
        let values = self.segments.iter().map(|s| stat_value(s.stats.get(i).and_then(&pick), dt));
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for SegmentStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.min.as_deref())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.max.as_deref())
    }

    fn num_containers(&self) -> usize {
        self.segments.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let i = self.schema.index_of(&column.name).ok()?;
        // Deleted rows may hide nulls; the count is an upper bound only without deletes.
        Some(Arc::new(UInt64Array::from_iter(
            self.segments.iter().map(|s| (s.deleted == 0).then(|| s.stats.get(i).map_or(0, |c| c.nulls))),
        )))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter(self.segments.iter().map(|s| Some(s.live_rows())))))
    }

    fn contained(&self, _column: &Column, _values: &std::collections::HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

fn count_exec(n: u64) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(vec![n]))])?;
    Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None)?)
}

#[async_trait]
impl TableProvider for WarehouseTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let segments = self.prune(state, filters);
        let rows = self.warehouse.live_rows_of(&self.meta, &segments).await.map_err(external)?;
        let n = state.config_options().execution.target_partitions.max(1);
        let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
        for (i, batch) in rows.into_iter().flatten().filter(|b| b.num_rows() > 0).enumerate() {
            partitions[i % n].push(batch);
        }
        partitions.retain(|p| !p.is_empty());
        if partitions.is_empty() {
            partitions.push(Vec::new());
        }
        super::scan::TableSource::exec(&partitions, self.schema.clone(), projection.cloned())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!("{insert_op} is not supported; use INSERT INTO")));
        }
        let sink =
            TableSink { warehouse: self.warehouse.clone(), meta: self.meta.clone(), schema: self.schema.clone() };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(&self, state: &dyn Session, filters: Vec<Expr>) -> Result<Arc<dyn ExecutionPlan>> {
        let mask = self.mask_fn(state, &filters)?;
        let n =
            self.warehouse.write(&self.meta.database, &self.meta.name, Write::Delete(&mask)).await.map_err(external)?;
        count_exec(n)
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.meta.def.model != KeyModel::Primary {
            return Err(external(WhError::Unsupported(
                "UPDATE is supported on PRIMARY KEY tables only (as in StarRocks)".into(),
            )));
        }
        let mut exprs: HashMap<usize, Arc<dyn PhysicalExpr>> = HashMap::new();
        for (name, expr) in &assignments {
            let i = self
                .schema
                .index_of(name)
                .map_err(|_| external(WhError::Invalid(format!("Unknown column '{name}' in 'field list'"))))?;
            if self.meta.def.keys.iter().any(|k| k == name) {
                // A plain `SET k = k` is what DataFusion emits for untouched columns.
                if matches!(expr, Expr::Column(c) if &c.name == name) {
                    continue;
                }
                return Err(external(WhError::Unsupported(format!("primary key column '{name}' cannot be updated"))));
            }
            exprs.insert(i, self.physical(state, expr)?);
        }
        let schema = self.schema.clone();
        let assign = move |batch: &RecordBatch| -> Result<RecordBatch, WhError> {
            let columns = (0..schema.fields().len())
                .map(|i| match exprs.get(&i) {
                    Some(e) => {
                        let value = e.evaluate(batch).map_err(|e| WhError::Invalid(e.to_string()))?;
                        let array = value.into_array(batch.num_rows()).map_err(|e| WhError::Invalid(e.to_string()))?;
                        let dt = schema.field(i).data_type();
                        datafusion::arrow::compute::cast(&array, dt).map_err(|e| WhError::Invalid(e.to_string()))
                    }
                    None => Ok(batch.column(i).clone()),
                })
                .collect::<Result<Vec<_>, WhError>>()?;
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| WhError::Invalid(e.to_string()))
        };
        let mask = self.mask_fn(state, &filters)?;
        let n = self
            .warehouse
            .write(&self.meta.database, &self.meta.name, Write::Update(&mask, &assign))
            .await
            .map_err(external)?;
        count_exec(n)
    }

    async fn truncate(&self, _state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        let n = self.warehouse.write(&self.meta.database, &self.meta.name, Write::Truncate).await.map_err(external)?;
        count_exec(n)
    }
}

#[derive(Debug)]
struct TableSink {
    warehouse: Arc<Warehouse>,
    meta: Arc<TableMeta>,
    schema: SchemaRef,
}

impl DisplayAs for TableSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WarehouseSink: {}.{}", self.meta.database, self.meta.name)
    }
}

#[async_trait]
impl DataSink for TableSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        let batches: Vec<RecordBatch> = data.try_collect().await?;
        self.warehouse.write(&self.meta.database, &self.meta.name, Write::Insert(batches)).await.map_err(external)
    }
}
