//! Fault injection for tests: errors, latency, torn writes and crash points.
//!
//! Rules are matched against every request in order; the first rule whose op, key prefix and
//! trigger match decides the fault. A *crash* models the process dying at that point: the
//! request is (for [`Fault::CrashAfter`]) or is not (for [`Fault::CrashBefore`]) applied to the
//! inner store, and from then on every request through this injector fails, exactly as if
//! nothing of the process were left. Tests then "restart" by building new components over the
//! inner store. A torn write stores only a prefix of the object and then crashes: object
//! stores are atomic, but readers must survive a store (or a bug) that is not.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{ObjectMeta, ObjectStore, SharedStore};
use crate::{Error, Result};

/// The request kinds, for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    PutIfAbsent,
    Get,
    GetRange,
    Head,
    Delete,
    List,
}

/// When a rule fires.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Every matching request.
    Always,
    /// Only the n-th matching request (0-based) seen by this rule.
    Nth(u64),
    /// The n-th request of any kind seen by the injector (0-based), if it matches.
    GlobalNth(u64),
    /// Each matching request with this probability (deterministic per seed).
    Probability(f64),
}

/// What happens to a request when a rule fires.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Fail with an object-store error, retryable or not; nothing is applied.
    Error { retryable: bool },
    /// Apply the request and then fail with a retryable error (a timeout after success).
    ErrorAfterApply,
    /// Delay the request.
    Latency(Duration),
    /// Crash without applying the request.
    CrashBefore,
    /// Apply the request, then crash before the caller hears of it.
    CrashAfter,
    /// For puts: store only this fraction of the bytes, then crash. Other ops: crash before.
    TornWrite { keep_fraction: f64 },
}

#[derive(Debug, Clone)]
pub struct FaultRule {
    pub op: Option<Op>,
    pub key_prefix: Option<String>,
    pub trigger: Trigger,
    pub fault: Fault,
}

impl FaultRule {
    pub fn new(fault: Fault, trigger: Trigger) -> Self {
        FaultRule { op: None, key_prefix: None, trigger, fault }
    }

    pub fn on(mut self, op: Op) -> Self {
        self.op = Some(op);
        self
    }

    pub fn under(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = Some(prefix.into());
        self
    }
}

#[derive(Debug)]
struct RuleState {
    rule: FaultRule,
    seen: u64,
}

#[derive(Debug)]
pub struct FaultInjector {
    inner: SharedStore,
    rules: Mutex<Vec<RuleState>>,
    rng: Mutex<StdRng>,
    requests: AtomicU64,
    crashed: AtomicBool,
}

impl FaultInjector {
    pub fn new(inner: SharedStore, seed: u64) -> Self {
        FaultInjector {
            inner,
            rules: Mutex::new(Vec::new()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            requests: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
        }
    }

    pub fn add_rule(&self, rule: FaultRule) {
        self.rules.lock().push(RuleState { rule, seen: 0 });
    }

    pub fn clear_rules(&self) {
        self.rules.lock().clear();
    }

    /// Requests seen so far (crashed ones included).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn has_crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Crashes now, as if the process died.
    pub fn crash(&self) {
        self.crashed.store(true, Ordering::SeqCst);
    }

    fn crashed_error(op: Op, key: &str) -> Error {
        Error::ObjectStore {
            op: "crashed",
            key: key.to_string(),
            retryable: false,
            message: format!("injected crash: the process is dead ({op:?})"),
        }
    }

    fn pick(&self, op: Op, key: &str) -> Option<Fault> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let mut rules = self.rules.lock();
        for state in rules.iter_mut() {
            let rule = &state.rule;
            if rule.op.is_some_and(|o| o != op) || rule.key_prefix.as_deref().is_some_and(|p| !key.starts_with(p)) {
                continue;
            }
            let seen = state.seen;
            state.seen += 1;
            let fires = match rule.trigger {
                Trigger::Always => true,
                Trigger::Nth(k) => seen == k,
                Trigger::GlobalNth(k) => n == k,
                Trigger::Probability(p) => self.rng.lock().random_bool(p.clamp(0.0, 1.0)),
            };
            if fires {
                return Some(rule.fault.clone());
            }
        }
        None
    }

    /// Runs `apply` under whatever fault the rules pick for this request.
    async fn with_faults<T>(
        &self,
        op: Op,
        key: &str,
        written: Option<&Bytes>,
        apply: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        if self.has_crashed() {
            return Err(Self::crashed_error(op, key));
        }
        match self.pick(op, key) {
            None => apply.await,
            Some(Fault::Latency(d)) => {
                tokio::time::sleep(d).await;
                apply.await
            }
            Some(Fault::Error { retryable }) => Err(Error::ObjectStore {
                op: "injected",
                key: key.to_string(),
                retryable,
                message: format!("injected {op:?} error"),
            }),
            Some(Fault::ErrorAfterApply) => {
                apply.await?;
                Err(Error::ObjectStore {
                    op: "injected",
                    key: key.to_string(),
                    retryable: true,
                    message: format!("injected {op:?} timeout after the request was applied"),
                })
            }
            Some(Fault::CrashBefore) => {
                self.crash();
                Err(Self::crashed_error(op, key))
            }
            Some(Fault::CrashAfter) => {
                let _ = apply.await;
                self.crash();
                Err(Self::crashed_error(op, key))
            }
            Some(Fault::TornWrite { keep_fraction }) => {
                if let Some(data) = written {
                    let keep = ((data.len() as f64) * keep_fraction.clamp(0.0, 1.0)) as usize;
                    let partial = data.slice(..keep.min(data.len().saturating_sub(1)));
                    let _ = match op {
                        Op::PutIfAbsent => self.inner.put_if_absent(key, partial).await,
                        _ => self.inner.put(key, partial).await,
                    };
                }
                self.crash();
                Err(Self::crashed_error(op, key))
            }
        }
    }
}

#[async_trait]
impl ObjectStore for FaultInjector {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.with_faults(Op::Put, key, Some(&data), self.inner.put(key, data.clone())).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        self.with_faults(Op::PutIfAbsent, key, Some(&data), self.inner.put_if_absent(key, data.clone())).await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        self.with_faults(Op::Get, key, None, self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.with_faults(Op::GetRange, key, None, self.inner.get_range(key, range)).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.with_faults(Op::Head, key, None, self.inner.head(key)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.with_faults(Op::Delete, key, None, self.inner.delete(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.with_faults(Op::List, prefix, None, self.inner.list(prefix)).await
    }
}
