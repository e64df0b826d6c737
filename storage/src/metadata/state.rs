//! The catalog state machine: streams, the objects holding their data, objects awaiting
//! deletion, and a small key-value namespace for the layers above (topics, tables).
//!
//! Records are validated with [`CatalogState::check`] (pure) and then applied with
//! [`CatalogState::apply`] (infallible), so replaying the log rebuilds exactly the state the
//! writer had. Records are JSON (`docs/storage-formats.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub type StreamId = u64;
pub type ObjectId = u64;
pub type NodeId = u64;

/// Whether an object holds data of many streams (uploaded from the WAL, or compacted) or of
/// one stream (split out because it was large).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    StreamSet,
    Stream,
}

/// A run of one stream's offsets inside an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRange {
    pub stream_id: StreamId,
    pub start_offset: u64,
    pub end_offset: u64,
}

/// A data object in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataObject {
    pub id: ObjectId,
    pub key: String,
    pub kind: ObjectKind,
    pub size: u64,
    /// Where the object's index starts (see `stream::format`).
    pub index_pos: u64,
    pub created_ms: u64,
    pub ranges: Vec<ObjectRange>,
}

/// A run of a stream's offsets and the object that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRange {
    pub start_offset: u64,
    pub end_offset: u64,
    pub object_id: ObjectId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub id: StreamId,
    /// Bumped by every open; commits carry it, so a former owner is fenced.
    pub epoch: u64,
    pub owner: Option<NodeId>,
    /// Offsets below this are trimmed.
    pub start_offset: u64,
    /// Everything below this is in committed objects.
    pub end_offset: u64,
    /// Sorted by start offset; may start below `start_offset` (partly trimmed objects).
    pub ranges: Vec<StreamRange>,
}

/// An object no longer referenced, deleted by GC once `marked_ms` is older than the grace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleting {
    pub key: String,
    pub marked_ms: u64,
}

/// A stream's new committed end, with the epoch the committer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    pub stream_id: StreamId,
    pub epoch: u64,
    pub end_offset: u64,
}

/// One change to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CatalogRecord {
    CreateStream {
        stream_id: StreamId,
    },
    /// Takes ownership of a stream at a higher epoch (or re-opens at the same epoch by the
    /// same owner).
    OpenStream {
        stream_id: StreamId,
        epoch: u64,
        node_id: NodeId,
    },
    CloseStream {
        stream_id: StreamId,
        epoch: u64,
    },
    /// Uploaded objects extend streams from their committed ends (`compacted` empty), or
    /// compacted objects replace the `compacted` ones, covering the same offsets.
    CommitObjects {
        objects: Vec<DataObject>,
        stream_ends: Vec<StreamEnd>,
        compacted: Vec<ObjectId>,
        at_ms: u64,
    },
    TrimStream {
        stream_id: StreamId,
        start_offset: u64,
        at_ms: u64,
    },
    DeleteStream {
        stream_id: StreamId,
        at_ms: u64,
    },
    /// Replaces the committed data of one stream in `start..end` with `objects` (holding only
    /// that stream, within that range): log compaction above the storage layer. The range
    /// must begin and end on range boundaries of the stream's committed data.
    RewriteStreamRange {
        stream_id: StreamId,
        start: u64,
        end: u64,
        objects: Vec<DataObject>,
        at_ms: u64,
    },
    /// GC deleted these objects from the bucket.
    ObjectsDeleted {
        object_ids: Vec<ObjectId>,
    },
    KvPut {
        key: String,
        value: String,
    },
    KvDelete {
        key: String,
    },
    /// A precondition, applied as nothing: the key's value must have this digest
    /// ([`kv_digest`]; `None`: the key must be absent). A writer that computed a change from
    /// values it read puts their digests first, so the change lands only if nobody changed
    /// them since (compare-and-set), however stale the writer's view of the log was.
    KvExpect {
        key: String,
        digest: Option<String>,
    },
    /// Names the submission whose records follow, so that a submission retried after an
    /// ambiguous failure (its forwarding to the log's writer timed out, the writer changed)
    /// is recognised and applied once: refused with [`Error::DuplicateSubmission`] if
    /// `id` is among the last [`RECENT_SUBMISSIONS`] ids applied.
    Submission {
        id: String,
    },
}

