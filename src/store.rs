//! The store: one SQLite file holding open episodes, the outbox, mutes and source health.
//!
//! The file is WAL-journaled and versioned through `PRAGMA user_version`; a store written
//! by a newer release, or a file that is not an inbox-sla store, is a clear error and never
//! a silent fresh start. A cycle's episode changes and the notifications they cause go in
//! one transaction (the outbox pattern), which is what makes "enqueued exactly once per
//! episode and tier" hold across crashes. rusqlite blocks: async callers go through
//! [`StoreHandle::call`], which runs on the blocking pool. This module decides nothing.

use crate::alert::{AlertDoc, Outgoing};
use crate::sla::{Episode, Evaluation, Preview};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The schema this build writes. Migrations run from the file's version up to this.
pub const SCHEMA_VERSION: i64 = 2;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE episode (
        instance TEXT NOT NULL,
        jid TEXT NOT NULL,
        name TEXT,
        started_at INTEGER NOT NULL,
        unread INTEGER,
        last_id TEXT,
        last_body TEXT,
        last_ts INTEGER,
        last_media INTEGER NOT NULL DEFAULT 0,
        has_last INTEGER NOT NULL DEFAULT 0,
        tiers_fired INTEGER NOT NULL DEFAULT 0,
        last_fired_at INTEGER,
        nudged INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (instance, jid)
    ) WITHOUT ROWID;
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        created_at INTEGER NOT NULL,
        instance TEXT NOT NULL,
        channel TEXT NOT NULL,
        status TEXT NOT NULL,
        document TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT,
        done_at INTEGER
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_ms);
    CREATE TABLE mute (
        jid TEXT PRIMARY KEY,
        until INTEGER NOT NULL,
        reason TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE source (
        instance TEXT PRIMARY KEY,
        failing_since INTEGER,
        last_error TEXT,
        blind INTEGER NOT NULL DEFAULT 0
    );",
    // 1 -> 2: a per-instance generation, bumped by every cycle that writes, so that two
    // processes evaluating the same episodes cannot both commit (and both page).
    "CREATE TABLE generation (
        instance TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: a stored notification is unreadable: {0}")]
    Document(#[from] serde_json::Error),
    #[error(
        "instance \"{0}\": another process changed its episodes while this cycle ran (is a second inbox-sla using the same store?); the cycle was dropped and the next one starts afresh"
    )]
    Conflict(String),
}

/// What a cycle read: the open episodes, active mutes, and the generation they belong to.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub episodes: HashMap<String, Episode>,
    pub mutes: HashMap<String, i64>,
    pub generation: i64,
}

/// A notification waiting in (or done with) the outbox.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: i64,
    pub created_at: i64,
    pub channel: String,
    pub doc: AlertDoc,
    pub attempts: u32,
    pub state: String,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub done_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mute {
    pub jid: String,
    pub until: i64,
    pub reason: Option<String>,
}

/// Polling health of one instance, for blind-monitor alerts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceState {
    pub failing_since: Option<i64>,
    pub last_error: Option<String>,
    /// A `blind` alert was enqueued and no `recovered` since.
    pub blind: bool,
}

