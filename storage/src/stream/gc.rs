//! Garbage collection: deletes objects the catalog released once they are older than the
//! grace period, and orphans (uploaded but never committed, e.g. after a crash) once their
//! creation time is older than the grace period.
//!
//! Never deletes a referenced object: objects this engine is still committing are skipped
//! outright; objects of other writers are only committed while younger than half the grace
//! period (see `check_fresh`), and the orphan check reads the catalog *after* listing, so an
//! object committed before that read is seen as referenced, and one committed after it is too
//! young to be deleted.

use std::collections::HashSet;

use super::engine::Inner;
use super::upload::created_ms_of;
use crate::metadata::CatalogRecord;
use crate::Result;

/// What one GC pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub released_deleted: usize,
    pub orphans_deleted: usize,
}

impl Inner {
    #[tracing::instrument(skip(self))]
    pub(crate) async fn gc(&self) -> Result<GcReport> {
        let grace = self.config.gc_grace.as_millis() as u64;
        let mut report = GcReport::default();
        let state = self.catalog.state();
        let now = self.clock.now_ms();
        let due: Vec<_> = state
            .deleting
            .iter()
            .filter(|(_, d)| d.marked_ms + grace <= now)
            .map(|(id, d)| (*id, d.key.clone()))
            .collect();
        for (_, key) in &due {
            self.store.delete(key).await?;
        }
        if !due.is_empty() {
            self.catalog
                .submit(vec![CatalogRecord::ObjectsDeleted { object_ids: due.iter().map(|(id, _)| *id).collect() }])
                .await?;
            report.released_deleted = due.len();
        }

        let listed = self.store.list(&format!("{}/", self.config.data_prefix)).await?;
        let state = self.catalog.state();
        let now = self.clock.now_ms();
        let uncommitted = self.uncommitted.lock().clone();
        let known: HashSet<&str> = state
            .objects
            .values()
            .map(|o| o.key.as_str())
            .chain(state.deleting.values().map(|d| d.key.as_str()))
            .chain(uncommitted.iter().map(String::as_str))
            .collect();
        for meta in listed {
            if known.contains(meta.key.as_str()) {
                continue;
            }
            match created_ms_of(&self.config.data_prefix, &meta.key) {
                Some(created) if created + grace <= now => {
                    self.store.delete(&meta.key).await?;
                    report.orphans_deleted += 1;
                }
                Some(_) => {}
                None => tracing::warn!(key = %meta.key, "unexpected object under the data prefix; leaving it"),
            }
        }
        self.metrics.gc_deleted_objects.inc_by((report.released_deleted + report.orphans_deleted) as u64);
        Ok(report)
    }
}
