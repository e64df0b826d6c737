//! Change events in the form Debezium's PostgreSQL connector writes them with Kafka Connect's
//! JSON converter (`schemas.enable=true`): a `schema` + `payload` envelope with `before`,
//! `after`, `source`, `op` and `ts_ms`; timestamps as `io.debezium.time.MicroTimestamp`,
//! DECIMAL columns as Kafka Connect `Decimal` (base64 of the unscaled big-endian value); the
//! key is the primary key struct; a delete is followed by a tombstone (a NULL value).

use base64::Engine;
use serde_json::{json, Value as Json};

use super::model::{Change, Event, Row, Value};

/// A Kafka record: key and value (`None`: a tombstone).
pub(crate) type Message = (Vec<u8>, Option<Vec<u8>>);

fn field_schema(name: &str, v: &Value) -> Json {
    match v {
        Value::Int(_) => json!({"field": name, "type": "int64", "optional": name != "id"}),
        Value::Text(_) => json!({"field": name, "type": "string", "optional": true}),
        Value::Money(_) => json!({"field": name, "type": "bytes", "optional": true,
            "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
            "parameters": {"scale": "2", "connect.decimal.precision": "10"}}),
        Value::Time(_) => json!({"field": name, "type": "int64", "optional": true,
            "name": "io.debezium.time.MicroTimestamp", "version": 1}),
    }
}

/// Two's complement, big-endian, in as few bytes as hold the value.
fn decimal_bytes(unscaled: i64) -> String {
    let bytes = unscaled.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    base64::engine::general_purpose::STANDARD.encode(&bytes[start..])
}

fn payload(row: &Row) -> Json {
    let mut out = serde_json::Map::new();
    for (col, v) in row {
        let j = match v {
            Value::Int(i) => json!(i),
            Value::Text(s) => json!(s),
            Value::Money(m) => json!(decimal_bytes(*m)),
            Value::Time(t) => json!(t.and_utc().timestamp_micros()),
        };
        out.insert(col.to_string(), j);
    }
    Json::Object(out)
}

/// The messages of one change event (`server`: the connector's topic prefix).
pub(crate) fn messages(server: &str, event: &Event, ts_ms: i64, lsn: u64) -> Vec<Message> {
    let t = event.table;
    let key = json!({
        "schema": {"type": "struct", "name": format!("{server}.public.{t}.Key"), "optional": false,
                   "fields": [{"field": "id", "type": "int64", "optional": false}]},
        "payload": {"id": event.id},
    });
    let key = key.to_string().into_bytes();
    let (op, before, after, row) = match &event.change {
        Change::Create(row) => ("c", Json::Null, payload(row), row),
        Change::Update { before, after } => ("u", payload(before), payload(after), after),
        Change::Delete(row) => ("d", payload(row), Json::Null, row),
    };
    let value_schema = json!({"type": "struct", "name": format!("{server}.public.{t}.Value"), "optional": true,
        "fields": row.iter().map(|(c, v)| field_schema(c, v)).collect::<Vec<_>>()});
    let mut before_schema = value_schema.clone();
    before_schema["field"] = json!("before");
    let mut after_schema = value_schema;
    after_schema["field"] = json!("after");
    let envelope = json!({
        "schema": {"type": "struct", "name": format!("{server}.public.{t}.Envelope"), "optional": false, "fields": [
            before_schema,
            after_schema,
            {"field": "source", "type": "struct", "name": "io.debezium.connector.postgresql.Source", "optional": false,
             "fields": [{"field": "connector", "type": "string", "optional": false},
                        {"field": "name", "type": "string", "optional": false},
                        {"field": "ts_ms", "type": "int64", "optional": false},
                        {"field": "db", "type": "string", "optional": false},
                        {"field": "schema", "type": "string", "optional": false},
                        {"field": "table", "type": "string", "optional": false},
                        {"field": "lsn", "type": "int64", "optional": true}]},
            {"field": "op", "type": "string", "optional": false},
            {"field": "ts_ms", "type": "int64", "optional": true}]},
        "payload": {
            "before": before,
            "after": after,
            "source": {"connector": "postgresql", "name": server, "ts_ms": ts_ms, "db": server,
                       "schema": "public", "table": t, "lsn": lsn},
            "op": op,
            "ts_ms": ts_ms,
        },
    });
    let mut out = vec![(key.clone(), Some(envelope.to_string().into_bytes()))];
    if op == "d" {
        out.push((key, None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_minimal_twos_complement() {
        let decode = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(decode(&decimal_bytes(0)), [0]);
        assert_eq!(decode(&decimal_bytes(127)), [0x7f]);
        assert_eq!(decode(&decimal_bytes(128)), [0x00, 0x80]);
        assert_eq!(decode(&decimal_bytes(-1)), [0xff]);
        assert_eq!(decode(&decimal_bytes(-129)), [0xff, 0x7f]);
        assert_eq!(decode(&decimal_bytes(8900)), [0x22, 0xc4]);
    }

    #[test]
    fn a_delete_is_followed_by_a_tombstone() {
        let row: Row = vec![("id", Value::Int(4)), ("name", Value::Text("x".into()))];
        let msgs = messages("booking", &Event { table: "staff", id: 4, change: Change::Delete(row) }, 1, 2);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[1].1.is_none());
        let v: Json = serde_json::from_slice(msgs[0].1.as_ref().unwrap()).unwrap();
        assert_eq!(v["payload"]["op"], "d");
        assert_eq!(v["payload"]["before"]["id"], 4);
        assert_eq!(v["payload"]["after"], Json::Null);
        assert_eq!(v["schema"]["fields"][0]["field"], "before");
    }
}
