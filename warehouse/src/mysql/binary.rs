//! The binary protocol of prepared statements: parameter values sent with COM_STMT_EXECUTE,
//! and result rows (a NULL bitmap, then each value in its type's binary form).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

use super::error::MysqlError;
use super::packet::{get_lenenc_bytes, put_lenenc_bytes};
use super::resultset::text_value;

/// A parameter value bound to a prepared statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Strings, decimals, and dates/times in MySQL's text form (`2024-01-31 12:00:00.5`).
    Text(String),
    Bytes(Vec<u8>),
}

fn malformed(what: &str) -> MysqlError {
    MysqlError::wrong_arguments(format!("malformed COM_STMT_EXECUTE: {what}"))
}

fn need(b: &Bytes, n: usize, what: &str) -> Result<(), MysqlError> {
    if b.remaining() < n {
        Err(malformed(what))
    } else {
        Ok(())
    }
}

/// Decodes one parameter of MySQL type `ty` (with the unsigned flag) from `b`.
pub fn decode_param(b: &mut Bytes, ty: u8, unsigned: bool) -> Result<Param, MysqlError> {
    Ok(match ty {
        0x06 => Param::Null,
        0x01 => {
            need(b, 1, "TINY")?;
            if unsigned {
                Param::UInt(b.get_u8() as u64)
            } else {
                Param::Int(b.get_i8() as i64)
            }
        }
        0x02 | 0x0d => {
            need(b, 2, "SHORT")?;
            if unsigned {
                Param::UInt(b.get_u16_le() as u64)
            } else {
                Param::Int(b.get_i16_le() as i64)
            }
        }
        0x03 | 0x09 => {
            need(b, 4, "LONG")?;
            if unsigned {
                Param::UInt(b.get_u32_le() as u64)
            } else {
                Param::Int(b.get_i32_le() as i64)
            }
        }
        0x08 => {
            need(b, 8, "LONGLONG")?;
            if unsigned {
                Param::UInt(b.get_u64_le())
            } else {
                Param::Int(b.get_i64_le())
            }
        }
        0x04 => {
            need(b, 4, "FLOAT")?;
            Param::Float(b.get_f32_le() as f64)
        }
        0x05 => {
            need(b, 8, "DOUBLE")?;
            Param::Float(b.get_f64_le())
        }
        0x07 | 0x0a | 0x0c => {
            need(b, 1, "DATE/DATETIME length")?;
            let len = b.get_u8() as usize;
            need(b, len, "DATE/DATETIME")?;
            let mut v = b.split_to(len);
            let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut us) = (0, 0, 0, 0, 0, 0, 0u32);
            if len >= 4 {
                y = v.get_u16_le();
                mo = v.get_u8();
                d = v.get_u8();
            }
            if len >= 7 {
                h = v.get_u8();
                mi = v.get_u8();
                s = v.get_u8();
            }
            if len >= 11 {
                us = v.get_u32_le();
            }
            Param::Text(if ty == 0x0a {
                format!("{y:04}-{mo:02}-{d:02}")
            } else if us > 0 {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            })
        }
        0x0b => {
            need(b, 1, "TIME length")?;
            let len = b.get_u8() as usize;
            need(b, len, "TIME")?;
            let mut v = b.split_to(len);
            if len < 8 {
                return Ok(Param::Text("00:00:00".into()));
            }
            let negative = v.get_u8() == 1;
            let days = v.get_u32_le();
            let (h, m, s) = (v.get_u8() as u32, v.get_u8(), v.get_u8());
            let us = if len >= 12 { v.get_u32_le() } else { 0 };
            let sign = if negative { "-" } else { "" };
            let hours = days * 24 + h;
            Param::Text(if us > 0 {
                format!("{sign}{hours:02}:{m:02}:{s:02}.{us:06}")
            } else {
                format!("{sign}{hours:02}:{m:02}:{s:02}")
            })
        }
        0xf9..=0xfc => Param::Bytes(get_lenenc_bytes(b).map_err(|_| malformed("BLOB"))?.unwrap_or_default().to_vec()),
        // DECIMAL, NEWDECIMAL, VARCHAR, VAR_STRING, STRING, JSON, ENUM, SET: text.
        _ => {
            let v = get_lenenc_bytes(b).map_err(|_| malformed("string"))?.unwrap_or_default();
            Param::Text(String::from_utf8_lossy(&v).into_owned())
        }
    })
}

fn put_date(out: &mut BytesMut, d: NaiveDate) {
    out.put_u8(4);
    out.put_u16_le(d.year() as u16);
    out.put_u8(d.month() as u8);
    out.put_u8(d.day() as u8);
}

fn put_datetime(out: &mut BytesMut, t: NaiveDateTime) {
    let us = t.and_utc().timestamp_subsec_micros();
    out.put_u8(if us > 0 { 11 } else { 7 });
    out.put_u16_le(t.year() as u16);
    out.put_u8(t.month() as u8);
    out.put_u8(t.day() as u8);
    out.put_u8(t.hour() as u8);
    out.put_u8(t.minute() as u8);
    out.put_u8(t.second() as u8);
    if us > 0 {
        out.put_u32_le(us);
    }
}

