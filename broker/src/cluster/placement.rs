//! Where partitions go: the controller's pure planning step. Given the cluster view and the
//! measured load of each partition, it returns the assignments to change:
//!
//! 1. A partition stays where it is while that broker can lead it, or while it is a dead
//!    file-WAL broker's (its data waits on that broker's disk), or a dead S3-WAL broker's whose
//!    WAL has not been taken over yet. Otherwise (new, unassigned, draining, released by a
//!    death) it goes to the eligible broker with the fewest partitions, then the least load.
//! 2. Counts are evened out to within one partition per broker.
//! 3. Load (bytes in + out per second) is evened out: while the busiest broker carries more
//!    than `LOAD_SKEW` times the average, the move or swap with the cold end that most
//!    narrows the gap is made, keeping counts within one.
//!
//! Moves copy no data, but each one interrupts its partition briefly, so a plan makes at most
//! `max_moves` balancing moves (placing homeless partitions is not limited).
//!
//! Pools: every broker belongs to one pool (`--pool`, default `default`) and every topic is
//! placed on one (topic config `automq.pool`, default `default`). Each pool is planned on its
//! own: a topic's partitions go only to brokers of its pool, and balancing stays within the
//! pool. Changing a topic's pool makes its partitions homeless where they are, so they move
//! (no data copied) like any other move. A topic without `automq.pool` goes to the pool of the
//! first name-pattern rule its name matches (`--pool-rule 'outbox\..*=latency'`), else to the
//! cluster's default pool (`--default-pool`); rules are resolved on every plan, so changing them
//! moves the topics they cover.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::records::{ClusterView, DEFAULT_POOL};
use crate::topics::TopicMeta;

/// Topic config naming the pool a topic's partitions are placed on.
pub const POOL_CONFIG: &str = "automq.pool";

/// How topics without an explicit `automq.pool` are placed: the first rule whose pattern (a
/// regular expression matching the whole name) matches, else the default pool.
#[derive(Debug, Clone)]
pub struct PoolRules {
    default: String,
    rules: Vec<(regex::Regex, String)>,
}

impl Default for PoolRules {
    fn default() -> Self {
        PoolRules { default: DEFAULT_POOL.into(), rules: Vec::new() }
    }
}

impl PoolRules {
    /// Parses `PATTERN=POOL` rules (the last `=` separates them, so patterns may hold `=`).
    pub fn parse(default: &str, rules: &[String]) -> Result<Self, String> {
        if default.is_empty() {
            return Err("the default pool may not be empty".into());
        }
        let rules = rules
            .iter()
            .map(|r| {
                let (pattern, pool) =
                    r.rsplit_once('=').ok_or_else(|| format!("pool rule {r:?} is not PATTERN=POOL"))?;
                if pool.is_empty() || pattern.is_empty() {
                    return Err(format!("pool rule {r:?} is not PATTERN=POOL"));
                }
                let re = regex::Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("pool rule {r:?}: bad pattern: {e}"))?;
                Ok((re, pool.to_string()))
            })
            .collect::<Result<_, String>>()?;
        Ok(PoolRules { default: default.into(), rules })
    }

    /// The pool a topic is placed on, and whether its own `automq.pool` says so.
    pub fn pool_of<'a>(&'a self, name: &str, topic: &'a TopicMeta) -> (&'a str, bool) {
        match topic.configs.get(POOL_CONFIG) {
            Some(pool) => (pool, true),
            None => (self.default_for(name), false),
        }
    }

    /// The pool for a topic named `name` that does not choose one.
    pub fn default_for(&self, name: &str) -> &str {
        self.rules.iter().find(|(re, _)| re.is_match(name)).map_or(self.default.as_str(), |(_, pool)| pool)
    }
}

/// The busiest broker may carry this much more than the average before load moves.
const LOAD_SKEW: f64 = 1.25;
/// Below this many bytes/s of difference, load balancing is not worth a move.
const LOAD_FLOOR: f64 = 512.0 * 1024.0;

type Partition = (String, i32);

#[derive(Debug, Default)]
struct Brokers {
    counts: BTreeMap<i32, usize>,
    load: BTreeMap<i32, f64>,
    held: BTreeMap<i32, Vec<Partition>>,
}

