//! The embedded backend: one SQLite file, WAL-journaled, versioned through
//! `PRAGMA user_version`. rusqlite blocks, so every call runs on tokio's blocking pool with
//! the one connection behind a mutex: async callers never block a runtime worker.

use super::dialect::Dialect;
use super::schema;
use super::{Counts, Queued, Stage, State};
use super::{
    CycleCommit, Fence, JidSet, Lease, Mute, OpenJids, Opening, Past, Pruned, SCHEMA_VERSION,
    Snapshot, SourceState, StoreError, json_list, parse_list,
};
use crate::alert::Outgoing;
use crate::overview::OpenEpisode;
use crate::sla::{Episode, Memory, Preview};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Statements run through the connection's statement cache: parsing SQL costs more than
/// running it for the small statements a cycle makes, and `execute`/`query_row` would
/// parse every time.
trait Cached {
    fn run(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize>;
    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn run(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Episodes written per statement (18 parameters each, well under SQLite's limit).
const UPSERT_ROWS: usize = 64;
const EPISODE_FIELDS: usize = 18;

/// The upsert of `rows` episodes in one statement.
fn upsert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; EPISODE_FIELDS].join(", "));
    format!(
        "INSERT INTO episode (instance, jid, name, started_at, unread, last_id, last_body, last_ts,
                              last_media, has_last, tiers_fired, last_fired_at, nudged,
                              fired, notified, missing, fingerprint, quiet_until)
         VALUES {}
         ON CONFLICT (instance, jid) DO UPDATE SET
            name = excluded.name, started_at = excluded.started_at, unread = excluded.unread,
            last_id = excluded.last_id, last_body = excluded.last_body, last_ts = excluded.last_ts,
            last_media = excluded.last_media, has_last = excluded.has_last,
            tiers_fired = excluded.tiers_fired, last_fired_at = excluded.last_fired_at,
            nudged = excluded.nudged, fired = excluded.fired, notified = excluded.notified,
            missing = excluded.missing, fingerprint = excluded.fingerprint,
            quiet_until = excluded.quiet_until",
        vec![row; rows].join(", ")
    )
}

/// How long a write waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const OUTBOX_COLUMNS: &str = "id, created_at, instance, channel, \
     (SELECT document FROM outbox_document d WHERE d.id = outbox.id), attempts, state, \
     next_attempt_ms, owner, claim_until_ms, done_at, last_error";

const EPISODE_COLUMNS: &str = "jid, name, started_at, unread, last_id, last_body, last_ts, \
     last_media, has_last, tiers_fired, last_fired_at, nudged, fired, notified, missing, fingerprint, \
     quiet_until";

/// A claimable notice must not overtake an undelivered earlier notice of another kind
/// about the same subject (a chat, a digest's chats, the monitor) of the same instance on
/// the same channel (`o` is the candidate row). Shared with the PostgreSQL backend: the
/// same words in both dialects.
pub(crate) const IN_ORDER: &str = "NOT EXISTS (
        SELECT 1 FROM outbox f
        WHERE f.channel = o.channel AND f.instance = o.instance AND f.subject = o.subject
          AND f.id < o.id AND f.status <> o.status AND f.state IN ('pending', 'claimed'))";

