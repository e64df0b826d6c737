//! Kafka messages to raw rows: one text value (or NULL) per source column, plus the change
//! kind when the message says it (Debezium's `op`). Typing happens later, per batch.
//!
//! JSON: one object per message, or an array with `strip_outer_array`; fields matched by name
//! or by `jsonpaths`; `json_root` picks the object to read. Debezium change events (the
//! envelope with `before`/`after`/`op`, with or without the `schema`/`payload` wrapper) are
//! recognised (unless `jsonpaths` address the message themselves): creates, reads and updates load `after`, deletes remove `before`'s key,
//! tombstones (NULL values) are skipped. With the schema present, Debezium's and Kafka
//! Connect's logical types (dates as days, timestamps as epoch units, decimals as bytes) are
//! converted to their SQL text. CSV: rows split by the row delimiter, columns by the column
//! separator, `\N` is NULL.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::job::{Format, LoadSpec};
use crate::table::WhError;

/// The change a row makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Upsert,
    Delete,
}

/// One source row before typing.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    pub values: Vec<Option<String>>,
    /// Set by a Debezium envelope; otherwise the `__op` column (if any) decides.
    pub op: Option<Op>,
}

/// A compiled JSON path: `$`, `.field`, `['field']`, `[index]`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
}

impl JsonPath {
    pub fn parse(path: &str) -> Result<JsonPath, WhError> {
        let bad = || WhError::Invalid(format!("invalid JSON path '{path}': use forms like $.a.b, $.a[0], $['a b']"));
        let p = path.trim();
        let mut rest = p.strip_prefix('$').ok_or_else(bad)?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end == 0 {
                    return Err(bad());
                }
                steps.push(Step::Field(r[..end].to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix("['").or_else(|| rest.strip_prefix("[\"")) {
                let quote = rest.as_bytes()[1] as char;
                let end = r.find(quote).ok_or_else(bad)?;
                steps.push(Step::Field(r[..end].to_string()));
                rest = r[end + 1..].strip_prefix(']').ok_or_else(bad)?;
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(bad)?;
                steps.push(Step::Index(r[..end].trim().parse().map_err(|_| bad())?));
                rest = &r[end + 1..];
            } else {
                return Err(bad());
            }
        }
        Ok(JsonPath(steps))
    }

    fn get<'v>(&self, mut v: &'v Value) -> Option<&'v Value> {
        for step in &self.0 {
            v = match step {
                Step::Field(f) => v.as_object()?.get(f)?,
                Step::Index(i) => v.as_array()?.get(*i)?,
            };
        }
        Some(v)
    }
}

/// Decodes messages of one job.
#[derive(Debug)]
pub struct Decoder {
    format: Format,
    /// Source column names (lowercase), in order.
    columns: Vec<String>,
    jsonpaths: Option<Vec<JsonPath>>,
    json_root: Option<JsonPath>,
    strip_outer_array: bool,
    column_separator: String,
    row_delimiter: String,
}

impl Decoder {
    pub fn new(spec: &LoadSpec, columns: Vec<String>) -> Result<Decoder, WhError> {
        let jsonpaths = spec
            .jsonpaths
            .as_ref()
            .map(|ps| ps.iter().map(|p| JsonPath::parse(p)).collect::<Result<Vec<_>, _>>())
            .transpose()?;
        if let Some(ps) = &jsonpaths {
            if ps.len() != columns.len() {
                return Err(WhError::Invalid(format!(
                    "jsonpaths has {} paths but there are {} source columns ({}): list them in COLUMNS",
                    ps.len(),
                    columns.len(),
                    columns.join(", ")
                )));
            }
        }
        Ok(Decoder {
            format: spec.format,
            columns,
            jsonpaths,
            json_root: spec.json_root.as_deref().map(JsonPath::parse).transpose()?,
            strip_outer_array: spec.strip_outer_array,
            column_separator: spec.column_separator.clone(),
            row_delimiter: spec.row_delimiter.clone(),
        })
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The rows of one message. A message that cannot be read at all is one error; CSV lines
    /// with the wrong number of columns are errors each (returned beside the good rows).
    pub fn decode(&self, value: Option<&[u8]>) -> (Vec<RawRow>, Vec<String>) {
        let Some(bytes) = value else {
            return (Vec::new(), Vec::new()); // a tombstone: nothing to load
        };
        match self.format {
            Format::Json => match self.decode_json(bytes) {
                Ok(rows) => (rows, Vec::new()),
                Err(e) => (Vec::new(), vec![e]),
            },
            Format::Csv => self.decode_csv(bytes),
        }
    }

    fn decode_csv(&self, bytes: &[u8]) -> (Vec<RawRow>, Vec<String>) {
        let text = String::from_utf8_lossy(bytes);
        let (mut rows, mut errors) = (Vec::new(), Vec::new());
        for line in text.split(self.row_delimiter.as_str()) {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(self.column_separator.as_str()).collect();
            if fields.len() != self.columns.len() {
                errors.push(format!(
                    "column count mismatch: expected {}, got {} in line '{}'",
                    self.columns.len(),
                    fields.len(),
                    clip(line)
                ));
                continue;
            }
            let values = fields.into_iter().map(|f| (f != "\\N").then(|| f.to_string())).collect();
            rows.push(RawRow { values, op: None });
        }
        (rows, errors)
    }

    fn decode_json(&self, bytes: &[u8]) -> Result<Vec<RawRow>, String> {
        let doc: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("invalid JSON ({e}): '{}'", clip(&String::from_utf8_lossy(bytes))))?;
        let root = match &self.json_root {
            Some(path) => {
                path.get(&doc).ok_or_else(|| format!("json_root not found in '{}'", clip(&doc.to_string())))?
            }
            None => &doc,
        };
        let objects: Vec<&Value> = match root {
            Value::Array(items) if self.strip_outer_array => items.iter().collect(),
            Value::Array(_) => {
                return Err("the message is a JSON array: set \"strip_outer_array\" = \"true\"".into());
            }
            other => vec![other],
        };
        objects.into_iter().map(|o| self.json_row(o)).collect()
    }

