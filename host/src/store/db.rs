//! One way to talk SQL to either engine the store runs on.
//!
//! The store's statements are written once, in the SQL that SQLite and
//! PostgreSQL share, with SQLite's numbered parameters (`?1`); PostgreSQL
//! gets them as `$1`. Where the two differ (the schema), each engine has
//! its own. Values cross as [`Arg`]s and come back
//! through [`FromDb`], so no statement names a driver's types.
//!
//! Rules the shared SQL keeps (PostgreSQL is strict where SQLite is not):
//! integers are `BIGINT` columns and `i64` values; `sum()` is cast back to
//! `BIGINT` (PostgreSQL widens it to `numeric`); sizes are `octet_length`
//! (SQLite's `length` counts a text's characters); upserts say
//! `ON CONFLICT`, never `INSERT OR ...`.

use std::fmt;

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::postgres::PgConn;

/// A connection of either engine, inside a transaction or not (the
/// store's `read` and `write` decide).
#[derive(Debug, Clone, Copy)]
pub(super) enum Db<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres(&'c PgConn),
}

/// What a statement failed with.
#[derive(Debug, thiserror::Error)]
pub(super) enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A value that does not convert (JSON, a number out of range).
    #[error("{0}")]
    Value(String),
}

pub(super) type DbResult<T> = Result<T, DbError>;

impl DbError {
    pub(super) fn value(message: impl fmt::Display) -> Self {
        DbError::Value(message.to_string())
    }
}

/// PostgreSQL's own words (tokio-postgres's Display says only "db error").
fn postgres_message(error: &tokio_postgres::Error) -> String {
    match (error.as_db_error(), std::error::Error::source(error)) {
        (Some(db), _) => format!("{} ({})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("{error}: {cause}"),
        (None, None) => error.to_string(),
    }
}

impl<'c> Db<'c> {
    /// Runs a statement; returns the rows it changed.
    pub(super) fn execute(self, sql: &str, args: &[Arg<'_>]) -> DbResult<usize> {
        match self {
            Db::Sqlite(conn) => Ok(conn.prepare_cached(sql)?.execute(rusqlite::params_from_iter(args))?),
            Db::Postgres(conn) => conn.execute(sql, args),
        }
    }

    /// Statements without parameters, separated by semicolons (schema).
    pub(super) fn batch(self, sql: &str) -> DbResult<()> {
        match self {
            Db::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Db::Postgres(conn) => conn.batch(sql),
        }
    }

    /// Every row a query returns, each read by `read`.
    pub(super) fn query<T>(
        self,
        sql: &str,
        args: &[Arg<'_>],
        mut read: impl FnMut(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<Vec<T>> {
        match self {
            Db::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(args))?;
                let mut read_rows = Vec::new();
                while let Some(row) = rows.next()? {
                    read_rows.push(read(&Row::Sqlite(row))?);
                }
                Ok(read_rows)
            }
            Db::Postgres(conn) => conn
                .query(sql, args)?
                .iter()
                .map(|row| read(&Row::Postgres(row)))
                .collect(),
        }
    }

    /// The first row a query returns, if any.
    pub(super) fn query_opt<T>(
        self,
        sql: &str,
        args: &[Arg<'_>],
        read: impl FnOnce(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<Option<T>> {
        let mut read = Some(read);
        let mut first = None;
        let rows = self.query(sql, args, |row| {
            if let Some(read) = read.take() {
                first = Some(read(row)?);
            }
            Ok(())
        })?;
        drop(rows);
        Ok(first)
    }

    /// The one row a query returns (an aggregate, a `RETURNING`).
    pub(super) fn query_one<T>(
        self,
        sql: &str,
        args: &[Arg<'_>],
        read: impl FnOnce(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<T> {
        self.query_opt(sql, args, read)?
            .ok_or_else(|| DbError::value(format!("no row returned by {}", first_line(sql))))
    }
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or(sql).trim()
}

/// A value bound to a statement's parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
    Bool(bool),
}

/// Binds a list of values: `args![id, item.module, item.event]`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::db::ToArg::to_arg(&$value)),*] as &[$crate::store::db::Arg<'_>]
    };
}
pub(super) use args;

/// A Rust value a statement can take.
pub(super) trait ToArg {
    fn to_arg(&self) -> Arg<'_>;
}

impl ToArg for i64 {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Int(*self)
    }
}

impl ToArg for bool {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Bool(*self)
    }
}

impl ToArg for str {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for String {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
}

impl ToArg for [u8] {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Bytes(self)
    }
}

impl ToArg for Vec<u8> {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Bytes(self)
    }
}

impl<T: ToArg + ?Sized> ToArg for &T {
    fn to_arg(&self) -> Arg<'_> {
        (**self).to_arg()
    }
}

impl<T: ToArg> ToArg for Option<T> {
    fn to_arg(&self) -> Arg<'_> {
        self.as_ref().map_or(Arg::Null, ToArg::to_arg)
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Null => ValueRef::Null,
            Arg::Int(n) => ValueRef::Integer(n),
            Arg::Text(text) => ValueRef::Text(text.as_bytes()),
            Arg::Bytes(bytes) => ValueRef::Blob(bytes),
            Arg::Bool(b) => ValueRef::Integer(i64::from(b)),
        }))
    }
}