/// Whether an episode has fired a tier, in SQL (a legacy count has no `fired` list; such
/// an episode is never quiet, so the answer does not matter for it).
const BREACHED: &str = "coalesce(fired <> '[]', tiers_fired > 0)";

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

    pub async fn snapshot(
        &self,
        instance: &str,
        now: i64,
        except: JidSet,
    ) -> Result<Snapshot, StoreError> {
        let instance = instance.to_string();
        self.call(move |c| {
            let tx = c.transaction()?;
            let snapshot = Snapshot {
                generation: generation(&tx, &instance)?,
                episodes: episodes(&tx, &instance, &except)?
                    .into_iter()
                    .map(|e| (e.jid.clone(), e))
                    .collect(),
                mutes: mutes(&tx, now)?
                    .into_iter()
                    .map(|m| (m.jid, m.until))
                    .collect(),
                source: source(&tx, &instance)?,
            };
            tx.commit()?;
            Ok(snapshot)
        })
        .await
    }

    pub async fn opening(&self, instance: &str) -> Result<Opening, StoreError> {
        let instance = instance.to_string();
        self.call(move |c| {
            let tx = c.transaction()?;
            let jids = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT jid, fingerprint, quiet_until, {BREACHED} FROM episode WHERE instance = ?1"
                ))?;
                let mut rows = stmt.query([&instance])?;
                let mut jids = OpenJids::with_capacity(1024);
                while let Some(r) = rows.next()? {
                    // Borrowed: no string is made for a JID.
                    let jid = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                    jids.insert(
                        jid,
                        OpenEpisode {
                            fingerprint: r.get::<_, i64>(1)? as u64,
                            quiet_until: r.get(2)?,
                            breached: r.get(3)?,
                        },
                    );
                }
                jids
            };
            let opening = Opening {
                jids,
                generation: generation(&tx, &instance)?,
                source: source(&tx, &instance)?,
            };
            tx.commit()?;
            Ok(opening)
        })
        .await
    }

    pub async fn commit_cycle(&self, c: CycleCommit<'_>) -> Result<u64, StoreError> {
        // The commit runs on another thread: it takes the rows and copies the rest.
        let instance = c.instance.to_string();
        let generation = c.generation;
        let fence = c.fence.cloned();
        let CycleCommit {
            upserts,
            closed,
            outgoing,
            ..
        } = c;
        let source_state = c.source.cloned();
        let forget = c.forget;
        let now = c.now;
        self.call(move |conn| {
            let before = conn.total_changes();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let bumped = if generation == 0 {
                tx.run(
                    "INSERT INTO generation (instance, value) VALUES (?1, 1) ON CONFLICT (instance) DO NOTHING",
                    [&instance],
                )?
            } else {
                tx.run(
                    "UPDATE generation SET value = value + 1 WHERE instance = ?1 AND value = ?2",
                    params![instance, generation],
                )?
            };
            if bumped != 1 {
                return Err(StoreError::Conflict(instance));
            }
            if let Some(f) = &fence {
                let held: Option<i64> = tx
                    .one(
                        "SELECT fence FROM lease WHERE instance = ?1 AND holder = ?2",
                        params![instance, f.node],
                        |r| r.get(0),
                    )
                    .optional()?;
                if held != Some(f.value) {
                    return Err(StoreError::Fenced(instance));
                }
            }
            {
                let mut delete =
                    tx.prepare_cached("DELETE FROM episode WHERE instance = ?1 AND jid = ?2")?;
                let mut keep = tx.prepare_cached(
                    "INSERT INTO history (instance, jid, name, started_at, ended_at, wall_seconds,
                                          business_seconds, fired, notified, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for c in &closed {
                    let ep = &c.episode;
                    delete.execute(params![instance, ep.jid])?;
                    {
                        keep.execute(params![
                            instance,
                            ep.jid,
                            ep.name,
                            ep.started_at,
                            c.ended_at,
                            (c.ended_at - ep.started_at).max(0),
                            c.age,
                            json_list(&ep.fired),
                            json_list(&ep.notified),
                            c.reason.as_str(),
                        ])?;
                    }
                }
                // In key order: each insert lands next to the last one in the B-tree. Many
                // rows a statement: a large cycle's cost is per statement, not per row.
                let mut upserts: Vec<&Episode> = upserts.iter().collect();
                upserts.sort_unstable_by(|a, b| a.jid.cmp(&b.jid));
                let full = upsert_sql(UPSERT_ROWS);
                for rows in upserts.chunks(UPSERT_ROWS) {
                    let mut upsert = if rows.len() == UPSERT_ROWS {
                        tx.prepare_cached(&full)?
                    } else {
                        tx.prepare_cached(&upsert_sql(rows.len()))?
                    };
                    let mut at = 0;
                    for ep in rows {
                        let m = ep.last_message.as_ref();
                        let (fired, count) = match ep.legacy_fired {
                            Some(n) => (None, n as i64),
                            None => (Some(json_list(&ep.fired)), ep.fired.len() as i64),
                        };
                        let values: [&dyn rusqlite::ToSql; EPISODE_FIELDS] = [
                            &instance,
                            &ep.jid,
                            &ep.name,
                            &ep.started_at,
                            &ep.unread,
                            &m.and_then(|m| m.id.as_deref()),
                            &m.and_then(|m| m.body.as_deref()),
                            &m.and_then(|m| m.timestamp),
                            &m.is_some_and(|m| m.has_media),
                            &m.is_some(),
                            &count,
                            &ep.last_fired_at,
                            &ep.nudged,
                            &fired,
                            &json_list(&ep.notified),
                            &ep.missing,
                            &(ep.fingerprint as i64),
                            &ep.quiet_until,
                        ];
                        for value in values {
                            at += 1;
                            upsert.raw_bind_parameter(at, value)?;
                        }
                    }
                    upsert.raw_execute()?;
                }
            }
            if let Some(s) = &source_state {
                write_source(&tx, &instance, s)?;
            }
            if forget {
                tx.run("DELETE FROM source WHERE instance = ?1", [&instance])?;
            }
            insert_outgoing(&tx, &outgoing, now)?;
            tx.commit()?;
            Ok(conn.total_changes() - before)
        })
        .await
    }

    pub async fn set_source(
        &self,
        instance: &str,
        state: &SourceState,
        outgoing: &[Outgoing],
        now: i64,
    ) -> Result<(), StoreError> {
        let (instance, state, outgoing) = (instance.to_string(), state.clone(), outgoing.to_vec());
        self.call(move |c| {
            let tx = c.transaction()?;
            write_source(&tx, &instance, &state)?;
            insert_outgoing(&tx, &outgoing, now)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn source(&self, instance: &str) -> Result<SourceState, StoreError> {
        let instance = instance.to_string();
        self.call(move |c| source(c, &instance)).await
    }

    pub async fn sources(&self) -> Result<Vec<(String, SourceState)>, StoreError> {
        self.call(|c| {
            let names: Vec<String> = c
                .prepare_cached("SELECT instance FROM source ORDER BY instance")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            names
                .into_iter()
                .map(|n| source(c, &n).map(|s| (n, s)))
                .collect()
        })
        .await
    }

    pub async fn enqueue(&self, outgoing: &[Outgoing], now: i64) -> Result<Vec<i64>, StoreError> {
        let outgoing = outgoing.to_vec();
        self.call(move |c| {
            let tx = c.transaction()?;
            let ids = insert_outgoing(&tx, &outgoing, now)?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    pub async fn claim(
        &self,
        owner: &str,
        channel: &str,
        now_ms: i64,
        claim_ms: i64,
    ) -> Result<Option<Queued>, StoreError> {
        let (owner, channel) = (owner.to_string(), channel.to_string());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let id: Option<i64> = tx
                .one(
                    &format!(
                        "SELECT id FROM outbox o
                         WHERE channel = ?1
                           AND ((state = 'pending' AND next_attempt_ms <= ?2)
                                OR (state = 'claimed' AND claim_until_ms <= ?2))
                           AND {IN_ORDER}
                         ORDER BY id LIMIT 1"
                    ),
                    params![channel, now_ms],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else {
                return Ok(None);
            };
            tx.run(
                "UPDATE outbox SET state = 'claimed', owner = ?2, claim_until_ms = ?3 WHERE id = ?1",
                params![id, owner, now_ms + claim_ms],
            )?;
            let q = query_outbox(&tx, "WHERE id = ?1", params![id])?.pop();
            tx.commit()?;
            Ok(q)
        })
        .await
    }

    pub async fn ack(&self, id: i64, owner: &str, at: i64) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        self.call(move |c| {
            Ok(c.run(
                "UPDATE outbox SET state = 'sent', done_at = ?3, last_error = NULL, owner = NULL,
                                   claim_until_ms = NULL
                 WHERE id = ?1 AND state = 'claimed' AND owner = ?2",
                params![id, owner, at],
            )? == 1)
        })
        .await
    }

    pub async fn confirm_claim(
        &self,
        id: i64,
        owner: &str,
        now_ms: i64,
        claim_ms: i64,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        self.call(move |c| {
            Ok(c.run(
                "UPDATE outbox SET claim_until_ms = ?3 + ?4
                 WHERE id = ?1 AND state = 'claimed' AND owner = ?2 AND claim_until_ms > ?3",
                params![id, owner, now_ms, claim_ms],
            )? == 1)
        })
        .await
    }

    pub async fn nack(
        &self,
        id: i64,
        owner: &str,
        now_ms: i64,
        retry_in_ms: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let (owner, error) = (owner.to_string(), error.to_string());
        self.call(move |c| {
            Ok(c.run(
                "UPDATE outbox SET state = 'pending', attempts = attempts + 1,
                                   next_attempt_ms = ?3 + ?4,
                                   last_error = ?5, owner = NULL, claim_until_ms = NULL
                 WHERE id = ?1 AND state = 'claimed' AND owner = ?2",
                params![id, owner, now_ms, retry_in_ms, error],
            )? == 1)
        })
        .await
    }

    pub async fn kill(
        &self,
        id: i64,
        owner: Option<&str>,
        at: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let (owner, error) = (owner.map(str::to_string), error.to_string());
        self.call(move |c| {
            Ok(c.run(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, done_at = ?3,
                                   last_error = ?4, owner = NULL, claim_until_ms = NULL
                 WHERE id = ?1 AND ((?2 IS NULL AND state = 'pending')
                                    OR (state = 'claimed' AND owner = ?2))",
                params![id, owner, at, error],
            )? == 1)
        })
        .await
    }

    pub async fn kill_orphans(
        &self,
        known: &[String],
        before: i64,
        now: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let known = known.to_vec();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let rows: Vec<(i64, String)> = tx
                .prepare_cached(
                    "SELECT id, channel FROM outbox WHERE state = 'pending' AND created_at <= ?1",
                )?
                .query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut killed = Vec::new();
            for (id, channel) in rows.into_iter().filter(|(_, c)| !known.contains(c)) {
                tx.run(
                    "UPDATE outbox SET state = 'dead', done_at = ?2, last_error = ?3 WHERE id = ?1",
                    params![
                        id,
                        now,
                        format!("channel \"{channel}\" is no longer configured")
                    ],
                )?;
                killed.push((id, channel));
            }
            tx.commit()?;
            Ok(killed)
        })
        .await
    }

    pub async fn next_due_in_ms(
        &self,
        channel: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let channel = channel.to_string();
        self.call(move |c| {
            // A notice held back by an earlier one is not due on its own: counting it would
            // wake the delivery loop over and over while that one waits out its backoff.
            Ok(c.one(
                &format!(
                    "SELECT min(CASE state WHEN 'pending' THEN next_attempt_ms
                                           ELSE claim_until_ms END) - ?2
                     FROM outbox o
                     WHERE channel = ?1 AND state IN ('pending', 'claimed') AND {IN_ORDER}"
                ),
                params![channel, now_ms],
                |r| r.get(0),
            )?)
        })
        .await
    }

    pub async fn outbox(&self, stage: Stage, limit: usize) -> Result<Vec<Queued>, StoreError> {
        self.call(move |c| {
            query_outbox(
                c,
                "WHERE state = ?1 ORDER BY id DESC LIMIT ?2",
                params![stage.as_str(), limit as i64],
            )
        })
        .await
    }

    pub async fn outbox_counts(&self) -> Result<Counts, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare_cached("SELECT state, count(*) FROM outbox GROUP BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Counts::default();
            for row in rows {
                let (state, n) = row?;
                out.add(&state, n.max(0) as u64);
            }
            Ok(out)
        })
        .await
    }

    pub async fn mute(
        &self,
        jid: &str,
        until: i64,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (jid, reason) = (jid.to_string(), reason.map(str::to_string));
        self.call(move |c| {
            c.run(
                "INSERT INTO mute (jid, until, reason, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (jid) DO UPDATE SET until = excluded.until, reason = excluded.reason,
                                                created_at = excluded.created_at",
                params![jid, until, reason, now],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn unmute(&self, jid: &str) -> Result<bool, StoreError> {
        let jid = jid.to_string();
        self.call(move |c| Ok(c.run("DELETE FROM mute WHERE jid = ?1", [jid])? > 0))
            .await
    }

    pub async fn mutes(&self, now: i64) -> Result<Vec<Mute>, StoreError> {
        self.call(move |c| mutes(c, now)).await
    }

    pub async fn episode_instances(&self) -> Result<Vec<String>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare_cached("SELECT DISTINCT instance FROM episode")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn all_episodes(&self) -> Result<Vec<(String, Episode)>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT instance, {EPISODE_COLUMNS} FROM episode ORDER BY started_at, jid"
            ))?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let instance: String = r.get(0)?;
                out.push((instance, episode_from(r, 1)?));
            }
            Ok(out)
        })
        .await
    }

    pub async fn history(
        &self,
        since: i64,
        instance: Option<&str>,
    ) -> Result<Vec<Past>, StoreError> {
        let instance = instance.map(str::to_string);
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT instance, jid, name, started_at, ended_at, wall_seconds, business_seconds,
                        fired, notified, reason
                 FROM history WHERE ended_at >= ?1 AND (?2 IS NULL OR instance = ?2)
                 ORDER BY ended_at, id",
            )?;
            let mut rows = stmt.query(params![since, instance])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(Past {
                    instance: r.get(0)?,
                    jid: r.get(1)?,
                    name: r.get(2)?,
                    started_at: r.get(3)?,
                    ended_at: r.get(4)?,
                    wall_seconds: r.get(5)?,
                    business_seconds: r.get(6)?,
                    fired: parse_list(&r.get::<_, String>(7)?)?,
                    notified: parse_list(&r.get::<_, String>(8)?)?,
                    reason: r.get(9)?,
                });
            }
            Ok(out)
        })
        .await
    }

    pub async fn prune(&self, now: i64, keep_sent: i64, keep: i64) -> Result<Pruned, StoreError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let pruned = Pruned {
                sent: tx.run(
                    "DELETE FROM outbox WHERE state = 'sent' AND done_at < ?1",
                    [now - keep_sent],
                )?,
                dead: tx.run(
                    "DELETE FROM outbox WHERE state = 'dead' AND done_at < ?1",
                    [now - keep],
                )?,
                mutes: tx.run("DELETE FROM mute WHERE until < ?1", [now - keep])?,
                history: tx.run("DELETE FROM history WHERE ended_at < ?1", [now - keep])?,
            };
            tx.commit()?;
            Ok(pruned)
        })
        .await
    }

    pub async fn acquire_lease(
        &self,
        instance: &str,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Fence>, StoreError> {
        let (instance, node) = (instance.to_string(), node.to_string());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.run(
                "INSERT INTO lease (instance, holder, expires_ms, fence) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (instance) DO UPDATE SET
                    fence = CASE WHEN lease.holder = excluded.holder AND lease.expires_ms > ?4
                                 THEN lease.fence ELSE lease.fence + 1 END,
                    holder = excluded.holder,
                    expires_ms = excluded.expires_ms
                 WHERE lease.holder = excluded.holder OR lease.expires_ms <= ?4",
                params![instance, node, now_ms + lease_ms, now_ms],
            )?;
            let fence: Option<i64> = tx
                .one(
                    "SELECT fence FROM lease WHERE instance = ?1 AND holder = ?2",
                    params![instance, node],
                    |r| r.get(0),
                )
                .optional()?;
            tx.commit()?;
            Ok(fence.map(|value| Fence { node, value }))
        })
        .await
    }

    pub async fn release_leases(&self, node: &str, now_ms: i64) -> Result<(), StoreError> {
        let node = node.to_string();
        self.call(move |c| {
            c.run(
                "UPDATE lease SET expires_ms = min(expires_ms, ?2) WHERE holder = ?1",
                params![node, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn leases(&self, now_ms: i64) -> Result<Vec<Lease>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT instance, holder, expires_ms, fence, expires_ms - ?1
                 FROM lease ORDER BY instance",
            )?;
            let rows = stmt.query_map([now_ms], |r| {
                Ok(Lease {
                    instance: r.get(0)?,
                    holder: r.get(1)?,
                    expires_ms: r.get(2)?,
                    fence: r.get(3)?,
                    remaining_ms: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
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

fn generation(conn: &Connection, instance: &str) -> Result<i64, StoreError> {
    Ok(conn
        .one(
            "SELECT value FROM generation WHERE instance = ?1",
            [instance],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

fn episodes(
    conn: &Connection,
    instance: &str,
    except: &JidSet,
) -> Result<Vec<Episode>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EPISODE_COLUMNS} FROM episode WHERE instance = ?1"
    ))?;
    let mut rows = stmt.query([instance])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let jid = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        if !except.contains(jid) {
            out.push(episode_from(r, 0)?);
        }
    }
    Ok(out)
}

/// An episode from `EPISODE_COLUMNS` starting at column `at`.
fn episode_from(r: &rusqlite::Row, at: usize) -> Result<Episode, StoreError> {
    let has_last: bool = r.get(at + 8)?;
    let count: u32 = r.get(at + 9)?;
    let fired: Option<String> = r.get(at + 12)?;
    let (fired, legacy_fired) = match fired {
        Some(text) => (parse_list(&text)?, None),
        None => (Vec::new(), (count > 0).then_some(count)),
    };
    Ok(Episode {
        jid: r.get(at)?,
        name: r.get(at + 1)?,
        started_at: r.get(at + 2)?,
        unread: r.get(at + 3)?,
        last_message: if has_last {
            Some(Preview {
                id: r.get(at + 4)?,
                body: r.get(at + 5)?,
                timestamp: r.get(at + 6)?,
                has_media: r.get(at + 7)?,
            })
        } else {
            None
        },
        fired,
        notified: parse_list(&r.get::<_, String>(at + 13)?)?,
        last_fired_at: r.get(at + 10)?,
        nudged: r.get(at + 11)?,
        missing: r.get(at + 14)?,
        fingerprint: r.get::<_, i64>(at + 15)? as u64,
        quiet_until: r.get(at + 16)?,
        legacy_fired,
    })
}

fn mutes(conn: &Connection, now: i64) -> Result<Vec<Mute>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT jid, until, reason FROM mute WHERE until > ?1 ORDER BY until, jid",
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

fn source(conn: &Connection, instance: &str) -> Result<SourceState, StoreError> {
    Ok(conn
        .one(
            "SELECT failing_since, last_error, blind, last_ok_at, complete_chats, mark_policy,
                    short_since
             FROM source WHERE instance = ?1",
            [instance],
            |r| {
                Ok(SourceState {
                    failing_since: r.get(0)?,
                    last_error: r.get(1)?,
                    blind: r.get(2)?,
                    memory: Memory {
                        mark: r.get(3)?,
                        complete_chats: r.get::<_, Option<i64>>(4)?.map(|n| n.max(0) as usize),
                        mark_policy: r.get(5)?,
                        short_since: r.get(6)?,
                    },
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

fn write_source(
    tx: &rusqlite::Transaction,
    instance: &str,
    s: &SourceState,
) -> Result<(), StoreError> {
    tx.run(
        "INSERT INTO source (instance, failing_since, last_error, blind, last_ok_at, complete_chats,
                             mark_policy, short_since)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (instance) DO UPDATE SET failing_since = excluded.failing_since,
            last_error = excluded.last_error, blind = excluded.blind,
            last_ok_at = excluded.last_ok_at, complete_chats = excluded.complete_chats,
            mark_policy = excluded.mark_policy, short_since = excluded.short_since",
        params![
            instance,
            s.failing_since,
            s.last_error,
            s.blind,
            s.memory.mark,
            s.memory.complete_chats.map(|n| n as i64),
            s.memory.mark_policy,
            s.memory.short_since,
        ],
    )?;
    Ok(())
}

fn insert_outgoing(
    tx: &rusqlite::Transaction,
    outgoing: &[Outgoing],
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(outgoing.len());
    let mut insert = tx.prepare_cached(
        "INSERT INTO outbox (created_at, instance, channel, status, next_attempt_ms, subject)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut document =
        tx.prepare_cached("INSERT INTO outbox_document (id, document) VALUES (?1, ?2)")?;
    for o in outgoing {
        insert.execute(params![
            now,
            o.doc.instance,
            o.channel,
            o.doc.status.as_str(),
            now * 1000,
            o.subject,
        ])?;
        let id = tx.last_insert_rowid();
        document.execute(params![id, serde_json::to_string(&o.doc)?])?;
        ids.push(id);
    }
    Ok(ids)
}

fn query_outbox(
    conn: &Connection,
    tail: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Queued>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox {tail}"))?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let state: String = r.get(6)?;
        out.push(Queued {
            id: r.get(0)?,
            created_at: r.get(1)?,
            instance: r.get(2)?,
            channel: r.get(3)?,
            doc: serde_json::from_str(&r.get::<_, String>(4)?)?,
            attempts: r.get(5)?,
            state: State::from_row(&state, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?)?,
            last_error: r.get(11)?,
        });
    }
    Ok(out)
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
            let doc = serde_json::to_string(&crate::commands::test_document("ops", 7)).unwrap();
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
        let eps = store.with_connection(|c| episodes(c, "support", &JidSet::default()).unwrap());
        let one = eps.iter().find(|e| e.jid == "1@c.us").unwrap();
        assert_eq!(
            (one.started_at, one.legacy_fired, one.fired.len()),
            (5, Some(1), 0)
        );
        let two = eps.iter().find(|e| e.jid == "2@c.us").unwrap();
        assert_eq!(two.legacy_fired, None);
        // A notification queued before the upgrade still goes out, document and all, and
        // pruning it takes its document too.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let queued = runtime
            .block_on(store.claim("me", "ops", 8000, 1000))
            .unwrap()
            .expect("the queued notification survives the migration");
        assert_eq!(queued.doc, crate::commands::test_document("ops", 7));
        runtime.block_on(store.ack(queued.id, "me", 8)).unwrap();
        runtime.block_on(store.prune(1_000_000, 1, 1)).unwrap();
        let documents: i64 = store.with_connection(|c| {
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