impl Brokers {
    fn add(&mut self, broker: i32, p: Partition, load: f64) {
        *self.counts.entry(broker).or_default() += 1;
        *self.load.entry(broker).or_default() += load;
        self.held.entry(broker).or_default().push(p);
    }

    fn remove(&mut self, broker: i32, p: &Partition, load: f64) {
        *self.counts.entry(broker).or_default() -= 1;
        *self.load.entry(broker).or_default() -= load;
        if let Some(h) = self.held.get_mut(&broker) {
            h.retain(|x| x != p);
        }
    }

    /// The broker with the fewest partitions (then least load, then lowest id).
    fn emptiest(&self) -> Option<i32> {
        self.counts
            .iter()
            .min_by(|a, b| a.1.cmp(b.1).then(self.load[a.0].total_cmp(&self.load[b.0])).then(a.0.cmp(b.0)))
            .map(|(id, _)| *id)
    }

    fn fullest(&self) -> Option<i32> {
        self.counts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(self.load[a.0].total_cmp(&self.load[b.0])).then(b.0.cmp(a.0)))
            .map(|(id, _)| *id)
    }
}

/// The assignments to change: topic -> broker per partition (the whole topic's list).
pub fn plan(
    view: &ClusterView,
    load: &HashMap<Partition, f64>,
    max_moves: usize,
    rules: &PoolRules,
) -> BTreeMap<String, Vec<i32>> {
    let topic_pools: BTreeMap<&str, &str> =
        view.topics.iter().map(|(name, t)| (name.as_str(), rules.pool_of(name, t).0)).collect();
    let pools: BTreeSet<&str> =
        view.brokers.values().map(|b| b.pool.as_str()).chain(topic_pools.values().copied()).collect();
    let mut next = BTreeMap::new();
    let mut moves = max_moves;
    for pool in pools {
        plan_pool(view, load, pool, &topic_pools, &mut moves, &mut next);
    }
    changed(view, next)
}