/// PostgreSQL types a parameter's type from where it stands: an integer
/// goes into whichever integer (or boolean) the statement wants, checked.
impl ToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(n) => match *ty {
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::BOOL => (n != 0).to_sql(ty, out),
                _ => n.to_sql(ty, out),
            },
            // PostgreSQL's text cannot hold NUL: it is stored as U+2400
            // (SYMBOL FOR NULL), the same in keys written and keys looked
            // up, rather than failing the whole input for ever.
            Arg::Text(text) if text.contains('\0') => text.replace('\0', "\u{2400}").as_str().to_sql(ty, out),
            Arg::Text(text) => text.to_sql(ty, out),
            Arg::Bytes(bytes) => bytes.to_sql(ty, out),
            Arg::Bool(b) => match *ty {
                Type::INT2 | Type::INT4 | Type::INT8 => Arg::Int(i64::from(b)).to_sql(ty, out),
                _ => b.to_sql(ty, out),
            },
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::BOOL
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::BYTEA
        )
    }

    to_sql_checked!();
}

/// A row of either engine.
#[derive(Debug)]
pub(super) enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r tokio_postgres::Row),
}

impl Row<'_> {
    pub(super) fn get<T: FromDb>(&self, index: usize) -> DbResult<T> {
        match self {
            Row::Sqlite(row) => T::from_sqlite(row, index),
            Row::Postgres(row) => T::from_postgres(row, index),
        }
    }
}

/// A Rust value a column reads into.
pub(super) trait FromDb: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> DbResult<Self>;
    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> DbResult<Self>;
}

macro_rules! from_both {
    ($($t:ty),*) => {$(
        impl FromDb for $t {
            fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> DbResult<Self> {
                Ok(row.get(index)?)
            }
            fn from_postgres(row: &tokio_postgres::Row, index: usize) -> DbResult<Self> {
                Ok(row.try_get(index)?)
            }
        }
    )*};
}

from_both!(String, Option<String>, Vec<u8>, Option<Vec<u8>>);

/// PostgreSQL answers `SELECT 1` and `count(*)` in different integer
/// types; SQLite stores booleans as integers. Both read as the column is.
impl FromDb for Option<i64> {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> DbResult<Self> {
        Ok(row.get(index)?)
    }

    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> DbResult<Self> {
        Ok(match *row.columns()[index].type_() {
            Type::INT2 => row.try_get::<_, Option<i16>>(index)?.map(i64::from),
            Type::INT4 => row.try_get::<_, Option<i32>>(index)?.map(i64::from),
            Type::BOOL => row.try_get::<_, Option<bool>>(index)?.map(i64::from),
            _ => row.try_get(index)?,
        })
    }
}

impl FromDb for i64 {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> DbResult<Self> {
        Ok(row.get(index)?)
    }

    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> DbResult<Self> {
        Option::<i64>::from_postgres(row, index)?.ok_or_else(|| DbError::value(format!("column {index} is NULL")))
    }
}

impl FromDb for Option<bool> {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> DbResult<Self> {
        Ok(row.get(index)?)
    }

    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> DbResult<Self> {
        Ok(match *row.columns()[index].type_() {
            Type::BOOL => row.try_get(index)?,
            _ => Option::<i64>::from_postgres(row, index)?.map(|n| n != 0),
        })
    }
}

impl FromDb for bool {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> DbResult<Self> {
        Ok(row.get(index)?)
    }

    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> DbResult<Self> {
        Option::<bool>::from_postgres(row, index)?.ok_or_else(|| DbError::value(format!("column {index} is NULL")))
    }
}

/// SQLite's numbered parameters (`?1`) as PostgreSQL's (`$1`); what is
/// quoted (strings, names) is left as it is.
pub(super) fn numbered_for_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') => {
                out.push('$');
                continue;
            }
            (None, _) => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_dollars_outside_quotes() {
        assert_eq!(
            numbered_for_postgres("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b = $12"
        );
    }

    #[test]
    fn values_bind_and_read_back_on_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let db = Db::Sqlite(&conn);
        db.batch("CREATE TABLE t (n BIGINT, s TEXT, b BLOB, f BIGINT)").unwrap();
        let text = String::from("x");
        let none: Option<String> = None;
        db.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
            args![7i64, text, b"ab".to_vec(), true],
        )
        .unwrap();
        db.execute("INSERT INTO t VALUES (?1, ?2, NULL, ?3)", args![8i64, none, false])
            .unwrap();
        let rows = db
            .query("SELECT n, s, b, f FROM t ORDER BY n", &[], |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<Option<String>>(1)?,
                    r.get::<Option<Vec<u8>>>(2)?,
                    r.get::<bool>(3)?,
                ))
            })
            .unwrap();
        assert_eq!(
            rows,
            [
                (7, Some("x".into()), Some(b"ab".to_vec()), true),
                (8, None, None, false)
            ]
        );
        assert_eq!(
            db.query_opt("SELECT n FROM t WHERE n = 9", &[], |r| r.get::<i64>(0))
                .unwrap(),
            None
        );
    }
}
