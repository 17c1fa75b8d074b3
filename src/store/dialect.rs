//! What SQL text differs between the backends, in one place. Every statement is written
//! once, in SQLite's spelling (`?N` placeholders); [`Dialect::render`] turns it into
//! PostgreSQL's (`$N`), and the few real differences (column types, the database clock,
//! row locks, how a list is bound, where outbox documents live) are asked of the dialect.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The statement as this backend spells it: `?N` becomes `$N` for PostgreSQL. (No
    /// statement of the store has a `?` anywhere but in a placeholder.)
    pub fn render(self, sql: &str) -> Cow<'_, str> {
        match self {
            Dialect::Sqlite => Cow::Borrowed(sql),
            Dialect::Postgres => Cow::Owned(sql.replace('?', "$")),
        }
    }

    /// A schema template's types for this backend: `{int}` (64-bit), `{bool}` and its
    /// `{false}`, `{serial}` (an id the database assigns) and `{without_rowid}`.
    pub fn schema(self, template: &str) -> String {
        let (int, boolean, no, serial, without_rowid) = match self {
            Dialect::Sqlite => ("INTEGER", "INTEGER", "0", "INTEGER", " WITHOUT ROWID"),
            Dialect::Postgres => ("BIGINT", "BOOLEAN", "FALSE", "BIGSERIAL", ""),
        };
        template
            .replace("{int}", int)
            .replace("{bool}", boolean)
            .replace("{false}", no)
            .replace("{serial}", serial)
            .replace("{without_rowid}", without_rowid)
    }

    /// The clock that judges leases and claims, in milliseconds, from parameter `n`. With
    /// SQLite (one machine) that is the caller's clock; with PostgreSQL the database's,
    /// or the injected one when the parameter is not NULL (docs/spec.md section 6), never a
    /// node's.
    pub fn db_now(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!(
                "COALESCE(?{n}::BIGINT, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)"
            ),
        }
    }

    /// The smaller of two values (SQLite's scalar `min`).
    pub fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "min",
            Dialect::Postgres => "LEAST",
        }
    }

    /// Locks the rows read until the transaction ends. SQLite needs none: its writers
    /// take the whole database.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Like [`Dialect::for_update`], passing over rows another transaction has locked.
    pub fn for_update_skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Whether `column` is one of the texts of list parameter `n` (bound as a
    /// [`List`](super::db::List): a JSON array for SQLite, an array for PostgreSQL).
    pub fn in_list(self, column: &str, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(?{n}))"),
            Dialect::Postgres => format!("{column} = ANY(?{n})"),
        }
    }

    /// Whether outbox documents live in their own table (SQLite rewrites a whole row on
    /// UPDATE; PostgreSQL keeps large values out of line and leaves them be).
    pub fn documents_apart(self) -> bool {
        self == Dialect::Sqlite
    }

    /// An outbox row's document, in a query of `outbox`.
    pub fn document(self) -> &'static str {
        match self {
            Dialect::Sqlite => "(SELECT document FROM outbox_document d WHERE d.id = outbox.id)",
            Dialect::Postgres => "document",
        }
    }

    /// Episodes written per upsert statement: SQLite's cost is per statement, so many
    /// (18 parameters each, well under its limit); PostgreSQL runs one prepared row at a
    /// time.
    pub fn upsert_rows(self) -> usize {
        match self {
            Dialect::Sqlite => 64,
            Dialect::Postgres => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_types_are_rendered_per_backend() {
        let sql = "UPDATE t SET a = ?1 WHERE b = ?12";
        assert_eq!(Dialect::Sqlite.render(sql), sql);
        assert_eq!(
            Dialect::Postgres.render(sql),
            "UPDATE t SET a = $1 WHERE b = $12"
        );
        let t =
            "x {int} NOT NULL, y {bool} DEFAULT {false}, id {serial} PRIMARY KEY){without_rowid}";
        assert_eq!(
            Dialect::Sqlite.schema(t),
            "x INTEGER NOT NULL, y INTEGER DEFAULT 0, id INTEGER PRIMARY KEY) WITHOUT ROWID"
        );
        assert_eq!(
            Dialect::Postgres.schema(t),
            "x BIGINT NOT NULL, y BOOLEAN DEFAULT FALSE, id BIGSERIAL PRIMARY KEY)"
        );
    }
}
