//! The demo's SQL: tables (StarRocks syntax), routine loads, and the merchant homepage and
//! payment-log queries, with dates as literals (the application passes "today", so every
//! engine given the same text computes the same answer).

use chrono::{Duration, NaiveDate};

/// `CREATE TABLE` of each table, in `model::TABLES` order.
pub(crate) fn tables() -> [(&'static str, &'static str); 6] {
    [
        ("merchants", "id BIGINT NOT NULL, name VARCHAR(64), city VARCHAR(32), created_at DATETIME"),
        ("staff", "id BIGINT NOT NULL, merchant_id BIGINT, name VARCHAR(64), role VARCHAR(16)"),
        ("customers", "id BIGINT NOT NULL, merchant_id BIGINT, name VARCHAR(64), email VARCHAR(96), phone VARCHAR(20)"),
        (
            "appointments",
            "id BIGINT NOT NULL, merchant_id BIGINT, staff_id BIGINT, customer_id BIGINT, service VARCHAR(32), \
             starts_at DATETIME, status VARCHAR(16), price DECIMAL(10,2)",
        ),
        (
            "sales",
            "id BIGINT NOT NULL, merchant_id BIGINT, appointment_id BIGINT, customer_id BIGINT, staff_id BIGINT, \
             amount DECIMAL(10,2), tip DECIMAL(10,2), sold_at DATETIME",
        ),
        (
            "payments",
            "id BIGINT NOT NULL, merchant_id BIGINT, sale_id BIGINT, method VARCHAR(16), status VARCHAR(16), \
             amount DECIMAL(10,2), paid_at DATETIME",
        ),
    ]
}

pub(crate) fn create_table(db: &str, table: &str, columns: &str) -> String {
    format!("CREATE TABLE {db}.{table} ({columns}) PRIMARY KEY (id) DISTRIBUTED BY HASH(id)")
}

/// The Debezium topic of a table (`server.schema.table`).
pub(crate) fn topic(server: &str, table: &str) -> String {
    format!("{server}.public.{table}")
}

pub(crate) fn create_routine_load(db: &str, table: &str, topic: &str, brokers: &str) -> String {
    format!(
        "CREATE ROUTINE LOAD {db}.{table}_cdc ON {table} PROPERTIES ('format' = 'json') \
         FROM KAFKA ('kafka_broker_list' = '{brokers}', 'kafka_topic' = '{topic}', \
         'property.kafka_default_offsets' = 'OFFSET_BEGINNING')"
    )
}

/// A named query of the homepage.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Query {
    pub(crate) name: &'static str,
    pub(crate) title: &'static str,
    pub(crate) sql: String,
}

fn day(d: NaiveDate) -> String {
    format!("'{} 00:00:00'", d.format("%Y-%m-%d"))
}

/// The merchant homepage (revenue yesterday, appointments today, staff performance this
/// week: 3-5 tables each) and the payment log (6 tables), for one merchant on `today`.
pub(crate) fn homepage(db: &str, merchant: i64, today: NaiveDate) -> Vec<Query> {
    let (yesterday, tomorrow, week) =
        (day(today - Duration::days(1)), day(today + Duration::days(1)), day(today - Duration::days(7)));
    let today = day(today);
    vec![
        Query {
            name: "revenue_yesterday",
            title: "Revenue yesterday",
            sql: format!(
                "SELECT m.name AS merchant, count(DISTINCT s.id) AS sales, sum(p.amount) AS revenue \
                 FROM {db}.merchants m JOIN {db}.sales s ON s.merchant_id = m.id \
                 JOIN {db}.payments p ON p.sale_id = s.id \
                 WHERE m.id = {merchant} AND p.status = 'succeeded' \
                 AND s.sold_at >= {yesterday} AND s.sold_at < {today} \
                 GROUP BY m.name"
            ),
        },
        Query {
            name: "appointments_today",
            title: "Appointments today",
            sql: format!(
                "SELECT a.starts_at, a.service, a.status, c.name AS customer, st.name AS staff, s.amount AS sale \
                 FROM {db}.appointments a JOIN {db}.customers c ON c.id = a.customer_id \
                 JOIN {db}.staff st ON st.id = a.staff_id \
                 LEFT JOIN {db}.sales s ON s.appointment_id = a.id \
                 WHERE a.merchant_id = {merchant} AND a.starts_at >= {today} AND a.starts_at < {tomorrow} \
                 ORDER BY a.starts_at, a.id"
            ),
        },
        Query {
            name: "staff_performance",
            title: "Staff performance, last 7 days",
            sql: format!(
                "SELECT st.name AS staff, count(DISTINCT a.id) AS appointments, count(DISTINCT s.id) AS sales, \
                 coalesce(sum(p.amount), 0) AS revenue \
                 FROM {db}.staff st JOIN {db}.merchants m ON m.id = st.merchant_id \
                 JOIN {db}.appointments a ON a.staff_id = st.id \
                 LEFT JOIN {db}.sales s ON s.appointment_id = a.id \
                 LEFT JOIN {db}.payments p ON p.sale_id = s.id AND p.status = 'succeeded' \
                 WHERE m.id = {merchant} AND a.starts_at >= {week} AND a.starts_at < {tomorrow} \
                 AND a.status <> 'cancelled' \
                 GROUP BY st.id, st.name ORDER BY revenue DESC, st.id"
            ),
        },
        Query {
            name: "payment_log",
            title: "Payment log",
            sql: format!(
                "SELECT p.id, p.paid_at, p.method, p.status, p.amount, s.tip, a.service, a.starts_at, \
                 c.name AS customer, c.email, st.name AS staff, m.city \
                 FROM {db}.payments p JOIN {db}.sales s ON s.id = p.sale_id \
                 JOIN {db}.appointments a ON a.id = s.appointment_id \
                 JOIN {db}.customers c ON c.id = s.customer_id \
                 JOIN {db}.staff st ON st.id = s.staff_id \
                 JOIN {db}.merchants m ON m.id = p.merchant_id \
                 WHERE p.merchant_id = {merchant} \
                 ORDER BY p.paid_at DESC, p.id DESC LIMIT 20"
            ),
        },
    ]
}