/// Plans the topics of `pool` on the brokers of `pool`, spending at most `*moves` balancing
/// moves (and counting them down).
fn plan_pool(
    view: &ClusterView,
    load: &HashMap<Partition, f64>,
    pool: &str,
    topic_pools: &BTreeMap<&str, &str>,
    moves_left: &mut usize,
    next: &mut BTreeMap<String, Vec<i32>>,
) {
    let max_moves = *moves_left;
    let mut brokers = Brokers::default();
    for b in view.brokers.values().filter(|b| b.eligible() && b.pool == pool) {
        brokers.counts.insert(b.node_id, 0);
        brokers.load.insert(b.node_id, 0.0);
    }
    let mut homeless: Vec<Partition> = Vec::new();
    let load_of = |p: &Partition| load.get(p).copied().unwrap_or(0.0);
    for (name, topic) in view.topics.iter().filter(|(name, _)| topic_pools.get(name.as_str()) == Some(&pool)) {
        let current = view.assignments.get(name);
        let mut list = vec![-1; topic.partitions.len()];
        for (i, slot) in list.iter_mut().enumerate() {
            let p = (name.clone(), i as i32);
            let cur = current.and_then(|c| c.get(i)).copied().unwrap_or(-1);
            let keep = match view.brokers.get(&cur) {
                Some(b) if b.eligible() && b.pool == pool => {
                    brokers.add(cur, p.clone(), load_of(&p));
                    true
                }
                // Alive in another pool (the topic moved): it goes.
                Some(b) if b.alive => false,
                // Dead: the partitions wait until its WAL is taken over (S3), or for it (file).
                Some(b) => !b.released(),
                None => false,
            };
            if keep {
                *slot = cur;
            } else {
                homeless.push(p);
            }
        }
        next.insert(name.clone(), list);
    }
    if brokers.counts.is_empty() {
        return;
    }
    for p in homeless {
        if let Some(b) = brokers.emptiest() {
            assign(next, &p, b);
            brokers.add(b, p.clone(), load_of(&p));
        }
    }
    let mut moves = 0;
    // Counts within one.
    while moves < max_moves {
        let (Some(full), Some(empty)) = (brokers.fullest(), brokers.emptiest()) else { break };
        if brokers.counts[&full] <= brokers.counts[&empty] + 1 {
            break;
        }
        let Some(p) =
            brokers.held[&full].iter().min_by(|a, b| load_of(a).total_cmp(&load_of(b)).then(a.cmp(b))).cloned()
        else {
            break;
        };
        brokers.remove(full, &p, load_of(&p));
        brokers.add(empty, p.clone(), load_of(&p));
        assign(next, &p, empty);
        moves += 1;
    }
    // Load within LOAD_SKEW of the average, counts kept within one.
    while moves < max_moves {
        let total: f64 = brokers.load.values().sum();
        let avg = total / brokers.load.len() as f64;
        let hot = *brokers.load.iter().max_by(|a, b| a.1.total_cmp(b.1)).map(|(id, _)| id).unwrap_or(&-1);
        let cold = *brokers.load.iter().min_by(|a, b| a.1.total_cmp(b.1)).map(|(id, _)| id).unwrap_or(&-1);
        let (lh, lc) = (brokers.load[&hot], brokers.load[&cold]);
        if hot == cold || lh <= avg * LOAD_SKEW || lh - lc < LOAD_FLOOR {
            break;
        }
        let can_move_alone = brokers.counts[&hot] > brokers.counts[&cold];
        let mut best: Option<(f64, Partition, Option<Partition>)> = None;
        for x in &brokers.held[&hot] {
            let lx = load_of(x);
            if can_move_alone {
                let gap = ((lh - lx) - (lc + lx)).abs();
                if gap < lh - lc && best.as_ref().is_none_or(|b| gap < b.0) {
                    best = Some((gap, x.clone(), None));
                }
            }
            for y in &brokers.held[&cold] {
                let ly = load_of(y);
                let gap = ((lh - lx + ly) - (lc - ly + lx)).abs();
                if gap < lh - lc && best.as_ref().is_none_or(|b| gap < b.0) {
                    best = Some((gap, x.clone(), Some(y.clone())));
                }
            }
        }
        let Some((_, x, y)) = best else { break };
        brokers.remove(hot, &x, load_of(&x));
        brokers.add(cold, x.clone(), load_of(&x));
        assign(next, &x, cold);
        if let Some(y) = y {
            brokers.remove(cold, &y, load_of(&y));
            brokers.add(hot, y.clone(), load_of(&y));
            assign(next, &y, hot);
        }
        moves += 1;
    }
    *moves_left = max_moves.saturating_sub(moves);
}

fn assign(next: &mut BTreeMap<String, Vec<i32>>, p: &Partition, broker: i32) {
    if let Some(slot) = next.get_mut(&p.0).and_then(|l| l.get_mut(p.1 as usize)) {
        *slot = broker;
    }
}