#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) and migrates the store.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |message: String| StoreError::Open {
            path: path.to_owned(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let mut store = Store { conn };
        store.prepare().map_err(|e| err(e.to_string()))?;
        Ok(store)
    }

    /// Opens an existing store without writing to it; `None` when there is no file yet.
    pub fn open_read_only(path: &Path) -> Result<Option<Store>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| {
                StoreError::Open {
                    path: path.to_owned(),
                    message: format!("cannot open: {e}"),
                }
            })?;
        let store = Store { conn };
        store.check_version().map_err(|message| StoreError::Open {
            path: path.to_owned(),
            message,
        })?;
        Ok(Some(store))
    }

    fn check_version(&self) -> Result<i64, String> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(describe_open_error)?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "schema version {version} is newer than this inbox-sla supports ({SCHEMA_VERSION}); \
                 upgrade inbox-sla instead of starting over"
            ));
        }
        if version == 0 {
            let tables: i64 = self
                .conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(describe_open_error)?;
            if tables > 0 {
                return Err(
                    "holds tables but no inbox-sla schema version; it is not an inbox-sla store"
                        .into(),
                );
            }
        }
        Ok(version)
    }

    fn prepare(&mut self) -> Result<(), String> {
        let version = self.check_version()?;
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| format!("cannot enable WAL: {e}"))?;
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| e.to_string())?;
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(|e| e.to_string())?;
            tx.execute_batch(sql)
                .map_err(|e| format!("migration to schema {} failed: {e}", from + 1))?;
            tx.pragma_update(None, "user_version", (from + 1) as i64)
                .map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Rows changed since the connection opened (for benchmarks and tests).
    pub fn total_changes(&self) -> u64 {
        self.conn.total_changes()
    }

    pub fn episodes(&self, instance: &str) -> Result<HashMap<String, Episode>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT jid, name, started_at, unread, last_id, last_body, last_ts, last_media, has_last,
                    tiers_fired, last_fired_at, nudged
             FROM episode WHERE instance = ?1",
        )?;
        let rows = stmt.query_map([instance], |r| {
            let has_last: bool = r.get(8)?;
            Ok(Episode {
                jid: r.get(0)?,
                name: r.get(1)?,
                started_at: r.get(2)?,
                unread: r.get(3)?,
                last_message: if has_last {
                    Some(Preview {
                        id: r.get(4)?,
                        body: r.get(5)?,
                        timestamp: r.get(6)?,
                        has_media: r.get(7)?,
                    })
                } else {
                    None
                },
                tiers_fired: r.get(9)?,
                last_fired_at: r.get(10)?,
                nudged: r.get(11)?,
            })
        })?;
        let mut out = HashMap::new();
        for ep in rows {
            let ep = ep?;
            out.insert(ep.jid.clone(), ep);
        }
        Ok(out)
    }

    /// All open episodes of every instance, longest waiting first.
    pub fn all_episodes(&self) -> Result<Vec<(String, Episode)>, StoreError> {
        let instances: Vec<String> = self
            .conn
            .prepare("SELECT DISTINCT instance FROM episode ORDER BY instance")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for inst in instances {
            for (_, ep) in self.episodes(&inst)? {
                out.push((inst.clone(), ep));
            }
        }
        out.sort_by(|a, b| {
            a.1.started_at
                .cmp(&b.1.started_at)
                .then(a.1.jid.cmp(&b.1.jid))
        });
        Ok(out)
    }

    /// Everything a cycle reads, from one consistent snapshot (one read transaction).
    pub fn snapshot(&mut self, instance: &str, now: i64) -> Result<Snapshot, StoreError> {
        self.conn.execute_batch("BEGIN")?;
        let read = (|| -> Result<Snapshot, StoreError> {
            Ok(Snapshot {
                generation: generation(&self.conn, instance)?,
                episodes: self.episodes(instance)?,
                mutes: self
                    .mutes(now)?
                    .into_iter()
                    .map(|m| (m.jid, m.until))
                    .collect(),
            })
        })();
        let end = self
            .conn
            .execute_batch(if read.is_ok() { "COMMIT" } else { "ROLLBACK" });
        let snapshot = read?;
        end?;
        Ok(snapshot)
    }

    /// Commits one cycle: episode changes and their notifications, all or nothing, and
    /// only if no other writer committed for this instance since `generation` was read.
    /// Returns the number of rows written.
    pub fn commit_cycle(
        &mut self,
        instance: &str,
        generation: i64,
        eval: &Evaluation,
        outgoing: &[Outgoing],
        now: i64,
    ) -> Result<u64, StoreError> {
        if eval.upserts.is_empty() && eval.closed.is_empty() && outgoing.is_empty() {
            return Ok(0);
        }
        let before = self.conn.total_changes();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if self::generation(&tx, instance)? != generation {
            return Err(StoreError::Conflict(instance.to_string()));
        }
        tx.execute(
            "INSERT INTO generation (instance, value) VALUES (?1, ?2)
             ON CONFLICT (instance) DO UPDATE SET value = excluded.value",
            params![instance, generation + 1],
        )?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO episode (instance, jid, name, started_at, unread, last_id, last_body, last_ts,
                                      last_media, has_last, tiers_fired, last_fired_at, nudged)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (instance, jid) DO UPDATE SET
                    name = excluded.name, started_at = excluded.started_at, unread = excluded.unread,
                    last_id = excluded.last_id, last_body = excluded.last_body, last_ts = excluded.last_ts,
                    last_media = excluded.last_media, has_last = excluded.has_last,
                    tiers_fired = excluded.tiers_fired, last_fired_at = excluded.last_fired_at,
                    nudged = excluded.nudged",
            )?;
            for ep in &eval.upserts {
                let m = ep.last_message.as_ref();
                upsert.execute(params![
                    instance,
                    ep.jid,
                    ep.name,
                    ep.started_at,
                    ep.unread,
                    m.and_then(|m| m.id.as_deref()),
                    m.and_then(|m| m.body.as_deref()),
                    m.and_then(|m| m.timestamp),
                    m.is_some_and(|m| m.has_media),
                    m.is_some(),
                    ep.tiers_fired,
                    ep.last_fired_at,
                    ep.nudged,
                ])?;
            }
            let mut delete =
                tx.prepare_cached("DELETE FROM episode WHERE instance = ?1 AND jid = ?2")?;
            for jid in &eval.closed {
                delete.execute(params![instance, jid])?;
            }
            insert_outgoing(&tx, outgoing, now)?;
        }
        tx.commit()?;
        Ok(self.conn.total_changes() - before)
    }

    /// Enqueues notifications outside a cycle (blind, recovered, test).
    pub fn enqueue(&mut self, outgoing: &[Outgoing], now: i64) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let ids = insert_outgoing(&tx, outgoing, now)?;
        tx.commit()?;
        Ok(ids)
    }

    /// One channel's pending notifications due at `now_ms`, oldest first.
    pub fn due(&self, channel: &str, now_ms: i64, limit: usize) -> Result<Vec<Queued>, StoreError> {
        self.query_outbox(
            "WHERE state = 'pending' AND channel = ?1 AND next_attempt_ms <= ?2 ORDER BY id LIMIT ?3",
            params![channel, now_ms, limit as i64],
        )
    }

    /// When one channel's next pending notification is due (Unix ms), if any.
    pub fn next_due_ms(&self, channel: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT min(next_attempt_ms) FROM outbox WHERE state = 'pending' AND channel = ?1",
                [channel],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Marks dead every pending notification for a channel that is no longer configured.
    pub fn kill_orphans(
        &self,
        channels: &[String],
        now: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT channel FROM outbox WHERE state = 'pending'")?;
        let pending: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut killed = Vec::new();
        for channel in pending.into_iter().filter(|c| !channels.contains(c)) {
            let error = format!("channel \"{channel}\" is no longer configured");
            let ids: Vec<i64> = self
                .conn
                .prepare_cached("SELECT id FROM outbox WHERE state = 'pending' AND channel = ?1")?
                .query_map([&channel], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in ids {
                self.mark_dead(id, now, &error)?;
                killed.push((id, channel.clone()));
            }
        }
        Ok(killed)
    }

    pub fn outbox(&self, state: &str, limit: usize) -> Result<Vec<Queued>, StoreError> {
        self.query_outbox(
            "WHERE state = ?1 ORDER BY id DESC LIMIT ?2",
            params![state, limit as i64],
        )
    }

    pub fn outbox_count(&self, state: &str) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE state = ?1",
            [state],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    fn query_outbox(
        &self,
        tail: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Queued>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, created_at, channel, document, attempts, state, next_attempt_ms, last_error, done_at
             FROM outbox {tail}"
        ))?;
        let rows = stmt.query_map(args, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                created_at,
                channel,
                doc,
                attempts,
                state,
                next_attempt_ms,
                last_error,
                done_at,
            ) = row?;
            out.push(Queued {
                id,
                created_at,
                channel,
                doc: serde_json::from_str(&doc)?,
                attempts,
                state,
                next_attempt_ms,
                last_error,
                done_at,
            });
        }
        Ok(out)
    }

    pub fn mark_sent(&self, id: i64, now: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET state = 'sent', attempts = attempts + 1, done_at = ?2, last_error = NULL
             WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    pub fn reschedule(&self, id: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE id = ?1",
            params![id, next_attempt_ms, error],
        )?;
        Ok(())
    }

    pub fn mark_dead(&self, id: i64, now: i64, error: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, done_at = ?2, last_error = ?3
             WHERE id = ?1",
            params![id, now, error],
        )?;
        Ok(())
    }

    /// Drops sent notifications older than `before`, so the file does not grow for ever.
    pub fn prune_sent(&self, before: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM outbox WHERE state = 'sent' AND done_at < ?1",
            [before],
        )?)
    }

    pub fn mute(
        &self,
        jid: &str,
        until: i64,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO mute (jid, until, reason, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (jid) DO UPDATE SET until = excluded.until, reason = excluded.reason,
                                            created_at = excluded.created_at",
            params![jid, until, reason, now],
        )?;
        Ok(())
    }

    /// `true` when a mute was removed.
    pub fn unmute(&self, jid: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM mute WHERE jid = ?1", [jid])?
            > 0)
    }

    pub fn mutes(&self, now: i64) -> Result<Vec<Mute>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT jid, until, reason FROM mute WHERE until > ?1 ORDER BY until",
        )?;
        let rows = stmt.query_map([now], |r| {
            Ok(Mute {
                jid: r.get(0)?,
                until: r.get(1)?,
                reason: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn source(&self, instance: &str) -> Result<SourceState, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT failing_since, last_error, blind FROM source WHERE instance = ?1",
                [instance],
                |r| {
                    Ok(SourceState {
                        failing_since: r.get(0)?,
                        last_error: r.get(1)?,
                        blind: r.get(2)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Writes the source state with any notifications it causes, in one transaction.
    pub fn set_source(
        &mut self,
        instance: &str,
        state: &SourceState,
        outgoing: &[Outgoing],
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO source (instance, failing_since, last_error, blind) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (instance) DO UPDATE SET failing_since = excluded.failing_since,
                last_error = excluded.last_error, blind = excluded.blind",
            params![instance, state.failing_since, state.last_error, state.blind],
        )?;
        insert_outgoing(&tx, outgoing, now)?;
        tx.commit()?;
        Ok(())
    }
}

fn generation(conn: &Connection, instance: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT value FROM generation WHERE instance = ?1",
            [instance],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
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

fn insert_outgoing(
    tx: &rusqlite::Transaction,
    outgoing: &[Outgoing],
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(outgoing.len());
    let mut insert = tx.prepare_cached(
        "INSERT INTO outbox (created_at, instance, channel, status, document, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for o in outgoing {
        insert.execute(params![
            now,
            o.doc.instance,
            o.channel,
            o.doc.status.as_str(),
            serde_json::to_string(&o.doc)?,
            now * 1000
        ])?;
        ids.push(tx.last_insert_rowid());
    }
    Ok(ids)
}

/// The store shared between async tasks; every call runs on the blocking pool.
#[derive(Clone, Debug)]
pub struct StoreHandle(Arc<Mutex<Store>>);

impl StoreHandle {
    pub fn new(store: Store) -> Self {
        StoreHandle(Arc::new(Mutex::new(store)))
    }

    /// Runs `f` with the store on the blocking pool.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-written transaction
            // (SQLite rolls it back), so a poisoned lock is safe to keep using.
            let mut store = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut store)
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Open {
                path: PathBuf::from("(store task)"),
                message: format!("store task failed: {e}"),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertDoc, Status};

    fn episode(jid: &str) -> Episode {
        Episode {
            jid: jid.into(),
            name: Some("Amina".into()),
            started_at: 1_790_000_000,
            unread: Some(2),
            last_message: Some(Preview {
                id: Some("M1".into()),
                body: Some("hi".into()),
                timestamp: Some(1_790_000_000),
                has_media: false,
            }),
            tiers_fired: 1,
            last_fired_at: Some(1_790_007_200),
            nudged: false,
        }
    }

    fn firing() -> Outgoing {
        Outgoing {
            channel: "oncall".into(),
            doc: AlertDoc {
                version: 1,
                status: Status::Firing,
                instance: "support".into(),
                tier: None,
                sent_at: 1,
                chats: vec![],
                message: None,
            },
        }
    }

    #[test]
    fn a_version_1_store_is_migrated_and_keeps_its_episodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO episode (instance, jid, started_at, tiers_fired) VALUES ('support', '1@c.us', 5, 1)",
                [],
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let snap = store.snapshot("support", 0).unwrap();
        assert_eq!(snap.episodes["1@c.us"].started_at, 5);
        assert_eq!(snap.generation, 0);
    }

    #[test]
    fn a_second_writer_makes_the_first_commit_fail_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (mut a, mut b) = (Store::open(&path).unwrap(), Store::open(&path).unwrap());
        let eval = Evaluation {
            upserts: vec![episode("1@c.us")],
            ..Evaluation::default()
        };
        let read_by_a = a.snapshot("support", 0).unwrap().generation;
        let read_by_b = b.snapshot("support", 0).unwrap().generation;
        assert!(
            b.commit_cycle("support", read_by_b, &eval, &[firing()], 10)
                .unwrap()
                > 0
        );
        let err = a
            .commit_cycle("support", read_by_a, &eval, &[firing()], 10)
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(
            a.outbox_count("pending").unwrap(),
            1,
            "the page was enqueued once"
        );
        // Another instance's generation is independent.
        assert!(a.commit_cycle("sales", 0, &eval, &[], 10).unwrap() > 0);
    }

    #[test]
    fn a_cycle_that_changed_nothing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("state.db")).unwrap();
        let before = store.total_changes();
        assert_eq!(
            store
                .commit_cycle("support", 0, &Evaluation::default(), &[], 10)
                .unwrap(),
            0
        );
        assert_eq!(store.snapshot("support", 10).unwrap().generation, 0);
        assert_eq!(store.total_changes(), before);
    }
}
