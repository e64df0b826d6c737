//! Result sets on the wire: column definitions from an Arrow schema and rows from Arrow record
//! batches, in the text protocol (COM_QUERY) and the binary protocol (prepared statements).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, TimeUnit};
use bytes::{BufMut, BytesMut};

use super::packet::{put_lenenc_bytes, put_lenenc_int};

/// MySQL column types (protocol `MYSQL_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ColumnType {
    Decimal = 0x00,
    Tiny = 0x01,
    Short = 0x02,
    Long = 0x03,
    Float = 0x04,
    Double = 0x05,
    Null = 0x06,
    Timestamp = 0x07,
    LongLong = 0x08,
    Int24 = 0x09,
    Date = 0x0a,
    Time = 0x0b,
    DateTime = 0x0c,
    Year = 0x0d,
    VarChar = 0x0f,
    Bit = 0x10,
    Json = 0xf5,
    NewDecimal = 0xf6,
    Blob = 0xfc,
    VarString = 0xfd,
    String = 0xfe,
}

const NOT_NULL_FLAG: u16 = 1;
const UNSIGNED_FLAG: u16 = 32;
const BINARY_FLAG: u16 = 128;
/// utf8mb4_general_ci and binary collations.
const UTF8MB4: u16 = 45;
const BINARY: u16 = 63;

/// The MySQL type, flags, charset, display length and decimals for an Arrow field.
pub fn mysql_type(field: &Field) -> (ColumnType, u16, u16, u32, u8) {
    let not_null = if field.is_nullable() { 0 } else { NOT_NULL_FLAG };
    let num = |t, len, unsigned: bool| {
        (t, not_null | BINARY_FLAG | if unsigned { UNSIGNED_FLAG } else { 0 }, BINARY, len, 0u8)
    };
    match field.data_type() {
        DataType::Null => (ColumnType::Null, not_null | BINARY_FLAG, BINARY, 0, 0),
        DataType::Boolean => num(ColumnType::Tiny, 1, false),
        DataType::Int8 => num(ColumnType::Tiny, 4, false),
        DataType::UInt8 => num(ColumnType::Tiny, 3, true),
        DataType::Int16 => num(ColumnType::Short, 6, false),
        DataType::UInt16 => num(ColumnType::Short, 5, true),
        DataType::Int32 => num(ColumnType::Long, 11, false),
        DataType::UInt32 => num(ColumnType::Long, 10, true),
        DataType::Int64 => num(ColumnType::LongLong, 20, false),
        DataType::UInt64 => num(ColumnType::LongLong, 20, true),
        DataType::Float16 | DataType::Float32 => (ColumnType::Float, not_null | BINARY_FLAG, BINARY, 12, 31),
        DataType::Float64 => (ColumnType::Double, not_null | BINARY_FLAG, BINARY, 22, 31),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            (ColumnType::NewDecimal, not_null | BINARY_FLAG, BINARY, *p as u32 + 2, (*s).max(0) as u8)
        }
        DataType::Date32 | DataType::Date64 => (ColumnType::Date, not_null | BINARY_FLAG, BINARY, 10, 0),
        DataType::Timestamp(unit, _) => {
            let decimals = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond | TimeUnit::Nanosecond => 6,
            };
            (
                ColumnType::DateTime,
                not_null | BINARY_FLAG,
                BINARY,
                19 + if decimals > 0 { 1 + decimals as u32 } else { 0 },
                decimals,
            )
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            (ColumnType::Blob, not_null | BINARY_FLAG, BINARY, 65535, 0)
        }
        // Strings and everything printed as text.
        _ => (ColumnType::VarString, not_null, UTF8MB4, 65535 * 4, 0),
    }
}

/// A ColumnDefinition41 packet for `field` of `table`.
pub fn column_definition(out: &mut BytesMut, schema_name: &str, table: &str, field: &Field) {
    let (ty, flags, charset, length, decimals) = mysql_type(field);
    put_lenenc_bytes(out, b"def");
    put_lenenc_bytes(out, schema_name.as_bytes());
    put_lenenc_bytes(out, table.as_bytes());
    put_lenenc_bytes(out, table.as_bytes());
    put_lenenc_bytes(out, field.name().as_bytes());
    put_lenenc_bytes(out, field.name().as_bytes());
    put_lenenc_int(out, 0x0c);
    out.put_u16_le(charset);
    out.put_u32_le(length);
    out.put_u8(ty as u8);
    out.put_u16_le(flags);
    out.put_u8(decimals);
    out.put_u16_le(0);
}

/// The text form of row `row` of `array`, or `None` for NULL.
pub fn text_value(array: &dyn Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Boolean => (if array.as_boolean().value(row) { "1" } else { "0" }).to_string(),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Float32 => float_text(array.as_primitive::<Float32Type>().value(row) as f64, true),
        DataType::Float64 => float_text(array.as_primitive::<Float64Type>().value(row), false),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => array.as_string_view().value(row).to_string(),
        _ => arrow_cast::display::ArrayFormatter::try_new(array, &date_time_format())
            .map(|f| f.value(row).to_string())
            .unwrap_or_default(),
    })
}

fn date_time_format() -> arrow_cast::display::FormatOptions<'static> {
    arrow_cast::display::FormatOptions::default()
        .with_date_format(Some("%Y-%m-%d"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f"))
}

/// MySQL prints floats in their shortest round-trip form (`0.1`, `1e20`).
fn float_text(v: f64, single: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if single {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    }
}

/// Appends every row of `batch` as text-protocol row packets (one `Vec` per packet).
pub fn text_rows(batch: &RecordBatch, mut emit: impl FnMut(&[u8])) {
    let mut row_buf = BytesMut::new();
    for row in 0..batch.num_rows() {
        row_buf.clear();
        for column in batch.columns() {
            match text_value(column.as_ref(), row) {
                None => row_buf.put_u8(0xfb),
                Some(v) => put_lenenc_bytes(&mut row_buf, v.as_bytes()),
            }
        }
        emit(&row_buf);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::Schema;

    use super::*;

    #[test]
    fn text_rows_encode_values_and_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("ä"), None])),
                Arc::new(Float64Array::from(vec![Some(0.1), Some(2.0)])),
            ],
        )
        .unwrap();
        let mut rows = Vec::new();
        text_rows(&batch, |r| rows.push(r.to_vec()));
        assert_eq!(rows[0], [&[1, b'1', 2][..], "ä".as_bytes(), &[3, b'0', b'.', b'1']].concat());
        assert_eq!(rows[1], vec![1, b'2', 0xfb, 1, b'2']);
    }

    #[test]
    fn types_map_to_mysql() {
        assert_eq!(mysql_type(&Field::new("a", DataType::Int64, false)).0, ColumnType::LongLong);
        assert_eq!(mysql_type(&Field::new("a", DataType::Utf8, true)).0, ColumnType::VarString);
        assert_eq!(mysql_type(&Field::new("a", DataType::Decimal128(15, 2), true)).4, 2);
        assert_eq!(mysql_type(&Field::new("a", DataType::Date32, true)).0, ColumnType::Date);
    }
}
