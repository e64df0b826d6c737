//! The booking platform the demo plays: merchants (salons, clinics, studios) with staff and
//! customers; customers book appointments, appointments are completed (a sale and its payment)
//! or cancelled, payments succeed, fail and are retried, or are refunded later.
//!
//! The generator keeps every row it has emitted, so each change event carries the row's real
//! before and after images (as Debezium does), and it is deterministic for a seed: the same
//! seed and date give the same events.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, NaiveDateTime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A column value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    Text(String),
    /// Hundredths (a DECIMAL(10,2)).
    Money(i64),
    Time(NaiveDateTime),
}

/// One row: column name -> value, in the table's column order.
pub(crate) type Row = Vec<(&'static str, Value)>;

/// The tables, in creation order.
pub(crate) const TABLES: [&str; 6] = ["merchants", "staff", "customers", "appointments", "sales", "payments"];

/// A change to one row, as a CDC source reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    Create(Row),
    Update { before: Row, after: Row },
    Delete(Row),
}

/// A change event for one table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) table: &'static str,
    pub(crate) id: i64,
    pub(crate) change: Change,
}

const CITIES: [&str; 8] = ["Lisbon", "Porto", "Madrid", "Paris", "Lyon", "Berlin", "Milan", "Dublin"];
const KINDS: [&str; 5] = ["Salon", "Barbers", "Spa", "Physio", "Studio"];
const FIRST: [&str; 12] =
    ["Ana", "Bruno", "Carla", "Diogo", "Eva", "Filipe", "Greta", "Hugo", "Ines", "Joao", "Lea", "Marta"];
const LAST: [&str; 10] =
    ["Silva", "Costa", "Martin", "Garcia", "Rossi", "Muller", "Dubois", "Santos", "Moreau", "Kelly"];
const ROLES: [&str; 3] = ["stylist", "senior", "assistant"];
/// Services and their prices in hundredths.
const SERVICES: [(&str, i64); 6] =
    [("haircut", 3500), ("colour", 8900), ("massage", 6500), ("manicure", 2500), ("physio", 5500), ("beard", 2000)];
const METHODS: [&str; 3] = ["card", "wallet", "cash"];

/// Ids to pick from at random, with O(1) insert, remove and pick.
#[derive(Debug, Default)]
struct Bag {
    items: Vec<i64>,
    at: std::collections::HashMap<i64, usize>,
}

impl Bag {
    fn insert(&mut self, id: i64) {
        if !self.at.contains_key(&id) {
            self.at.insert(id, self.items.len());
            self.items.push(id);
        }
    }

    fn remove(&mut self, id: i64) {
        if let Some(i) = self.at.remove(&id) {
            self.items.swap_remove(i);
            if let Some(&moved) = self.items.get(i) {
                self.at.insert(moved, i);
            }
        }
    }

    fn pick(&self, rng: &mut StdRng) -> Option<i64> {
        (!self.items.is_empty()).then(|| self.items[rng.random_range(0..self.items.len())])
    }
}

fn value<'r>(row: &'r Row, col: &str) -> Option<&'r Value> {
    row.iter().find(|(c, _)| *c == col).map(|(_, v)| v)
}