/// Encodes every row of `batch` as a binary-protocol row packet. The column types must be
/// the ones announced by [`super::resultset::mysql_type`] for the same schema.
pub fn binary_rows(batch: &RecordBatch, mut emit: impl FnMut(&[u8])) {
    let columns = batch.num_columns();
    let bitmap_len = (columns + 7 + 2) / 8;
    let mut row = BytesMut::new();
    for r in 0..batch.num_rows() {
        row.clear();
        row.put_u8(0);
        let bitmap_at = row.len();
        row.put_bytes(0, bitmap_len);
        for (c, array) in batch.columns().iter().enumerate() {
            let array = array.as_ref();
            if array.is_null(r) {
                let bit = c + 2;
                row[bitmap_at + bit / 8] |= 1 << (bit % 8);
                continue;
            }
            put_binary_value(&mut row, array, r);
        }
        emit(&row);
    }
}

fn put_binary_value(out: &mut BytesMut, a: &dyn Array, r: usize) {
    match a.data_type() {
        DataType::Boolean => out.put_u8(a.as_boolean().value(r) as u8),
        DataType::Int8 => out.put_i8(a.as_primitive::<Int8Type>().value(r)),
        DataType::UInt8 => out.put_u8(a.as_primitive::<UInt8Type>().value(r)),
        DataType::Int16 => out.put_i16_le(a.as_primitive::<Int16Type>().value(r)),
        DataType::UInt16 => out.put_u16_le(a.as_primitive::<UInt16Type>().value(r)),
        DataType::Int32 => out.put_i32_le(a.as_primitive::<Int32Type>().value(r)),
        DataType::UInt32 => out.put_u32_le(a.as_primitive::<UInt32Type>().value(r)),
        DataType::Int64 => out.put_i64_le(a.as_primitive::<Int64Type>().value(r)),
        DataType::UInt64 => out.put_u64_le(a.as_primitive::<UInt64Type>().value(r)),
        DataType::Float16 => out.put_f32_le(a.as_primitive::<Float16Type>().value(r).to_f32()),
        DataType::Float32 => out.put_f32_le(a.as_primitive::<Float32Type>().value(r)),
        DataType::Float64 => out.put_f64_le(a.as_primitive::<Float64Type>().value(r)),
        DataType::Date32 => match a.as_primitive::<Date32Type>().value_as_date(r) {
            Some(d) => put_date(out, d),
            None => out.put_u8(0),
        },
        DataType::Date64 => match a.as_primitive::<Date64Type>().value_as_date(r) {
            Some(d) => put_date(out, d),
            None => out.put_u8(0),
        },
        DataType::Timestamp(unit, _) => {
            let t = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value_as_datetime(r),
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value_as_datetime(r),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value_as_datetime(r),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value_as_datetime(r),
            };
            match t {
                Some(t) => put_datetime(out, t),
                None => out.put_u8(0),
            }
        }
        DataType::Binary => put_lenenc_bytes(out, a.as_binary::<i32>().value(r)),
        DataType::LargeBinary => put_lenenc_bytes(out, a.as_binary::<i64>().value(r)),
        DataType::BinaryView => put_lenenc_bytes(out, a.as_binary_view().value(r)),
        // Strings, decimals and everything else: their text, length-encoded.
        _ => put_lenenc_bytes(out, text_value(a, r).unwrap_or_default().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Date32Array, Int32Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    #[test]
    fn rows_have_a_null_bitmap_and_typed_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("d", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(-2), None])),
                Arc::new(StringArray::from(vec![Some("x"), Some("yz")])),
                Arc::new(Date32Array::from(vec![Some(19_723), None])), // 2024-01-01
            ],
        )
        .unwrap();
        let mut rows = Vec::new();
        binary_rows(&batch, |r| rows.push(r.to_vec()));
        assert_eq!(rows[0], vec![0, 0, 0xfe, 0xff, 0xff, 0xff, 1, b'x', 4, 0xe8, 0x07, 1, 1]);
        assert_eq!(rows[1], vec![0, 0b1_0100, 2, b'y', b'z'], "NULLs at columns 0 and 2 (bits 2 and 4)");
    }

    #[test]
    fn params_decode_by_type() {
        let mut b = Bytes::from(vec![0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_param(&mut b, 0x03, false).unwrap(), Param::Int(-1));
        let mut b = Bytes::from(vec![0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_param(&mut b, 0x03, true).unwrap(), Param::UInt(u32::MAX as u64));
        let mut b = Bytes::from(vec![3, b'a', b'b', b'c']);
        assert_eq!(decode_param(&mut b, 0xfd, false).unwrap(), Param::Text("abc".into()));
        let mut b = Bytes::from(vec![7, 0xe8, 0x07, 2, 29, 13, 14, 15]);
        assert_eq!(decode_param(&mut b, 0x0c, false).unwrap(), Param::Text("2024-02-29 13:14:15".into()));
        let mut b = Bytes::from(vec![2, 1]);
        assert!(decode_param(&mut b, 0x08, false).is_err(), "truncated values are errors");
    }
}
