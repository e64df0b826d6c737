//! Column types: the SQL type a table was declared with (kept as written, normalised, for
//! `SHOW CREATE TABLE` and `information_schema`) and the Arrow type its data is stored as.

use arrow_schema::{DataType, TimeUnit};

/// A declared column type, e.g. `bigint`, `decimal(15,2)`, `varchar(25)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlType {
    /// Lowercase base name (`varchar`, `decimal`, `int`...).
    pub base: String,
    pub args: Vec<u32>,
    pub unsigned: bool,
}

impl SqlType {
    /// Parses a normalised type string as written by its `Display` (`to_string()`).
    pub fn parse(text: &str) -> Result<SqlType, String> {
        let text = text.trim().to_ascii_lowercase();
        let (head, unsigned) = match text.strip_suffix(" unsigned") {
            Some(h) => (h.trim().to_string(), true),
            None => (text.clone(), false),
        };
        let (base, args) = match head.split_once('(') {
            Some((base, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(|| format!("bad type {text:?}"))?;
                let args = inner
                    .split(',')
                    .map(|a| a.trim().parse::<u32>().map_err(|_| format!("bad type argument in {text:?}")))
                    .collect::<Result<Vec<_>, _>>()?;
                (base.trim().to_string(), args)
            }
            None => (head, Vec::new()),
        };
        let t = SqlType { base, args, unsigned };
        t.arrow()?;
        Ok(t)
    }

    /// The Arrow type data of this column is stored and computed as.
    pub fn arrow(&self) -> Result<DataType, String> {
        let u = self.unsigned;
        Ok(match self.base.as_str() {
            "tinyint" if u => DataType::UInt8,
            "tinyint" => DataType::Int8,
            "smallint" if u => DataType::UInt16,
            "smallint" => DataType::Int16,
            "int" | "integer" | "mediumint" if u => DataType::UInt32,
            "int" | "integer" | "mediumint" => DataType::Int32,
            "bigint" if u => DataType::UInt64,
            "bigint" => DataType::Int64,
            "largeint" => DataType::Decimal128(38, 0),
            "boolean" | "bool" => DataType::Boolean,
            "float" => DataType::Float32,
            "double" | "real" => DataType::Float64,
            "decimal" | "decimalv2" | "decimalv3" | "decimal32" | "decimal64" | "decimal128" | "numeric" => {
                let p = self.args.first().copied().unwrap_or(10);
                let s = self.args.get(1).copied().unwrap_or(0);
                if !(1..=38).contains(&p) || s > p {
                    return Err(format!(
                        "DECIMAL({p},{s}) is out of range: precision 1 to 38, scale at most precision"
                    ));
                }
                DataType::Decimal128(p as u8, s as i8)
            }
            "char" | "varchar" | "string" | "text" | "tinytext" | "mediumtext" | "longtext" | "json" | "jsonb" => {
                DataType::Utf8
            }
            "binary" | "varbinary" | "blob" | "tinyblob" | "mediumblob" | "longblob" => DataType::Binary,
            "date" => DataType::Date32,
            "datetime" | "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
            other => return Err(format!("unsupported column type {other:?}")),
        })
    }

    /// The MySQL `DATA_TYPE` (base name as MySQL reports it).
    pub fn data_type(&self) -> &str {
        match self.base.as_str() {
            "integer" => "int",
            "bool" | "boolean" => "tinyint",
            "string" | "json" | "jsonb" => "varchar",
            "decimalv2" | "decimalv3" | "decimal32" | "decimal64" | "decimal128" | "numeric" | "largeint" => "decimal",
            "real" => "double",
            other => other,
        }
    }

    /// The MySQL `COLUMN_TYPE`, as `SHOW CREATE TABLE` and `DESCRIBE` print it.
    pub fn column_type(&self) -> String {
        let base = self.data_type();
        let mut out = match (base, self.args.as_slice()) {
            ("decimal", []) if self.base == "largeint" => "decimal(38,0)".to_string(),
            ("tinyint", []) if matches!(self.base.as_str(), "bool" | "boolean") => "tinyint(1)".to_string(),
            ("varchar", []) => "varchar(65533)".to_string(),
            (b, []) => b.to_string(),
            (b, args) => format!("{b}({})", args.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
        };
        if self.unsigned {
            out.push_str(" unsigned");
        }
        out
    }
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)?;
        if !self.args.is_empty() {
            write!(f, "({})", self.args.iter().map(u32::to_string).collect::<Vec<_>>().join(","))?;
        }
        if self.unsigned {
            f.write_str(" unsigned")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_and_map_to_arrow() {
        for (text, arrow) in [
            ("BIGINT", DataType::Int64),
            ("int unsigned", DataType::UInt32),
            ("DECIMAL(15, 2)", DataType::Decimal128(15, 2)),
            ("varchar(25)", DataType::Utf8),
            ("DATETIME", DataType::Timestamp(TimeUnit::Microsecond, None)),
            ("date", DataType::Date32),
            ("largeint", DataType::Decimal128(38, 0)),
        ] {
            let t = SqlType::parse(text).unwrap();
            assert_eq!(t.arrow().unwrap(), arrow, "{text}");
            assert_eq!(SqlType::parse(&t.to_string()).unwrap(), t);
        }
        assert_eq!(SqlType::parse("decimal(15,2)").unwrap().column_type(), "decimal(15,2)");
        assert!(SqlType::parse("decimal(50,2)").is_err());
        assert!(SqlType::parse("geometry").unwrap_err().contains("unsupported"));
    }
}
