//! The demo's dashboard: the homepage answers as text tables, query latencies and freshness,
//! redrawn in place on a terminal (or one progress line per refresh with `--quiet`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use automq_warehouse::mysql::client::QueryResult;

use super::queries::Query;

/// Rows shown per table on screen.
const MAX_ROWS: usize = 8;

#[derive(Debug)]
pub(crate) struct Dashboard {
    quiet: bool,
    redraw: bool,
    queries: Vec<Query>,
    latencies: BTreeMap<&'static str, Vec<Duration>>,
}

/// "p50 12 ms, p99 40 ms (n samples)" of a set of durations.
pub(crate) fn percentiles(samples: &[Duration]) -> String {
    match summary(samples) {
        serde_json::Value::Null => "not measured yet".into(),
        s => format!("p50 {} ms, p99 {} ms ({} samples)", s["p50"], s["p99"], s["samples"]),
    }
}

/// p50 / p99 / max in milliseconds (null without samples).
pub(crate) fn summary(samples: &[Duration]) -> serde_json::Value {
    if samples.is_empty() {
        return serde_json::Value::Null;
    }
    let mut ms: Vec<u64> = samples.iter().map(|d| d.as_millis() as u64).collect();
    ms.sort_unstable();
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    serde_json::json!({"samples": ms.len(), "p50": at(0.5), "p99": at(0.99), "max": ms[ms.len() - 1]})
}

impl Dashboard {
    pub(crate) fn new(quiet: bool, queries: Vec<Query>) -> Self {
        Dashboard { quiet, redraw: !quiet && std::io::stdout().is_terminal(), queries, latencies: BTreeMap::new() }
    }

    pub(crate) fn record_latency(&mut self, query: &'static str, took: Duration) {
        self.latencies.entry(query).or_default().push(took);
    }

    pub(crate) fn latency_summary(&self) -> serde_json::Value {
        self.latencies.iter().map(|(name, samples)| (name.to_string(), summary(samples))).collect()
    }

    pub(crate) fn render(&self, progress: &str, answers: &[Result<QueryResult, String>]) {
        let mut out = String::new();
        if self.redraw {
            out.push_str("\x1b[2J\x1b[H");
        }
        out.push_str(progress);
        out.push('\n');
        if !self.quiet {
            for (q, answer) in self.queries.iter().zip(answers) {
                let took = self.latencies.get(q.name).and_then(|l| l.last()).map_or(0, |d| d.as_millis());
                out.push_str(&format!("\n== {} ({took} ms)\n", q.title));
                match answer {
                    Ok(QueryResult::Rows { columns, rows }) => out.push_str(&table(columns, rows)),
                    Ok(QueryResult::Ok { .. }) => out.push_str("(no rows)\n"),
                    Err(e) => out.push_str(&format!("error: {e}\n")),
                }
            }
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

fn table(columns: &[String], rows: &[Vec<Option<String>>]) -> String {
    let shown: Vec<Vec<String>> = rows
        .iter()
        .take(MAX_ROWS)
        .map(|r| r.iter().map(|v| v.clone().unwrap_or_else(|| "NULL".into())).collect())
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.len()).collect();
    for r in &shown {
        for (w, v) in widths.iter_mut().zip(r) {
            *w = (*w).max(v.chars().count()).min(28);
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (v, w) in cells.iter().zip(&widths) {
            let v: String = v.chars().take(*w).collect();
            s.push_str(&format!("{v:<w$}  ", w = *w));
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(columns);
    for r in &shown {
        out.push_str(&line(r));
    }
    if rows.is_empty() {
        out.push_str("(no rows yet)\n");
    } else if rows.len() > MAX_ROWS {
        out.push_str(&format!("... {} rows\n", rows.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summary(&samples);
        assert_eq!((s["p50"].as_u64(), s["p99"].as_u64(), s["max"].as_u64()), (Some(50), Some(99), Some(100)));
        assert_eq!(summary(&[]), serde_json::Value::Null);
    }
}
