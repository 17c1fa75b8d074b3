//! The embedded backend: one SQLite file, WAL-journaled, versioned through
//! `PRAGMA user_version`. rusqlite blocks, so every call runs on tokio's blocking pool with
//! the one connection behind a mutex: async callers never block a runtime worker. The
//! statements are the concern modules'; here are the connection, its transactions and
//! binding, through the statement cache (parsing SQL costs more than running it for the
//! small statements a cycle makes).

use super::db::{Db, Each, Row, Value};
use super::dialect::Dialect;
use super::{SCHEMA_VERSION, StoreError, schema};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How long a write waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a call holds the connection.
#[derive(Debug, Clone, Copy)]
pub(super) enum Tx {
    /// Each statement on its own.
    None,
    /// One transaction, locking the file at its first write.
    Deferred,
    /// One transaction holding the write lock from the start: for work that reads and
    /// then writes what it read.
    Immediate,
}

#[derive(Clone, Debug)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Sqlite {
    /// Opens (creating if needed) and migrates the store.
    pub async fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let owned = path.to_owned();
        blocking(move || Sqlite::open_sync(&owned, BUSY_TIMEOUT)).await
    }

    /// Opens with a chosen busy timeout (tests hold locks past a short one).
    pub fn open_sync(path: &Path, busy: Duration) -> Result<Sqlite, StoreError> {
        let err = |message: String| StoreError::Open {
            place: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        prepare(&mut conn, busy).map_err(err)?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// Opens an existing store without writing to it; `None` when there is no file yet.
    pub async fn open_read_only(path: &Path) -> Result<Option<Sqlite>, StoreError> {
        let path = path.to_owned();
        blocking(move || {
            if !path.exists() {
                return Ok(None);
            }
            let err = |message: String| StoreError::Open {
                place: path.display().to_string(),
                message,
            };
            let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| err(format!("cannot open: {e}")))?;
            conn.busy_timeout(BUSY_TIMEOUT)
                .map_err(|e| err(e.to_string()))?;
            let version = check_version(&conn).map_err(err)?;
            if version < SCHEMA_VERSION {
                return Err(err(format!(
                    "schema version {version} is older than this inbox-sla's ({SCHEMA_VERSION}); \
                     run the daemon or `inbox-sla once` once to migrate it"
                )));
            }
            Ok(Some(Sqlite {
                conn: Arc::new(Mutex::new(conn)),
                path,
            }))
        })
        .await
    }

    pub fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let conn = self.conn.clone();
        blocking(move || {
            // A panic while holding the lock cannot leave a half-written transaction
            // (SQLite rolls it back), so a poisoned lock is safe to keep using.
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
    }

    /// Runs `f` on the connection right here (benchmarks and tests).
    pub fn with_connection<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    /// Runs `f` on the blocking pool, in a transaction or not; `f` drives a concern
    /// function with [`ready`].
    pub(super) async fn run<R: Send + 'static>(
        &self,
        tx: Tx,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.call(move |conn| {
            let behavior = match tx {
                Tx::None => return f(conn),
                Tx::Deferred => TransactionBehavior::Deferred,
                Tx::Immediate => TransactionBehavior::Immediate,
            };
            let tx = conn.transaction_with_behavior(behavior)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

/// Drives a concern function on SQLite: its calls never wait, so one poll finishes it.
pub(super) fn ready<R>(f: impl Future<Output = Result<R, StoreError>>) -> Result<R, StoreError> {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(StoreError::Corrupt(
            "a SQLite call waited, which it never does".into(),
        )),
    }
}

fn bind<'a>(params: &'a [&dyn Value]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(params.iter().map(|p| p.sqlite()))
}

impl Db for Connection {
    const DIALECT: Dialect = Dialect::Sqlite;

    fn now_param(&self, caller_ms: i64) -> Option<i64> {
        Some(caller_ms)
    }

    async fn execute(&self, sql: &str, params: &[&dyn Value]) -> Result<u64, StoreError> {
        Ok(self.prepare_cached(sql)?.execute(bind(params))? as u64)
    }

    async fn each(&self, sql: &str, params: &[&dyn Value], f: Each<'_>) -> Result<(), StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let mut rows = stmt.query(bind(params))?;
        while let Some(r) = rows.next()? {
            f(r)?;
        }
        Ok(())
    }
}

impl Row for rusqlite::Row<'_> {
    fn i64(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }

    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }

    fn bool(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.get(i)?)
    }

    fn str(&self, i: usize) -> Result<&str, StoreError> {
        Ok(self.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
    }

    fn opt_string(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }

    fn u32(&self, i: usize) -> Result<u32, StoreError> {
        Ok(self.get(i)?)
    }
}

/// Runs blocking store work off the runtime's workers.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Open {
            place: "(store task)".into(),
            message: format!("store task failed: {e}"),
        })
    })
}