fn changed(view: &ClusterView, next: BTreeMap<String, Vec<i32>>) -> BTreeMap<String, Vec<i32>> {
    next.into_iter().filter(|(t, list)| view.assignments.get(t) != Some(list)).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::records::{BrokerRecord, WalKind};
    use crate::topics::TopicMeta;

    fn broker(id: i32, alive: bool, draining: bool, wal: WalKind) -> BrokerRecord {
        BrokerRecord {
            node_id: id,
            host: "h".into(),
            port: 9092,
            listeners: Default::default(),
            http: "h:1".into(),
            rack: None,
            pool: "default".into(),
            wal,
            wal_epoch: Some(1),
            incarnation: 1,
            alive,
            draining,
            leaving: false,
            wal_recovered: None,
        }
    }

    fn view(brokers: Vec<BrokerRecord>, topics: &[(&str, usize)]) -> ClusterView {
        let mut v = ClusterView::default();
        for b in brokers {
            v.brokers.insert(b.node_id, b);
        }
        for (name, n) in topics {
            let meta = TopicMeta {
                name: name.to_string(),
                id: uuid::Uuid::nil(),
                partitions: (0..*n as u64).collect(),
                configs: Default::default(),
                internal: false,
            };
            v.topics.insert(name.to_string(), Arc::new(meta));
        }
        v
    }

    fn apply(v: &mut ClusterView, changes: BTreeMap<String, Vec<i32>>) {
        v.assignments.extend(changes);
    }

    fn counts(v: &ClusterView) -> BTreeMap<i32, usize> {
        v.partitions_of().into_iter().map(|(b, ps)| (b, ps.len())).collect()
    }

    #[test]
    fn new_partitions_spread_evenly_and_a_new_broker_takes_its_share() {
        let mut v =
            view(vec![broker(1, true, false, WalKind::S3), broker(2, true, false, WalKind::S3)], &[("a", 7), ("b", 3)]);
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        assert_eq!(counts(&v), BTreeMap::from([(1, 5), (2, 5)]));
        assert!(plan(&v, &HashMap::new(), 100, &PoolRules::default()).is_empty(), "a balanced plan is stable");
        v.brokers.insert(3, broker(3, true, false, WalKind::S3));
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        let after = counts(&v);
        assert!(after.values().all(|&n| (3..=4).contains(&n)), "{after:?}");
        assert_eq!(after.values().sum::<usize>(), 10);
    }

    #[test]
    fn draining_and_released_brokers_end_with_none_but_a_dead_file_wal_broker_keeps_its_own() {
        let mut v = view(
            vec![
                broker(1, true, false, WalKind::S3),
                broker(2, true, false, WalKind::S3),
                broker(3, true, false, WalKind::File),
            ],
            &[("t", 9)],
        );
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        v.brokers.get_mut(&1).unwrap().draining = true;
        v.brokers.get_mut(&3).unwrap().alive = false;
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        let after = counts(&v);
        assert_eq!(after.get(&1), None, "drained: {after:?}");
        assert_eq!(after[&3], 3, "a dead file-WAL broker's partitions wait for it: {after:?}");
        assert_eq!(after[&2], 6);

        // A dead S3-WAL broker keeps its partitions until its WAL is taken over.
        v.brokers.get_mut(&1).unwrap().draining = false;
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        v.brokers.get_mut(&2).unwrap().alive = false;
        let held = counts(&v)[&2];
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        assert_eq!(counts(&v)[&2], held, "waits for the WAL takeover");
        v.brokers.get_mut(&2).unwrap().wal_recovered = Some(1);
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        assert_eq!(counts(&v).get(&2), None, "released after the takeover");
    }

    #[test]
    fn load_evens_out_by_moves_and_swaps() {
        let mut v = view(vec![broker(1, true, false, WalKind::S3), broker(2, true, false, WalKind::S3)], &[("t", 4)]);
        v.assignments.insert("t".into(), vec![1, 1, 2, 2]);
        let mib = 1024.0 * 1024.0;
        let load = HashMap::from([
            (("t".to_string(), 0), 10.0 * mib),
            (("t".to_string(), 1), 9.0 * mib),
            (("t".to_string(), 2), 1.0 * mib),
            (("t".to_string(), 3), 0.5 * mib),
        ]);
        let c = plan(&v, &load, 10, &PoolRules::default());
        apply(&mut v, c);
        let per = |b: i32| -> f64 {
            v.assignments["t"]
                .iter()
                .enumerate()
                .filter(|(_, x)| **x == b)
                .map(|(i, _)| load[&("t".to_string(), i as i32)])
                .sum()
        };
        assert!((per(1) - per(2)).abs() <= 2.0 * mib, "{} vs {}", per(1), per(2));
        assert_eq!(counts(&v), BTreeMap::from([(1, 2), (2, 2)]));
    }

    #[test]
    fn moves_are_limited_per_plan_but_homeless_partitions_are_not() {
        let mut v = view(vec![broker(1, true, false, WalKind::S3)], &[("t", 20)]);
        let c = plan(&v, &HashMap::new(), 2, &PoolRules::default());
        apply(&mut v, c);
        assert_eq!(counts(&v)[&1], 20);
        v.brokers.insert(2, broker(2, true, false, WalKind::S3));
        let c = plan(&v, &HashMap::new(), 2, &PoolRules::default());
        apply(&mut v, c);
        assert_eq!(counts(&v)[&2], 2);
    }

    fn in_pool(mut b: BrokerRecord, pool: &str) -> BrokerRecord {
        b.pool = pool.into();
        b
    }

    fn place_on(v: &mut ClusterView, topic: &str, pool: &str) {
        let mut meta = (*v.topics[topic]).clone();
        meta.configs.insert(POOL_CONFIG.into(), pool.into());
        v.topics.insert(topic.into(), Arc::new(meta));
    }

    fn brokers_of(v: &ClusterView, topic: &str) -> BTreeSet<i32> {
        v.assignments[topic].iter().copied().collect()
    }

    #[test]
    fn pools_keep_their_topics_and_a_topic_moves_between_pools() {
        let mut v = view(
            vec![
                broker(1, true, false, WalKind::S3),
                broker(2, true, false, WalKind::S3),
                in_pool(broker(3, true, false, WalKind::File), "latency"),
                in_pool(broker(4, true, false, WalKind::File), "latency"),
            ],
            &[("cdc", 8), ("outbox", 4)],
        );
        place_on(&mut v, "outbox", "latency");
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        assert_eq!(brokers_of(&v, "cdc"), BTreeSet::from([1, 2]));
        assert_eq!(brokers_of(&v, "outbox"), BTreeSet::from([3, 4]));
        assert_eq!(counts(&v), BTreeMap::from([(1, 4), (2, 4), (3, 2), (4, 2)]), "balanced within each pool");
        assert!(plan(&v, &HashMap::new(), 100, &PoolRules::default()).is_empty(), "stable");

        // Moving a topic to the other pool is a config change: its partitions move.
        place_on(&mut v, "cdc", "latency");
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        assert_eq!(brokers_of(&v, "cdc"), BTreeSet::from([3, 4]));
        assert_eq!(counts(&v), BTreeMap::from([(3, 6), (4, 6)]));
    }

    #[test]
    fn name_rules_and_the_default_pool_place_topics_without_their_own_pool() {
        let mut v = view(
            vec![
                broker(1, true, false, WalKind::S3),
                in_pool(broker(2, true, false, WalKind::S3), "bulk"),
                in_pool(broker(3, true, false, WalKind::File), "latency"),
            ],
            &[("outbox.orders", 2), ("outbox=x", 1), ("cdc.payments", 2), ("misc", 1)],
        );
        let rules = PoolRules::parse("bulk", &["outbox\\..*=latency".into(), "outbox=.*=default".into()]).unwrap();
        let c = plan(&v, &HashMap::new(), 100, &rules);
        apply(&mut v, c);
        assert_eq!(brokers_of(&v, "outbox.orders"), BTreeSet::from([3]), "first matching rule");
        assert_eq!(brokers_of(&v, "outbox=x"), BTreeSet::from([1]), "the last = splits pattern and pool");
        assert_eq!(brokers_of(&v, "cdc.payments"), BTreeSet::from([2]), "no rule: the default pool");
        assert_eq!(brokers_of(&v, "misc"), BTreeSet::from([2]));
        // A topic's own automq.pool wins over the rules.
        place_on(&mut v, "outbox.orders", "bulk");
        let c = plan(&v, &HashMap::new(), 100, &rules);
        apply(&mut v, c);
        assert_eq!(brokers_of(&v, "outbox.orders"), BTreeSet::from([2]));
        // Changing the rules moves the topics they cover.
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        assert_eq!(brokers_of(&v, "cdc.payments"), BTreeSet::from([1]));
        assert_eq!(brokers_of(&v, "outbox.orders"), BTreeSet::from([2]), "explicit pools stay");
    }

    #[test]
    fn bad_pool_rules_are_refused_with_the_rule_named() {
        assert!(PoolRules::parse("default", &["no-equals".into()]).unwrap_err().contains("PATTERN=POOL"));
        assert!(PoolRules::parse("default", &["x=".into()]).unwrap_err().contains("PATTERN=POOL"));
        assert!(PoolRules::parse("default", &["(=p".into()]).unwrap_err().contains("bad pattern"));
        assert!(PoolRules::parse("", &[]).unwrap_err().contains("default pool"));
    }

    #[test]
    fn a_pool_without_brokers_leaves_its_topics_unassigned() {
        let mut v = view(vec![broker(1, true, false, WalKind::S3)], &[("t", 2)]);
        place_on(&mut v, "t", "nowhere");
        let c = plan(&v, &HashMap::new(), 100, &PoolRules::default());
        apply(&mut v, c);
        assert_eq!(v.assignments.get("t"), Some(&vec![-1, -1]));
    }
}
