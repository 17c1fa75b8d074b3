//! What SQL text differs between the backends, in one place.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_rendered_per_backend() {
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
