//! What the server keeps about logins: outcomes counted for Prometheus, and consecutive
//! failures from one client address answered ever more slowly, so that guessing passwords over
//! the network is slow while a person who mistyped once barely notices.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// How a login ended, as counted in `automq_mysql_logins_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Accepted,
    /// Unknown user or wrong password: the same outcome, so nothing tells them apart.
    Denied,
    /// A plaintext login while `--require-secure-transport` is on.
    InsecureTransport,
}

impl LoginOutcome {
    fn label(self) -> &'static str {
        match self {
            LoginOutcome::Accepted => "ok",
            LoginOutcome::Denied => "denied",
            LoginOutcome::InsecureTransport => "insecure_transport",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Login metrics and the per-address slow-down, shared by every connection of a listener.
#[derive(Debug)]
pub struct Logins {
    outcomes: Family<OutcomeLabel, Counter>,
    tls_handshake_failures: Counter,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    first_delay: Duration,
    max_delay: Duration,
}

impl Default for Logins {
    fn default() -> Self {
        Logins::with_delays(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// Addresses tracked at most (the oldest is forgotten first), so that failures from many
/// addresses cannot grow the table without bound.
const MAX_ADDRESSES: usize = 10_000;

impl Logins {
    /// The first failure in a row waits `first_delay`, each next one twice as long, up to
    /// `max_delay`.
    pub fn with_delays(first_delay: Duration, max_delay: Duration) -> Self {
        Logins {
            outcomes: Family::default(),
            tls_handshake_failures: Counter::default(),
            failures: Mutex::new(HashMap::new()),
            first_delay,
            max_delay,
        }
    }

    /// Registers `mysql_logins` and `mysql_tls_handshake_failures` (under the caller's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mysql_logins",
            "MySQL logins by outcome (ok, denied, insecure_transport)",
            self.outcomes.clone(),
        );
        registry.register(
            "mysql_tls_handshake_failures",
            "MySQL connections that asked for TLS and failed or timed out in its handshake",
            self.tls_handshake_failures.clone(),
        );
    }

    pub fn count(&self, outcome: LoginOutcome) {
        self.outcomes.get_or_create(&OutcomeLabel { outcome: outcome.label() }).inc();
    }

    /// Logins ended with `outcome` so far.
    pub fn counted(&self, outcome: LoginOutcome) -> u64 {
        self.outcomes.get_or_create(&OutcomeLabel { outcome: outcome.label() }).get()
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// TLS handshakes failed or timed out so far.
    pub fn tls_handshakes_failed(&self) -> u64 {
        self.tls_handshake_failures.get()
    }

    /// Records a failed login from `peer`; returns how long to wait before answering it.
    pub fn failed(&self, peer: Option<IpAddr>) -> Duration {
        self.failed_at(peer, Instant::now())
    }

    fn failed_at(&self, peer: Option<IpAddr>, now: Instant) -> Duration {
        let Some(ip) = peer else { return self.first_delay };
        let mut failures = self.failures.lock();
        failures.retain(|_, (_, last)| now.saturating_duration_since(*last) < FAILURE_MEMORY);
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&ip) {
            if let Some(oldest) = failures.iter().min_by_key(|(_, (_, last))| *last).map(|(ip, _)| *ip) {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(ip).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let doublings = (entry.0 - 1).min(16);
        self.first_delay.saturating_mul(1 << doublings).min(self.max_delay)
    }

    /// A login from `peer` succeeded: its next failure starts over at the first delay.
    pub fn succeeded(&self, peer: Option<IpAddr>) {
        if let Some(ip) = peer {
            self.failures.lock().remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_from_one_address_wait_longer() {
        let logins = Logins::default();
        let ip: Option<IpAddr> = "192.0.2.7".parse().ok();
        let t0 = Instant::now();
        let waits: Vec<u128> = (0..8).map(|i| logins.failed_at(ip, t0 + Duration::from_secs(i)).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        let other: Option<IpAddr> = "192.0.2.8".parse().ok();
        assert_eq!(logins.failed_at(other, t0).as_millis(), 100, "counted per address");
        logins.succeeded(ip);
        assert_eq!(logins.failed_at(ip, t0 + Duration::from_secs(9)).as_millis(), 100, "a success starts over");
        logins.failed_at(ip, t0 + Duration::from_secs(10));
        let later = t0 + Duration::from_secs(10) + FAILURE_MEMORY;
        assert_eq!(logins.failed_at(ip, later).as_millis(), 100, "old failures are forgotten");
    }

    #[test]
    fn the_table_of_addresses_is_bounded() {
        let logins = Logins::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            logins.failed_at(Some(IpAddr::from(i.to_be_bytes())), t0);
        }
        assert_eq!(logins.failures.lock().len(), MAX_ADDRESSES);
    }

    #[test]
    fn outcomes_are_counted() {
        let logins = Logins::default();
        logins.count(LoginOutcome::Denied);
        logins.count(LoginOutcome::Denied);
        assert_eq!(logins.counted(LoginOutcome::Denied), 2);
        assert_eq!(logins.counted(LoginOutcome::Accepted), 0);
    }
}
