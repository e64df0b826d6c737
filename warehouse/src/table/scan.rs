//! The physical scan of a warehouse table: its rows in memory (from the segment caches), and
//! the filters DataFusion pushes into it, notably the dynamic filters a hash join derives from
//! its build side once built.
//!
//! Why it matters: DataFusion joins tables in the order of the FROM clause, so in TPC-H Q7 the
//! small, filtered `nation` joins last, after lineitem x orders x customer. Its hash join's
//! dynamic filter (`s_nationkey IN (...)`) is pushed down through the other joins to the
//! `supplier` scan, which applies it: 8% of the suppliers, and so of the lineitems, go on.
//! A plain in-memory source refuses pushed filters and every row flows through every join.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::{DataSource, DataSourceExec};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::filter_pushdown::{FilterPushdownPropagation, PushedDown};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::DisplayFormatType;
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;

/// Rows in memory, filtered by whatever DataFusion pushed down.
#[derive(Debug, Clone)]
pub(super) struct TableSource {
    inner: Arc<dyn DataSource>,
    filters: Vec<Arc<dyn PhysicalExpr>>,
}

impl TableSource {
    /// A scan over `partitions` (batches of `schema`), projected.
    pub(super) fn exec(
        partitions: &[Vec<datafusion::arrow::record_batch::RecordBatch>],
        schema: datafusion::arrow::datatypes::SchemaRef,
        projection: Option<Vec<usize>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner: Arc<dyn DataSource> = Arc::new(MemorySourceConfig::try_new(partitions, schema, projection)?);
        Ok(Arc::new(DataSourceExec::new(Arc::new(TableSource { inner, filters: Vec::new() }))))
    }

    fn wrap(&self, inner: Arc<dyn DataSource>) -> Arc<dyn DataSource> {
        Arc::new(TableSource { inner, filters: self.filters.clone() })
    }
}

/// Keeps the rows of `batch` every filter holds for (a filter that is NULL drops the row).
/// Filters run in the order they were pushed, each on what the previous ones kept: the static
/// ones (cheap, often selective) come first, the joins' dynamic ones (a hash lookup per row)
/// after them.
fn apply(
    mut batch: datafusion::arrow::record_batch::RecordBatch,
    filters: &[Arc<dyn PhysicalExpr>],
) -> Result<datafusion::arrow::record_batch::RecordBatch> {
    for filter in filters {
        if batch.num_rows() == 0 {
            break;
        }
        let value = filter.evaluate(&batch)?.into_array(batch.num_rows())?;
        let Some(mask) = value.as_any().downcast_ref::<BooleanArray>() else {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "pushed-down filter {filter} is not boolean"
            )));
        };
        if mask.true_count() < batch.num_rows() {
            batch = filter_record_batch(&batch, mask)?;
        }
    }
    Ok(batch)
}

impl DataSource for TableSource {
    fn open(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let stream = self.inner.open(partition, context)?;
        if self.filters.is_empty() {
            return Ok(stream);
        }
        let schema = stream.schema();
        let filters = self.filters.clone();
        let filtered = stream.map(move |batch| batch.and_then(|b| apply(b, &filters)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, filtered)))
    }

    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_as(t, f)?;
        if !self.filters.is_empty() {
            let shown: Vec<String> = self.filters.iter().map(|e| e.to_string()).collect();
            write!(f, ", filters=[{}]", shown.join(", "))?;
        }
        Ok(())
    }

    fn repartitioned(
        &self,
        target_partitions: usize,
        repartition_file_min_size: usize,
        output_ordering: Option<LexOrdering>,
    ) -> Result<Option<Arc<dyn DataSource>>> {
        Ok(self
            .inner
            .repartitioned(target_partitions, repartition_file_min_size, output_ordering)?
            .map(|inner| self.wrap(inner)))
    }

    fn output_partitioning(&self) -> Partitioning {
        self.inner.output_partitioning()
    }

    fn eq_properties(&self) -> EquivalenceProperties {
        self.inner.eq_properties()
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        let stats = self.inner.partition_statistics(partition)?;
        if self.filters.is_empty() {
            return Ok(stats);
        }
        // Fewer rows may come out than the batches hold.
        Ok(Arc::new(Arc::unwrap_or_clone(stats).to_inexact()))
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn DataSource>> {
        // A limit below a filter would cut rows before they are filtered.
        if !self.filters.is_empty() {
            return None;
        }
        self.inner.with_fetch(limit).map(|inner| self.wrap(inner))
    }

    fn fetch(&self) -> Option<usize> {
        self.inner.fetch()
    }

    fn metrics(&self) -> ExecutionPlanMetricsSet {
        self.inner.metrics()
    }

    fn try_swapping_with_projection(&self, projection: &ProjectionExprs) -> Result<Option<Arc<dyn DataSource>>> {
        // The filters address columns of the current output: keep it as it is.
        if !self.filters.is_empty() {
            return Ok(None);
        }
        Ok(self.inner.try_swapping_with_projection(projection)?.map(|inner| self.wrap(inner)))
    }

    fn try_pushdown_filters(
        &self,
        filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn DataSource>>> {
        if filters.is_empty() {
            return Ok(FilterPushdownPropagation::with_parent_pushdown_result(Vec::new()));
        }
        let mut next = self.clone();
        let accepted = vec![PushedDown::Yes; filters.len()];
        next.filters.extend(filters);
        Ok(FilterPushdownPropagation::with_parent_pushdown_result(accepted).with_updated_node(Arc::new(next)))
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for filter in &self.filters {
            if f(filter)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        self.inner.apply_expressions(f)
    }
}