fn check_version(conn: &Connection) -> Result<i64, String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(describe_open_error)?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "schema version {version} is newer than this inbox-sla supports ({SCHEMA_VERSION}); \
             upgrade inbox-sla instead of starting over"
        ));
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(describe_open_error)?;
        if tables > 0 {
            return Err(
                "holds tables but no inbox-sla schema version; it is not an inbox-sla store".into(),
            );
        }
    }
    Ok(version)
}

fn prepare(conn: &mut Connection, busy: Duration) -> Result<(), String> {
    let version = check_version(conn)?;
    conn.busy_timeout(busy).map_err(|e| e.to_string())?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| format!("cannot enable WAL: {}", describe_open_error(e)))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| e.to_string())?;
    // A cycle of a large inbox writes tens of thousands of rows in one transaction; with
    // the default 2 MB page cache SQLite spills them to the WAL mid-transaction and reads
    // them back. The cache grows only as far as it is used.
    conn.pragma_update(None, "cache_size", -32_768)
        .map_err(|e| e.to_string())?;
    // Every statement the store runs stays prepared (there are about fifty), and keeps its
    // plan whatever values are bound: re-planning at each run cost more than running.
    conn.set_prepared_statement_cache_capacity(128);
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(|e| e.to_string())?;
    for (from, sql) in schema::migrations(Dialect::Sqlite)
        .iter()
        .enumerate()
        .skip(version as usize)
    {
        let tx = conn.transaction().map_err(describe_open_error)?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration to schema {} failed: {e}", from + 1))?;
        tx.pragma_update(None, "user_version", (from + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(describe_open_error)?;
    }
    Ok(())
}

/// Tells a damaged or foreign file from a store that cannot be reached right now.
fn describe_open_error(e: rusqlite::Error) -> String {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => {
            format!("unreadable ({e}); it is not an inbox-sla store or it is damaged")
        }
        Some(DiskFull) => format!("{e}: free some space on its file system"),
        Some(ReadOnly | CannotOpen | PermissionDenied | SystemIoFailure) => format!(
            "cannot use it ({e}): check free space and that its directory is writable by this user"
        ),
        _ => format!("cannot use it: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_store_is_migrated_and_keeps_its_episodes_as_legacy_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&schema::migrations(Dialect::Sqlite)[0])
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO episode (instance, jid, started_at, tiers_fired) VALUES ('support', '1@c.us', 5, 1)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO episode (instance, jid, started_at, tiers_fired) VALUES ('support', '2@c.us', 6, 0)",
                [],
            )
            .unwrap();
            let doc = serde_json::to_string(&crate::alert::AlertDoc::test("ops", 7)).unwrap();
            conn.execute(
                "INSERT INTO outbox (created_at, instance, channel, status, document, next_attempt_ms)
                 VALUES (7, 'support', 'ops', 'test', ?1, 7000)",
                [doc],
            )
            .unwrap();
        }
        let store = Sqlite::open_sync(&path, BUSY_TIMEOUT).unwrap();
        let version: i64 = store.with_connection(|c| {
            c.query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        });
        assert_eq!(version, SCHEMA_VERSION);
        let eps = store.with_connection(|c| {
            ready(super::super::episodes::snapshot(
                c,
                "support",
                0,
                &super::super::JidSet::default(),
            ))
            .unwrap()
            .episodes
        });
        let one = &eps["1@c.us"];
        assert_eq!(
            (one.started_at, one.legacy_fired, one.fired.len()),
            (5, Some(1), 0)
        );
        let two = &eps["2@c.us"];
        assert_eq!(two.legacy_fired, None);
        // A notification queued before the upgrade still goes out, document and all, and
        // pruning it takes its document too.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sqlite = store.clone();
        let store = super::super::Store::Sqlite(store);
        let queued = runtime
            .block_on(store.claim("me", "ops", 8000, 1000))
            .unwrap()
            .expect("the queued notification survives the migration");
        assert_eq!(queued.doc, crate::alert::AlertDoc::test("ops", 7));
        runtime.block_on(store.ack(queued.id, "me", 8)).unwrap();
        runtime.block_on(store.prune(1_000_000, 1, 1)).unwrap();
        let documents: i64 = sqlite.with_connection(|c| {
            c.query_row("SELECT count(*) FROM outbox_document", [], |r| r.get(0))
                .unwrap()
        });
        assert_eq!(documents, 0);
    }

    #[test]
    fn a_newer_or_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let newer = dir.path().join("newer.db");
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = Sqlite::open_sync(&newer, BUSY_TIMEOUT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("newer than this inbox-sla supports"), "{err}");
        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = Sqlite::open_sync(&foreign, BUSY_TIMEOUT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an inbox-sla store"), "{err}");
        let text = dir.path().join("text.db");
        std::fs::write(&text, "this is not a database, not at all, no sir").unwrap();
        let err = Sqlite::open_sync(&text, BUSY_TIMEOUT)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not an inbox-sla store or it is damaged"),
            "{err}"
        );
    }
}
