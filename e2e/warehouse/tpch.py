"""TPC-H helpers shared by the conformance test and the benchmark: generate data with DuckDB's
tpch extension, create the tables on the query node, load them through the MySQL protocol,
and the 22 queries (DuckDB's text)."""

import datetime
import decimal
import glob
import os

import duckdb

TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]


def duckdb_with_tpch():
    con = duckdb.connect()
    import duckdb_extension_tpch

    base = os.path.dirname(duckdb_extension_tpch.__file__)
    paths = glob.glob(os.path.join(base, "extensions", "*", "tpch.duckdb_extension"))
    if not paths:
        raise RuntimeError(f"tpch extension not found under {base}")
    con.execute(f"LOAD '{paths[0]}'")
    return con


def generate(sf):
    con = duckdb_with_tpch()
    con.execute(f"CALL dbgen(sf={sf})")
    return con


def sql_type(duck_type):
    t = duck_type.upper()
    if t.startswith("DECIMAL"):
        return t
    return {"INTEGER": "INT", "BIGINT": "BIGINT", "DATE": "DATE", "DOUBLE": "DOUBLE"}.get(t, "VARCHAR(200)")


def create_tables(cur, con):
    for table in TABLES:
        cols = con.execute(f"DESCRIBE {table}").fetchall()
        defs = ", ".join(f"{name} {sql_type(t)} NOT NULL" for name, t, *_ in cols)
        cur.execute(f"CREATE TABLE {table} ({defs}) DUPLICATE KEY({cols[0][0]})")


def literal(v):
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "''") + "'"
    if isinstance(v, (datetime.date, datetime.datetime)):
        return f"'{v}'"
    return str(v)


def load(cur, con, rows_per_insert=5000, progress=None):
    """Loads every table with multi-row INSERT statements; returns rows loaded."""
    total = 0
    for table in TABLES:
        result = con.execute(f"SELECT * FROM {table}")
        while True:
            chunk = result.fetchmany(rows_per_insert)
            if not chunk:
                break
            values = ",".join("(" + ",".join(literal(v) for v in row) + ")" for row in chunk)
            cur.execute(f"INSERT INTO {table} VALUES {values}")
            total += len(chunk)
            if progress:
                progress(table, total)
    return total


def queries(con):
    return [q for (_, q) in con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY query_nr").fetchall()]


def normalise(rows):
    """Rows as comparable tuples: decimals and floats rounded, dates as text."""
    out = []
    for row in rows:
        vals = []
        for v in row:
            if isinstance(v, (decimal.Decimal, float)):
                vals.append(round(float(v), 2))
            elif isinstance(v, (datetime.date, datetime.datetime)):
                vals.append(str(v)[:10])
            else:
                vals.append(v)
        out.append(tuple(vals))
    return out


def same(a, b, rel=1e-6):
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if len(ra) != len(rb):
            return False
        for x, y in zip(ra, rb):
            if isinstance(x, float) or isinstance(y, float):
                try:
                    x, y = float(x), float(y)
                except (TypeError, ValueError):
                    return False
                if abs(x - y) > max(0.011, rel * max(abs(x), abs(y))):
                    return False
            elif x != y:
                return False
    return True