    fn json_row(&self, value: &Value) -> Result<RawRow, String> {
        // With jsonpaths the paths address the message as it is (Debezium envelopes included).
        if let Some(paths) = &self.jsonpaths {
            return Ok(RawRow { values: paths.iter().map(|p| p.get(value).and_then(text)).collect(), op: None });
        }
        let (record, op) = match debezium(value)? {
            Some(change) => change,
            None => (value.clone(), None),
        };
        let obj =
            record.as_object().ok_or_else(|| format!("expected a JSON object, got '{}'", clip(&record.to_string())))?;
        let values = self.columns.iter().map(|c| field(obj, c).and_then(text)).collect();
        Ok(RawRow { values, op })
    }
}

/// A field by exact name, else ignoring case.
fn field<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// A JSON value as the text a column is cast from (objects and arrays as JSON).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 200 {
        format!("{}...", s.chars().take(200).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A Debezium change event: the row it carries (typed values converted) and its change kind.
/// `Ok(None)`: not a Debezium envelope.
fn debezium(value: &Value) -> Result<Option<(Value, Option<Op>)>, String> {
    let Some(obj) = value.as_object() else { return Ok(None) };
    let (envelope, schema) = match (obj.get("payload"), obj.get("schema")) {
        (Some(Value::Object(p)), Some(s)) => (p, Some(s)),
        _ => (obj, None),
    };
    let Some(op) = envelope.get("op").and_then(Value::as_str) else { return Ok(None) };
    if !envelope.contains_key("after") && !envelope.contains_key("before") {
        return Ok(None);
    }
    let (side, kind) = match op {
        "c" | "r" | "u" => ("after", Op::Upsert),
        "d" => ("before", Op::Delete),
        other => return Err(format!("Debezium op '{other}' cannot be loaded (only c, r, u, d)")),
    };
    let row = match envelope.get(side) {
        Some(Value::Object(row)) => row,
        _ => return Err(format!("Debezium '{op}' event without '{side}'")),
    };
    let mut row = row.clone();
    if let Some(fields) = schema.and_then(|s| side_fields(s, side)) {
        for f in fields {
            let (Some(name), Some(logical)) =
                (f.get("field").and_then(Value::as_str), f.get("name").and_then(Value::as_str))
            else {
                continue;
            };
            if let Some(v) = row.get_mut(name) {
                if !v.is_null() {
                    *v = logical_value(logical, f.get("parameters"), v)
                        .map_err(|e| format!("field '{name}' ({logical}): {e}"))?;
                }
            }
        }
    }
    Ok(Some((Value::Object(row), Some(kind))))
}

/// The field schemas of the envelope's `before` or `after` struct.
fn side_fields<'s>(schema: &'s Value, side: &str) -> Option<&'s Vec<Value>> {
    schema
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("field").and_then(Value::as_str) == Some(side))?
        .get("fields")?
        .as_array()
}

/// Converts Debezium / Kafka Connect logical types to SQL text.
fn logical_value(logical: &str, params: Option<&Value>, v: &Value) -> Result<Value, String> {
    let int = || v.as_i64().ok_or_else(|| format!("expected an integer, got {v}"));
    let ts = |micros: i64| -> Result<Value, String> {
        let t = chrono::DateTime::from_timestamp_micros(micros).ok_or("timestamp out of range")?;
        Ok(Value::String(t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()))
    };
    match logical {
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
            let days = int()?;
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|d| d.checked_add_signed(chrono::Duration::days(days)))
                .ok_or("date out of range")?;
            Ok(Value::String(date.to_string()))
        }
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => ts(int()?.saturating_mul(1000)),
        "io.debezium.time.MicroTimestamp" => ts(int()?),
        "io.debezium.time.NanoTimestamp" => ts(int()? / 1000),
        "org.apache.kafka.connect.data.Decimal" => {
            let Some(b64) = v.as_str() else { return Ok(v.clone()) }; // decimal.handling.mode=double/string
            let scale = params
                .and_then(|p| p.get("scale"))
                .and_then(|s| s.as_str().map(str::to_string).or_else(|| s.as_i64().map(|n| n.to_string())))
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0);
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?;
            if bytes.len() > 16 {
                return Err("decimal wider than 128 bits".into());
            }
            let mut unscaled: i128 = if bytes.first().is_some_and(|b| b & 0x80 != 0) { -1 } else { 0 };
            for b in bytes {
                unscaled = (unscaled << 8) | b as i128;
            }
            Ok(Value::String(decimal_text(unscaled, scale)))
        }
        _ => Ok(v.clone()),
    }
}

