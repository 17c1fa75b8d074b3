//! The little the concern modules need of a backend: run a statement with typed
//! parameters, read rows by column. Each concern (episodes, outbox, mutes, sources,
//! history) is written once, generic over [`Db`]; `sqlite` and `postgres` implement it
//! and keep only connections, transactions and binding.

use super::StoreError;
use super::dialect::Dialect;

/// A parameter either backend can bind.
pub(crate) trait Value: Sync {
    fn sqlite(&self) -> &dyn rusqlite::ToSql;
    fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync);
}

impl<T: rusqlite::ToSql + tokio_postgres::types::ToSql + Sync> Value for T {
    fn sqlite(&self) -> &dyn rusqlite::ToSql {
        self
    }

    fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        self
    }
}

/// A list of texts, for [`Dialect::in_list`]: SQLite has no arrays, so it gets JSON.
pub(crate) struct List {
    items: Vec<String>,
    json: String,
}

impl List {
    pub fn new(items: &[String]) -> List {
        List {
            items: items.to_vec(),
            json: super::json_list(items),
        }
    }
}

impl Value for List {
    fn sqlite(&self) -> &dyn rusqlite::ToSql {
        &self.json
    }

    fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        &self.items
    }
}

/// A result row, read by column number.
pub(crate) trait Row {
    fn i64(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn bool(&self, i: usize) -> Result<bool, StoreError>;
    /// Borrowed: reading a JID makes no string.
    fn str(&self, i: usize) -> Result<&str, StoreError>;
    fn opt_string(&self, i: usize) -> Result<Option<String>, StoreError>;
    /// A count kept as an integer column (attempts, missed polls).
    fn u32(&self, i: usize) -> Result<u32, StoreError>;

    fn string(&self, i: usize) -> Result<String, StoreError> {
        self.str(i).map(str::to_owned)
    }
}

/// What reads a query's rows, one at a time.
pub(crate) type Each<'a> = &'a mut (dyn FnMut(&dyn Row) -> Result<(), StoreError> + Send);

/// A connection or transaction of either backend. SQLite's calls never wait (they run on
/// the blocking pool); PostgreSQL's do.
pub(crate) trait Db {
    const DIALECT: Dialect;

    /// The value for [`Dialect::db_now`]'s parameter, given the caller's clock: SQLite
    /// judges by it; PostgreSQL by the database's clock (`None`) or an injected one.
    fn now_param(&self, caller_ms: i64) -> Option<i64>;

    /// Runs a statement that returns no rows: how many rows it changed.
    async fn execute(&self, sql: &str, params: &[&dyn Value]) -> Result<u64, StoreError>;

    /// Runs a query, calling `f` on each row.
    async fn each(&self, sql: &str, params: &[&dyn Value], f: Each<'_>) -> Result<(), StoreError>;

    /// Every row, read by `f`.
    async fn rows<T>(
        &self,
        sql: &str,
        params: &[&dyn Value],
        mut f: impl FnMut(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send,
    {
        let mut out = Vec::new();
        self.each(sql, params, &mut |r| {
            out.push(f(r)?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// The first row, if there is one, read by `f`.
    async fn row<T>(
        &self,
        sql: &str,
        params: &[&dyn Value],
        f: impl FnOnce(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError>
    where
        T: Send,
    {
        let mut f = Some(f);
        let mut out = None;
        self.each(sql, params, &mut |r| {
            if let Some(f) = f.take() {
                out = Some(f(r)?);
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }
}