/// The generator and everything it has emitted.
#[derive(Debug)]
pub(crate) struct Booking {
    rng: StdRng,
    today: NaiveDate,
    rows: BTreeMap<(&'static str, i64), Row>,
    next_id: BTreeMap<&'static str, i64>,
    merchants: Vec<i64>,
    staff: BTreeMap<i64, Vec<i64>>,
    customers: BTreeMap<i64, Vec<i64>>,
    /// Appointments by status, for picking the next one to change.
    booked: Bag,
    cancelled: Bag,
    /// Payments that succeeded (candidates for refunds).
    succeeded: Bag,
    pending: Vec<Event>,
}

fn name(rng: &mut StdRng) -> String {
    format!("{} {}", FIRST[rng.random_range(0..FIRST.len())], LAST[rng.random_range(0..LAST.len())])
}

impl Booking {
    /// A platform of `merchants` merchants around `today` (appointments fall in the week
    /// before it and the day after).
    pub(crate) fn new(seed: u64, today: NaiveDate, merchants: usize) -> Self {
        let mut b = Booking {
            rng: StdRng::seed_from_u64(seed),
            today,
            rows: BTreeMap::new(),
            next_id: BTreeMap::new(),
            merchants: Vec::new(),
            staff: BTreeMap::new(),
            customers: BTreeMap::new(),
            booked: Bag::default(),
            cancelled: Bag::default(),
            succeeded: Bag::default(),
            pending: Vec::new(),
        };
        let opened = today.and_hms_opt(9, 0, 0).unwrap_or_default() - Duration::days(400);
        for i in 0..merchants.max(1) {
            let id = b.id("merchants");
            let row: Row = vec![
                ("id", Value::Int(id)),
                ("name", Value::Text(format!("{} {} #{}", LAST[i % LAST.len()], KINDS[i % KINDS.len()], id))),
                ("city", Value::Text(CITIES[i % CITIES.len()].into())),
                ("created_at", Value::Time(opened + Duration::days(i as i64))),
            ];
            b.create("merchants", id, row);
            b.merchants.push(id);
            for _ in 0..b.rng.random_range(3..=6) {
                b.hire(id);
            }
            for _ in 0..30 {
                b.new_customer(id);
            }
        }
        b
    }

    /// The first day of the window that appointments fall in.
    pub(crate) fn first_day(&self) -> NaiveDate {
        self.today - Duration::days(7)
    }

    /// Events produced so far and not yet taken.
    pub(crate) fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
    }

    /// The newest payment id (for freshness probes).
    pub(crate) fn last_payment(&self) -> Option<i64> {
        self.next_id.get("payments").map(|n| n - 1).filter(|&id| self.rows.contains_key(&("payments", id)))
    }

    fn id(&mut self, table: &'static str) -> i64 {
        let next = self.next_id.entry(table).or_insert(1);
        *next += 1;
        *next - 1
    }

    fn create(&mut self, table: &'static str, id: i64, row: Row) {
        self.rows.insert((table, id), row.clone());
        self.pending.push(Event { table, id, change: Change::Create(row) });
    }