fn decimal_text(unscaled: i128, scale: u32) -> String {
    if scale == 0 {
        return unscaled.to_string();
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if unscaled < 0 { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::job::LoadSpec;
    use crate::load::stmt::LoadClauses;
    use std::collections::BTreeMap;

    fn spec(props: &[(&str, &str)]) -> LoadSpec {
        let p: BTreeMap<String, String> = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let s: BTreeMap<String, String> = [("kafka_broker_list", "h:1"), ("kafka_topic", "t")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LoadSpec::new(&LoadClauses::default(), &p, &s).unwrap()
    }

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn some(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| if *s == "NULL" { None } else { Some(s.to_string()) }).collect()
    }

    #[test]
    fn json_by_name_paths_root_and_arrays() {
        let d = Decoder::new(&spec(&[("format", "json")]), cols(&["id", "name", "price"])).unwrap();
        let (rows, errs) = d.decode(Some(br#"{"ID": 7, "name": "tea", "price": 2.5, "extra": true}"#));
        assert!(errs.is_empty());
        assert_eq!(rows, vec![RawRow { values: some(&["7", "tea", "2.5"]), op: None }]);

        let d = Decoder::new(
            &spec(&[
                ("format", "json"),
                ("jsonpaths", r#"["$.k", "$.v.name", "$.tags[1]"]"#),
                ("json_root", "$.data"),
                ("strip_outer_array", "true"),
            ]),
            cols(&["id", "name", "tag"]),
        )
        .unwrap();
        let (rows, _) =
            d.decode(Some(br#"{"data": [{"k": 1, "v": {"name": "a"}, "tags": ["x", "y"]}, {"k": 2, "v": {}}]}"#));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].values, some(&["1", "a", "y"]));
        assert_eq!(rows[1].values, some(&["2", "NULL", "NULL"]));

        let d = Decoder::new(&spec(&[("format", "json")]), cols(&["id"])).unwrap();
        assert_eq!(d.decode(Some(b"{not json")).1.len(), 1);
        assert_eq!(d.decode(Some(b"[1]")).1.len(), 1, "arrays need strip_outer_array");
        assert_eq!(d.decode(None), (Vec::new(), Vec::new()), "tombstones are skipped");
    }

    #[test]
    fn debezium_envelopes_with_and_without_schema() {
        let d = Decoder::new(&spec(&[("format", "json")]), cols(&["id", "day", "at", "amount"])).unwrap();
        let plain = br#"{"before": null, "after": {"id": 1, "day": "2024-01-02"}, "op": "c", "source": {}}"#;
        let (rows, _) = d.decode(Some(plain));
        assert_eq!(rows[0], RawRow { values: some(&["1", "2024-01-02", "NULL", "NULL"]), op: Some(Op::Upsert) });

        let deleted = br#"{"before": {"id": 9}, "after": null, "op": "d"}"#;
        assert_eq!(d.decode(Some(deleted)).0[0].op, Some(Op::Delete));

        // 19724 days = 2024-01-02; 1704153600123 ms; decimal 12345 scale 2 = "MDk=".
        let typed = br#"{"schema": {"type": "struct", "fields": [
              {"field": "before", "type": "struct", "fields": []},
              {"field": "after", "type": "struct", "fields": [
                 {"field": "id", "type": "int64"},
                 {"field": "day", "type": "int32", "name": "io.debezium.time.Date"},
                 {"field": "at", "type": "int64", "name": "io.debezium.time.Timestamp"},
                 {"field": "amount", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}]}]},
            "payload": {"before": null, "after": {"id": 5, "day": 19724, "at": 1704153600123, "amount": "MDk="}, "op": "u"}}"#;
        let (rows, errs) = d.decode(Some(typed));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(rows[0].values, some(&["5", "2024-01-02", "2024-01-02 00:00:00.123000", "123.45"]));
        assert_eq!(decimal_text(-5, 3), "-0.005");
    }

    #[test]
    fn csv_lines_and_bad_columns() {
        let d = Decoder::new(&spec(&[]), cols(&["a", "b"])).unwrap();
        let (rows, errs) = d.decode(Some(b"1\tx\n2\t\\N\n3\n"));
        assert_eq!(
            rows.iter().map(|r| r.values.clone()).collect::<Vec<_>>(),
            vec![some(&["1", "x"]), some(&["2", "NULL"])]
        );
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("expected 2, got 1"), "{errs:?}");
    }

    #[test]
    fn json_paths_are_checked() {
        assert!(JsonPath::parse("$.a.b[2]['c d']").is_ok());
        for bad in ["a.b", "$.", "$[x]", "$['a'"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}