/// How many submission ids the state remembers (see [`CatalogRecord::Submission`]).
pub const RECENT_SUBMISSIONS: usize = 4096;

/// The digest a [`CatalogRecord::KvExpect`] compares: SHA-256 of the value, in hex.
pub fn kv_digest(value: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(value.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogState {
    /// The last log entry applied.
    pub applied_seq: u64,
    pub next_stream_id: StreamId,
    pub streams: BTreeMap<StreamId, Arc<StreamMeta>>,
    pub objects: BTreeMap<ObjectId, Arc<DataObject>>,
    pub deleting: BTreeMap<ObjectId, Deleting>,
    /// Values are shared: a state is cloned for every commit group, and the warehouse keeps
    /// fresh rows here (see `automq-warehouse`), so cloning must not copy them.
    pub kv: BTreeMap<String, Arc<str>>,
    /// The newest submission ids applied, oldest first (see [`CatalogRecord::Submission`]).
    #[serde(default)]
    pub recent_submissions: std::collections::VecDeque<String>,
}

fn invalid<T>(msg: String) -> Result<T> {
    Err(Error::InvalidMetadata(msg))
}

impl CatalogState {
    fn stream(&self, id: StreamId) -> Result<&StreamMeta> {
        self.streams.get(&id).map(|s| s.as_ref()).ok_or(Error::StreamNotFound(id))
    }

    /// Checks that `record` may be applied to this state.
    pub fn check(&self, record: &CatalogRecord) -> Result<()> {
        match record {
            CatalogRecord::CreateStream { stream_id } => {
                if *stream_id != self.next_stream_id.max(1) {
                    return invalid(format!("stream id {stream_id} is not the next id {}", self.next_stream_id.max(1)));
                }
            }
            CatalogRecord::OpenStream { stream_id, epoch, node_id } => {
                let s = self.stream(*stream_id)?;
                if *epoch < s.epoch || (*epoch == s.epoch && s.owner.is_some_and(|o| o != *node_id)) {
                    return Err(Error::StaleEpoch { stream_id: *stream_id, epoch: *epoch, current: s.epoch });
                }
            }
            CatalogRecord::CloseStream { stream_id, epoch } => {
                let s = self.stream(*stream_id)?;
                if *epoch != s.epoch {
                    return Err(Error::StaleEpoch { stream_id: *stream_id, epoch: *epoch, current: s.epoch });
                }
            }
            CatalogRecord::CommitObjects { objects, stream_ends, compacted, .. } => {
                self.check_commit(objects, stream_ends, compacted)?
            }
            CatalogRecord::TrimStream { stream_id, start_offset, .. } => {
                let s = self.stream(*stream_id)?;
                if *start_offset > s.end_offset {
                    return Err(Error::OffsetOutOfRange {
                        stream_id: *stream_id,
                        offset: *start_offset,
                        start_offset: s.start_offset,
                        end_offset: s.end_offset,
                    });
                }
            }
            CatalogRecord::DeleteStream { stream_id, .. } => {
                self.stream(*stream_id)?;
            }
            CatalogRecord::RewriteStreamRange { stream_id, start, end, objects, .. } => {
                let s = self.stream(*stream_id)?;
                if start >= end || *end > s.end_offset {
                    return invalid(format!(
                        "stream {stream_id}: cannot rewrite {start}..{end}; committed data ends at {}",
                        s.end_offset
                    ));
                }
                // Every committed range touching start..end must lie inside it.
                if let Some(r) = s.ranges.iter().find(|r| {
                    r.end_offset > *start && r.start_offset < *end && (r.start_offset < *start || r.end_offset > *end)
                }) {
                    return invalid(format!(
                        "stream {stream_id}: range {}..{} crosses the rewrite bounds {start}..{end}",
                        r.start_offset, r.end_offset
                    ));
                }
                for o in objects {
                    if self.objects.contains_key(&o.id) || self.deleting.contains_key(&o.id) {
                        return invalid(format!("object id {} is already in use", o.id));
                    }
                    if let Some(r) = o.ranges.iter().find(|r| {
                        r.stream_id != *stream_id
                            || r.start_offset < *start
                            || r.end_offset > *end
                            || r.end_offset <= r.start_offset
                    }) {
                        return invalid(format!(
                            "rewritten object {} holds stream {} {}..{}, outside stream {stream_id} {start}..{end}",
                            o.id, r.stream_id, r.start_offset, r.end_offset
                        ));
                    }
                }
            }
            CatalogRecord::ObjectsDeleted { object_ids } => {
                if let Some(id) = object_ids.iter().find(|id| !self.deleting.contains_key(id)) {
                    return invalid(format!("object {id} is not awaiting deletion"));
                }
            }
            CatalogRecord::KvPut { .. } | CatalogRecord::KvDelete { .. } => {}
            CatalogRecord::KvExpect { key, digest } => {
                if self.kv.get(key).map(|v| kv_digest(v)) != *digest {
                    return Err(Error::PreconditionFailed(format!("catalog key {key:?} changed")));
                }
            }
            CatalogRecord::Submission { id } => {
                if self.recent_submissions.contains(id) {
                    return Err(Error::DuplicateSubmission(id.clone()));
                }
            }
        }
        Ok(())
    }

    fn check_commit(&self, objects: &[DataObject], stream_ends: &[StreamEnd], compacted: &[ObjectId]) -> Result<()> {
        let mut ids = BTreeSet::new();
        for o in objects {
            if self.objects.contains_key(&o.id) || self.deleting.contains_key(&o.id) || !ids.insert(o.id) {
                return invalid(format!("object id {} is already in use", o.id));
            }
            for r in &o.ranges {
                if r.end_offset <= r.start_offset {
                    return invalid(format!("object {} has an empty range for stream {}", o.id, r.stream_id));
                }
            }
        }
        if compacted.is_empty() {
            // Upload: every stream's ranges must extend its committed end contiguously, up to
            // the declared new end, under the current epoch.
            let mut by_stream: BTreeMap<StreamId, Vec<ObjectRange>> = BTreeMap::new();
            for r in objects.iter().flat_map(|o| &o.ranges) {
                by_stream.entry(r.stream_id).or_default().push(*r);
            }
            for end in stream_ends {
                let s = self.stream(end.stream_id)?;
                if end.epoch != s.epoch {
                    return Err(Error::StaleEpoch { stream_id: end.stream_id, epoch: end.epoch, current: s.epoch });
                }
                let mut ranges = by_stream.remove(&end.stream_id).unwrap_or_default();
                ranges.sort_by_key(|r| r.start_offset);
                let mut at = s.end_offset;
                for r in &ranges {
                    if r.start_offset != at {
                        return invalid(format!(
                            "stream {}: uploaded range {}..{} does not continue the committed end {at}",
                            end.stream_id, r.start_offset, r.end_offset
                        ));
                    }
                    at = r.end_offset;
                }
                if at != end.end_offset && !(ranges.is_empty() && end.end_offset == s.end_offset) {
                    return invalid(format!(
                        "stream {}: ranges end at {at}, declared end {}",
                        end.stream_id, end.end_offset
                    ));
                }
            }
            if let Some(stream) = by_stream.keys().next() {
                return invalid(format!("stream {stream} has uploaded ranges but no declared end"));
            }
        } else {
            // Compaction: the removed objects must all be live, and each stream's new ranges
            // must lie within what the removed objects held for it. It moves no stream's end.
            if !stream_ends.is_empty() {
                return invalid("a compaction commit cannot move stream ends".to_string());
            }
            let mut held: BTreeMap<StreamId, Vec<(u64, u64)>> = BTreeMap::new();
            for id in compacted {
                let o = self
                    .objects
                    .get(id)
                    .ok_or_else(|| Error::InvalidMetadata(format!("compacted object {id} is not live")))?;
                for r in &o.ranges {
                    held.entry(r.stream_id).or_default().push((r.start_offset, r.end_offset));
                }
            }
            for r in objects.iter().flat_map(|o| &o.ranges) {
                let covered = held.get(&r.stream_id).is_some_and(|runs| covers(runs, r));
                if !covered {
                    return invalid(format!(
                        "compacted range {}..{} of stream {} is not held by the objects it replaces",
                        r.start_offset, r.end_offset, r.stream_id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Applies a record that passed [`Self::check`].
    pub fn apply(&mut self, record: &CatalogRecord) {
        match record {
            CatalogRecord::CreateStream { stream_id } => {
                self.next_stream_id = stream_id + 1;
                self.streams.insert(
                    *stream_id,
                    Arc::new(StreamMeta {
                        id: *stream_id,
                        epoch: 0,
                        owner: None,
                        start_offset: 0,
                        end_offset: 0,
                        ranges: Vec::new(),
                    }),
                );
            }
            CatalogRecord::OpenStream { stream_id, epoch, node_id } => {
                if let Some(s) = self.streams.get_mut(stream_id) {
                    let s = Arc::make_mut(s);
                    s.epoch = *epoch;
                    s.owner = Some(*node_id);
                }
            }
            CatalogRecord::CloseStream { stream_id, .. } => {
                if let Some(s) = self.streams.get_mut(stream_id) {
                    Arc::make_mut(s).owner = None;
                }
            }
            CatalogRecord::CommitObjects { objects, stream_ends, compacted, at_ms } => {
                let removed: BTreeSet<ObjectId> = compacted.iter().copied().collect();
                let mut touched: BTreeSet<StreamId> = BTreeSet::new();
                for id in compacted {
                    if let Some(o) = self.objects.remove(id) {
                        touched.extend(o.ranges.iter().map(|r| r.stream_id));
                        self.deleting.insert(*id, Deleting { key: o.key.clone(), marked_ms: *at_ms });
                    }
                }
                for sid in &touched {
                    if let Some(s) = self.streams.get_mut(sid) {
                        Arc::make_mut(s).ranges.retain(|r| !removed.contains(&r.object_id));
                    }
                }
                for o in objects {
                    for r in &o.ranges {
                        if let Some(s) = self.streams.get_mut(&r.stream_id) {
                            let s = Arc::make_mut(s);
                            if r.end_offset > s.start_offset {
                                s.ranges.push(StreamRange {
                                    start_offset: r.start_offset,
                                    end_offset: r.end_offset,
                                    object_id: o.id,
                                });
                            }
                            touched.insert(r.stream_id);
                        }
                    }
                    self.objects.insert(o.id, Arc::new(o.clone()));
                }
                for end in stream_ends {
                    if let Some(s) = self.streams.get_mut(&end.stream_id) {
                        let s = Arc::make_mut(s);
                        s.end_offset = s.end_offset.max(end.end_offset);
                    }
                }
                for sid in touched {
                    if let Some(s) = self.streams.get_mut(&sid) {
                        Arc::make_mut(s).ranges.sort_by_key(|r| (r.start_offset, r.end_offset));
                    }
                }
                // Objects whose every range was trimmed (or whose streams are gone) while
                // they were being written or compacted.
                let ids: Vec<ObjectId> = objects.iter().map(|o| o.id).collect();
                self.release_unreferenced(ids, *at_ms);
            }
            CatalogRecord::TrimStream { stream_id, start_offset, at_ms } => {
                let mut dropped = Vec::new();
                if let Some(s) = self.streams.get_mut(stream_id) {
                    let s = Arc::make_mut(s);
                    s.start_offset = s.start_offset.max(*start_offset);
                    let start = s.start_offset;
                    s.ranges.retain(|r| {
                        let keep = r.end_offset > start;
                        if !keep {
                            dropped.push(r.object_id);
                        }
                        keep
                    });
                }
                self.release_unreferenced(dropped, *at_ms);
            }
            CatalogRecord::DeleteStream { stream_id, at_ms } => {
                if let Some(s) = self.streams.remove(stream_id) {
                    let ids = s.ranges.iter().map(|r| r.object_id).collect();
                    self.release_unreferenced(ids, *at_ms);
                }
            }
            CatalogRecord::RewriteStreamRange { stream_id, start, end, objects, at_ms } => {
                let mut dropped = Vec::new();
                if let Some(s) = self.streams.get_mut(stream_id) {
                    let s = Arc::make_mut(s);
                    s.ranges.retain(|r| {
                        let inside = r.start_offset >= *start && r.end_offset <= *end;
                        if inside {
                            dropped.push(r.object_id);
                        }
                        !inside
                    });
                    for o in objects {
                        for r in &o.ranges {
                            s.ranges.push(StreamRange {
                                start_offset: r.start_offset,
                                end_offset: r.end_offset,
                                object_id: o.id,
                            });
                        }
                    }
                    s.ranges.sort_by_key(|r| (r.start_offset, r.end_offset));
                }
                for o in objects {
                    self.objects.insert(o.id, Arc::new(o.clone()));
                }
                self.release_unreferenced(dropped, *at_ms);
            }
            CatalogRecord::ObjectsDeleted { object_ids } => {
                for id in object_ids {
                    self.deleting.remove(id);
                }
            }
            CatalogRecord::KvPut { key, value } => {
                self.kv.insert(key.clone(), Arc::from(value.as_str()));
            }
            CatalogRecord::KvDelete { key } => {
                self.kv.remove(key);
            }
            CatalogRecord::KvExpect { .. } => {}
            CatalogRecord::Submission { id } => {
                if self.recent_submissions.len() >= RECENT_SUBMISSIONS {
                    self.recent_submissions.pop_front();
                }
                self.recent_submissions.push_back(id.clone());
            }
        }
    }

    /// Moves each of `candidates` that no stream references any more to `deleting`.
    fn release_unreferenced(&mut self, candidates: Vec<ObjectId>, at_ms: u64) {
        for id in candidates.into_iter().collect::<BTreeSet<_>>() {
            let Some(o) = self.objects.get(&id) else { continue };
            let referenced = o
                .ranges
                .iter()
                .any(|r| self.streams.get(&r.stream_id).is_some_and(|s| s.ranges.iter().any(|sr| sr.object_id == id)));
            if !referenced {
                if let Some(o) = self.objects.remove(&id) {
                    self.deleting.insert(id, Deleting { key: o.key.clone(), marked_ms: at_ms });
                }
            }
        }
    }

    /// The committed ranges of `stream_id` that hold offsets at or above `from`, in order.
    pub fn ranges_from(&self, stream_id: StreamId, from: u64) -> Result<Vec<(StreamRange, Arc<DataObject>)>> {
        let s = self.stream(stream_id)?;
        Ok(s.ranges
            .iter()
            .filter(|r| r.end_offset > from)
            .filter_map(|r| self.objects.get(&r.object_id).map(|o| (*r, o.clone())))
            .collect())
    }
}

/// True when the union of `runs` covers `r` (runs may be adjacent pieces).
fn covers(runs: &[(u64, u64)], r: &ObjectRange) -> bool {
    let mut runs = runs.to_vec();
    runs.sort_unstable();
    let mut at = r.start_offset;
    for (s, e) in runs {
        if s <= at && e > at {
            at = e;
        }
        if at >= r.end_offset {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(id: ObjectId, ranges: &[(StreamId, u64, u64)]) -> DataObject {
        DataObject {
            id,
            key: format!("data/{id}"),
            kind: ObjectKind::StreamSet,
            size: 100,
            index_pos: 90,
            created_ms: 0,
            ranges: ranges
                .iter()
                .map(|&(stream_id, s, e)| ObjectRange { stream_id, start_offset: s, end_offset: e })
                .collect(),
        }
    }

    fn run(state: &mut CatalogState, r: CatalogRecord) -> Result<()> {
        state.check(&r)?;
        state.apply(&r);
        Ok(())
    }

    fn upload(state: &mut CatalogState, id: ObjectId, ranges: &[(StreamId, u64, u64)]) -> Result<()> {
        let stream_ends = ranges
            .iter()
            .map(|&(s, _, e)| StreamEnd { stream_id: s, epoch: state.streams[&s].epoch, end_offset: e })
            .collect();
        run(
            state,
            CatalogRecord::CommitObjects {
                objects: vec![object(id, ranges)],
                stream_ends,
                compacted: vec![],
                at_ms: 5,
            },
        )
    }

    fn two_streams() -> CatalogState {
        let mut st = CatalogState::default();
        for id in [1, 2] {
            run(&mut st, CatalogRecord::CreateStream { stream_id: id }).unwrap();
            run(&mut st, CatalogRecord::OpenStream { stream_id: id, epoch: 1, node_id: 7 }).unwrap();
        }
        st
    }

    #[test]
    fn uploads_must_continue_the_committed_end() {
        let mut st = two_streams();
        upload(&mut st, 10, &[(1, 0, 5), (2, 0, 3)]).unwrap();
        assert!(upload(&mut st, 11, &[(1, 6, 9)]).is_err(), "a gap must be refused");
        assert!(upload(&mut st, 11, &[(1, 4, 9)]).is_err(), "an overlap must be refused");
        upload(&mut st, 11, &[(1, 5, 9)]).unwrap();
        assert_eq!(st.streams[&1].end_offset, 9);
        assert!(upload(&mut st, 11, &[(1, 9, 10)]).is_err(), "object ids are unique");
    }

    #[test]
    fn stale_epochs_are_fenced() {
        let mut st = two_streams();
        run(&mut st, CatalogRecord::OpenStream { stream_id: 1, epoch: 2, node_id: 8 }).unwrap();
        let stale = CatalogRecord::CommitObjects {
            objects: vec![object(10, &[(1, 0, 5)])],
            stream_ends: vec![StreamEnd { stream_id: 1, epoch: 1, end_offset: 5 }],
            compacted: vec![],
            at_ms: 0,
        };
        assert!(matches!(st.check(&stale), Err(Error::StaleEpoch { current: 2, .. })));
        assert!(matches!(
            st.check(&CatalogRecord::OpenStream { stream_id: 1, epoch: 2, node_id: 7 }),
            Err(Error::StaleEpoch { .. })
        ));
    }

    #[test]
    fn trim_releases_objects_only_when_no_stream_references_them() {
        let mut st = two_streams();
        upload(&mut st, 10, &[(1, 0, 5), (2, 0, 3)]).unwrap();
        upload(&mut st, 11, &[(1, 5, 9)]).unwrap();
        run(&mut st, CatalogRecord::TrimStream { stream_id: 1, start_offset: 6, at_ms: 9 }).unwrap();
        assert!(st.objects.contains_key(&10), "stream 2 still reads object 10");
        run(&mut st, CatalogRecord::TrimStream { stream_id: 2, start_offset: 3, at_ms: 9 }).unwrap();
        assert!(!st.objects.contains_key(&10));
        assert_eq!(st.deleting[&10].marked_ms, 9);
        assert!(st.objects.contains_key(&11));
    }

    #[test]
    fn compaction_replaces_ranges_exactly() {
        let mut st = two_streams();
        upload(&mut st, 10, &[(1, 0, 5), (2, 0, 3)]).unwrap();
        upload(&mut st, 11, &[(1, 5, 9), (2, 3, 4)]).unwrap();
        let bad = CatalogRecord::CommitObjects {
            objects: vec![object(12, &[(1, 0, 10)])],
            stream_ends: vec![],
            compacted: vec![10, 11],
            at_ms: 1,
        };
        assert!(st.check(&bad).is_err(), "compaction cannot invent offsets");
        let good = CatalogRecord::CommitObjects {
            objects: vec![object(12, &[(1, 0, 9), (2, 0, 4)])],
            stream_ends: vec![],
            compacted: vec![10, 11],
            at_ms: 1,
        };
        run(&mut st, good.clone()).unwrap();
        assert_eq!(st.streams[&1].ranges, vec![StreamRange { start_offset: 0, end_offset: 9, object_id: 12 }]);
        assert!(st.deleting.contains_key(&10) && st.deleting.contains_key(&11));
        assert!(st.check(&good).is_err(), "compacting already-removed objects is refused");
    }

    #[test]
    fn rewriting_a_range_swaps_only_that_streams_references() {
        let mut st = two_streams();
        upload(&mut st, 10, &[(1, 0, 5), (2, 0, 3)]).unwrap();
        upload(&mut st, 11, &[(1, 5, 9)]).unwrap();
        let rewrite = |objects| CatalogRecord::RewriteStreamRange { stream_id: 1, start: 0, end: 9, objects, at_ms: 7 };
        let mut compacted = object(12, &[(1, 2, 9)]);
        compacted.kind = ObjectKind::Stream;
        assert!(st.check(&rewrite(vec![object(13, &[(2, 0, 3)])])).is_err(), "another stream's data is refused");
        assert!(
            st.check(&CatalogRecord::RewriteStreamRange { stream_id: 1, start: 0, end: 7, objects: vec![], at_ms: 7 })
                .is_err(),
            "bounds must fall on range boundaries"
        );
        run(&mut st, rewrite(vec![compacted])).unwrap();
        assert_eq!(st.streams[&1].ranges, vec![StreamRange { start_offset: 2, end_offset: 9, object_id: 12 }]);
        assert!(st.objects.contains_key(&10), "stream 2 still reads object 10");
        assert!(st.deleting.contains_key(&11), "object 11 held only rewritten data");
        assert_eq!(st.streams[&1].end_offset, 9, "the end does not move");
    }

    #[test]
    fn kv_expect_is_a_compare_and_set() {
        let mut st = CatalogState::default();
        let expect = |digest: Option<&str>| CatalogRecord::KvExpect { key: "t".into(), digest: digest.map(kv_digest) };
        run(&mut st, expect(None)).unwrap();
        run(&mut st, CatalogRecord::KvPut { key: "t".into(), value: "v1".into() }).unwrap();
        assert!(matches!(st.check(&expect(None)), Err(Error::PreconditionFailed(_))), "the key exists now");
        assert!(matches!(st.check(&expect(Some("v0"))), Err(Error::PreconditionFailed(_))), "wrong value");
        run(&mut st, expect(Some("v1"))).unwrap();
        assert_eq!(&*st.kv["t"], "v1", "an expectation changes nothing");
        run(&mut st, CatalogRecord::KvDelete { key: "t".into() }).unwrap();
        run(&mut st, expect(None)).unwrap();
    }

    #[test]
    fn a_submission_applies_once_among_the_recent_ones() {
        let mut st = CatalogState::default();
        let sub = |i: usize| CatalogRecord::Submission { id: format!("s{i}") };
        run(&mut st, sub(0)).unwrap();
        assert!(matches!(st.check(&sub(0)), Err(Error::DuplicateSubmission(_))));
        for i in 1..=RECENT_SUBMISSIONS {
            run(&mut st, sub(i)).unwrap();
        }
        assert_eq!(st.recent_submissions.len(), RECENT_SUBMISSIONS);
        st.check(&sub(0)).expect("forgotten once enough newer ones were applied");
        assert!(st.check(&sub(RECENT_SUBMISSIONS)).is_err());
    }

    #[test]
    fn state_roundtrips_through_json() {
        let mut st = two_streams();
        upload(&mut st, 10, &[(1, 0, 5)]).unwrap();
        run(&mut st, CatalogRecord::KvPut { key: "topic/a".into(), value: "{}".into() }).unwrap();
        let json = serde_json::to_vec(&st).unwrap();
        assert_eq!(serde_json::from_slice::<CatalogState>(&json).unwrap(), st);
    }
}