    fn update(&mut self, table: &'static str, id: i64, set: &[(&'static str, Value)]) {
        let Some(before) = self.rows.get(&(table, id)).cloned() else { return };
        let mut after = before.clone();
        for (col, v) in set {
            if let Some(slot) = after.iter_mut().find(|(c, _)| c == col) {
                slot.1 = v.clone();
            }
        }
        self.rows.insert((table, id), after.clone());
        self.pending.push(Event { table, id, change: Change::Update { before, after } });
    }

    fn delete(&mut self, table: &'static str, id: i64) {
        if let Some(before) = self.rows.remove(&(table, id)) {
            self.pending.push(Event { table, id, change: Change::Delete(before) });
        }
    }

    fn hire(&mut self, merchant: i64) {
        let id = self.id("staff");
        let row: Row = vec![
            ("id", Value::Int(id)),
            ("merchant_id", Value::Int(merchant)),
            ("name", Value::Text(name(&mut self.rng))),
            ("role", Value::Text(ROLES[self.rng.random_range(0..ROLES.len())].into())),
        ];
        self.create("staff", id, row);
        self.staff.entry(merchant).or_default().push(id);
    }

    fn new_customer(&mut self, merchant: i64) {
        let id = self.id("customers");
        let n = name(&mut self.rng);
        let email = format!("{}.{id}@example.com", n.to_lowercase().replace(' ', "."));
        let row: Row = vec![
            ("id", Value::Int(id)),
            ("merchant_id", Value::Int(merchant)),
            ("name", Value::Text(n)),
            ("email", Value::Text(email)),
            ("phone", Value::Text(format!("+351 9{:08}", self.rng.random_range(0..100_000_000)))),
        ];
        self.create("customers", id, row);
        self.customers.entry(merchant).or_default().push(id);
    }

    /// Merchants are not equally busy: the first ones get most of the traffic.
    fn busy_merchant(&mut self) -> i64 {
        let n = self.merchants.len();
        let i = (self.rng.random::<f64>().powi(2) * n as f64) as usize;
        self.merchants[i.min(n - 1)]
    }

    fn slot(&mut self) -> NaiveDateTime {
        let day = self.first_day() + Duration::days(self.rng.random_range(0..9));
        let minutes = 8 * 60 + 30 * self.rng.random_range(0..24);
        day.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::minutes(minutes)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.random_range(0..items.len())])
    }

    /// A booked appointment, starting before `before` if given (a few random tries).
    fn booked_appointment(&mut self, before: Option<NaiveDateTime>) -> Option<i64> {
        for _ in 0..8 {
            let id = self.booked.pick(&mut self.rng)?;
            let starts = self.rows.get(&("appointments", id)).and_then(|r| value(r, "starts_at"));
            if before.is_none_or(|t| matches!(starts, Some(Value::Time(s)) if *s < t)) {
                return Some(id);
            }
        }
        None
    }

    fn merchant_of(&self, table: &'static str, id: i64) -> i64 {
        match self.rows.get(&(table, id)).and_then(|r| value(r, "merchant_id")) {
            Some(Value::Int(m)) => *m,
            _ => 0,
        }
    }

    /// One step of platform activity: a few change events.
    pub(crate) fn step(&mut self) {
        let roll = self.rng.random_range(0..100);
        let end_of_today = (self.today + Duration::days(1)).and_hms_opt(0, 0, 0).unwrap_or_default();
        match roll {
            0..=34 => self.book(),
            35..=59 => match self.booked_appointment(Some(end_of_today)) {
                Some(a) => self.complete(a),
                None => self.book(),
            },
            60..=66 => match self.booked_appointment(None) {
                Some(a) => {
                    let status = if self.rng.random_bool(0.7) { "cancelled" } else { "no_show" };
                    self.update("appointments", a, &[("status", Value::Text(status.into()))]);
                    self.booked.remove(a);
                    if status == "cancelled" {
                        self.cancelled.insert(a);
                    }
                }
                None => self.book(),
            },
            67..=74 => match self.booked_appointment(None) {
                Some(a) => {
                    let merchant = self.merchant_of("appointments", a);
                    let staff = self.staff.get(&merchant).cloned().unwrap_or_default();
                    let staff = self.pick(&staff).unwrap_or(0);
                    let at = self.slot();
                    self.update("appointments", a, &[("starts_at", Value::Time(at)), ("staff_id", Value::Int(staff))]);
                }
                None => self.book(),
            },
            75..=78 => match self.succeeded.pick(&mut self.rng) {
                Some(p) => {
                    self.update("payments", p, &[("status", Value::Text("refunded".into()))]);
                    self.succeeded.remove(p);
                }
                None => self.book(),
            },
            79..=86 => {
                let merchant = self.busy_merchant();
                let customers = self.customers.get(&merchant).cloned().unwrap_or_default();
                if let Some(c) = self.pick(&customers) {
                    let phone = format!("+351 9{:08}", self.rng.random_range(0..100_000_000));
                    self.update("customers", c, &[("phone", Value::Text(phone))]);
                }
            }
            87..=92 => {
                let merchant = self.busy_merchant();
                self.new_customer(merchant);
            }
            93..=96 => match self.cancelled.pick(&mut self.rng) {
                // Cancelled bookings are purged (a hard delete in the source database).
                Some(a) => {
                    self.delete("appointments", a);
                    self.cancelled.remove(a);
                }
                None => self.book(),
            },
            _ => {
                let merchant = self.busy_merchant();
                if self.rng.random_bool(0.5) {
                    self.hire(merchant);
                } else {
                    let staff = self.staff.get(&merchant).cloned().unwrap_or_default();
                    if let Some(s) = self.pick(&staff) {
                        let role = ROLES[self.rng.random_range(0..ROLES.len())];
                        self.update("staff", s, &[("role", Value::Text(role.into()))]);
                    }
                }
            }
        }
    }

    fn book(&mut self) {
        let merchant = self.busy_merchant();
        let staff = self.staff.get(&merchant).cloned().unwrap_or_default();
        let customers = self.customers.get(&merchant).cloned().unwrap_or_default();
        let (Some(staff), Some(customer)) = (self.pick(&staff), self.pick(&customers)) else { return };
        let (service, price) = SERVICES[self.rng.random_range(0..SERVICES.len())];
        let id = self.id("appointments");
        let at = self.slot();
        let row: Row = vec![
            ("id", Value::Int(id)),
            ("merchant_id", Value::Int(merchant)),
            ("staff_id", Value::Int(staff)),
            ("customer_id", Value::Int(customer)),
            ("service", Value::Text(service.into())),
            ("starts_at", Value::Time(at)),
            ("status", Value::Text("booked".into())),
            ("price", Value::Money(price)),
        ];
        self.create("appointments", id, row);
        self.booked.insert(id);
    }

    /// The appointment took place: a sale, a payment, and the payment's outcome (a failed
    /// payment is retried with another one).
    fn complete(&mut self, appointment: i64) {
        let Some(row) = self.rows.get(&("appointments", appointment)).cloned() else { return };
        let get = |col: &str| value(&row, col).cloned();
        let (Some(Value::Int(merchant)), Some(Value::Int(staff)), Some(Value::Int(customer))) =
            (get("merchant_id"), get("staff_id"), get("customer_id"))
        else {
            return;
        };
        let (Some(Value::Time(starts)), Some(Value::Money(price))) = (get("starts_at"), get("price")) else { return };
        self.update("appointments", appointment, &[("status", Value::Text("completed".into()))]);
        let sale = self.id("sales");
        let tip = price * self.rng.random_range(0..=20) / 100;
        let sold_at = starts + Duration::minutes(50);
        let sale_row: Row = vec![
            ("id", Value::Int(sale)),
            ("merchant_id", Value::Int(merchant)),
            ("appointment_id", Value::Int(appointment)),
            ("customer_id", Value::Int(customer)),
            ("staff_id", Value::Int(staff)),
            ("amount", Value::Money(price)),
            ("tip", Value::Money(tip)),
            ("sold_at", Value::Time(sold_at)),
        ];
        self.create("sales", sale, sale_row);
        self.booked.remove(appointment);
        let mut paid_at = sold_at + Duration::minutes(1);
        loop {
            let payment = self.id("payments");
            let method = METHODS[self.rng.random_range(0..METHODS.len())];
            let row: Row = vec![
                ("id", Value::Int(payment)),
                ("merchant_id", Value::Int(merchant)),
                ("sale_id", Value::Int(sale)),
                ("method", Value::Text(method.into())),
                ("status", Value::Text("pending".into())),
                ("amount", Value::Money(price + tip)),
                ("paid_at", Value::Time(paid_at)),
            ];
            self.create("payments", payment, row);
            if self.rng.random_bool(0.9) {
                self.update("payments", payment, &[("status", Value::Text("succeeded".into()))]);
                self.succeeded.insert(payment);
                return;
            }
            self.update("payments", payment, &[("status", Value::Text("failed".into()))]);
            paid_at += Duration::minutes(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let run = |seed| {
            let mut b = Booking::new(seed, day(), 3);
            for _ in 0..500 {
                b.step();
            }
            b.take()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn every_change_carries_the_rows_real_images() {
        let mut b = Booking::new(1, day(), 4);
        for _ in 0..3000 {
            b.step();
        }
        let mut current: BTreeMap<(&str, i64), Row> = BTreeMap::new();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in b.take() {
            let key = (e.table, e.id);
            match e.change {
                Change::Create(row) => assert!(current.insert(key, row).is_none(), "{key:?} created twice"),
                Change::Update { before, after } => {
                    assert_eq!(current.get(&key), Some(&before), "{key:?}: before image");
                    current.insert(key, after);
                }
                Change::Delete(before) => assert_eq!(current.remove(&key), Some(before), "{key:?}: deleted image"),
            }
            *counts.entry(e.table).or_default() += 1;
        }
        assert_eq!(current, b.rows, "replaying the events gives the generator's rows");
        for table in TABLES {
            assert!(counts.get(table).copied().unwrap_or(0) > 3, "{table}: {counts:?}");
        }
        // Every sale's payments: at most one succeeded or refunded, the others failed.
        let sales = current.keys().filter(|(t, _)| *t == "sales").count();
        assert!(sales > 100, "{sales} sales");
    }
}
