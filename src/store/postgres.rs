//! The PostgreSQL backend (12 or newer), for two or more daemons sharing one database
//! (PRODUCT.md section 10). Same tables, same semantics and the same migrations as the
//! SQLite backend, in PostgreSQL's dialect, applied under an advisory lock so two daemons
//! starting together do not both migrate. Outbox rows are claimed with
//! `FOR UPDATE SKIP LOCKED`, so each notification is sent by one daemon.
//!
//! tokio-postgres with a deadpool pool: async all the way (no blocking pool), a statement
//! cache per connection, and broken connections replaced on the next checkout, which is
//! what lets a daemon ride out a database restart. TLS goes through rustls (with the
//! webpki roots) when the URL asks for it (`sslmode=require`); the URL's password is a
//! secret and never reaches an error.

use super::dialect::Dialect;
use super::schema;
use super::sqlite::IN_ORDER;
use super::{Counts, Queued, Stage, State};
use super::{
    CycleCommit, DbClock, Fence, JidSet, Lease, Mute, OpenJids, Opening, Past, Pruned,
    SCHEMA_VERSION, Snapshot, SourceState, StoreError, json_list, parse_list,
};
use crate::alert::Outgoing;
use crate::overview::OpenEpisode;
use crate::secret::{Redactor, Secret};
use crate::sla::{Episode, Memory, Preview};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::Row;
use tokio_postgres::config::SslMode;

/// Any number; the same for every inbox-sla, so migrations never run twice at once.
const MIGRATION_LOCK: i64 = 0x1_9b0c_5a1a;

const OUTBOX_COLUMNS: &str = "id, created_at, instance, channel, document, attempts, state, \
     next_attempt_ms, owner, claim_until_ms, done_at, last_error";

const SOURCE_COLUMNS: &str =
    "failing_since, last_error, blind, last_ok_at, complete_chats, mark_policy, short_since";

const EPISODE_COLUMNS: &str = "jid, name, started_at, unread, last_id, last_body, last_ts, \
     last_media, has_last, tiers_fired, last_fired_at, nudged, fired, notified, missing, fingerprint, \
     quiet_until";

/// The database's clock in milliseconds, or the injected one (`$n`, NULL for the server's):
/// every lease and claim is judged by it, never by a node's clock (PRODUCT.md section 6).
fn db_now(n: usize) -> String {
    format!("COALESCE(${n}::BIGINT, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)")
}

#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// Whose clock judges leases and claims: the server's, or an injected one.
    clock: DbClock,
    /// "host:port/dbname", for messages.
    place: String,
    /// Scrubs the URL's password from driver errors.
    redactor: Redactor,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Postgres({})", self.place)
    }
}

impl Postgres {
    /// Connects, and creates or migrates the schema.
    pub async fn open(url: &Secret, clock: DbClock) -> Result<Postgres, StoreError> {
        let redactor = Redactor::new([url]);
        let open_err = |place: &str, message: String| StoreError::Open {
            place: place.to_string(),
            message: redactor.redact(&message),
        };
        let config: tokio_postgres::Config = url.expose().parse().map_err(|e| {
            open_err(
                "PostgreSQL",
                format!("store.url is not a PostgreSQL URL like postgres://user@host/db ({e})"),
            )
        })?;
        let place = describe(&config);
        let mut config = config;
        config
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("inbox-sla");
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() == SslMode::Disable {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        } else {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            Manager::from_config(
                config,
                tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                manager_config,
            )
        };
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| open_err(&place, format!("cannot set up the connection pool: {e}")))?;
        let store = Postgres {
            pool,
            clock,
            place,
            redactor: redactor.clone(),
        };
        store
            .migrate()
            .await
            .map_err(|e| open_err(&store.place, e.to_string()))?;
        Ok(store)
    }

    pub fn describe(&self) -> String {
        format!("PostgreSQL {}", self.place)
    }

    /// The value for [`db_now`]'s parameter: `None` lets the server's clock judge.
    fn now_param(&self) -> Option<i64> {
        match &self.clock {
            DbClock::Server => None,
            DbClock::Injected(clock) => Some(clock.now_ms()),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres(format!(
            "{}: {}",
            self.place,
            self.redactor.redact(&e.to_string())
        ))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| self.error(format!("cannot reach the database: {}", pool_error(&e))))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.error(e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS inbox_sla_schema (version BIGINT NOT NULL);
             INSERT INTO inbox_sla_schema (version)
                SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM inbox_sla_schema);",
        )
        .await
        .map_err(|e| self.error(e))?;
        let version: i64 = tx
            .query_one("SELECT version FROM inbox_sla_schema", &[])
            .await
            .map_err(|e| self.error(e))?
            .get(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::Open {
                place: self.place.clone(),
                message: format!(
                    "schema version {version} is newer than this inbox-sla supports ({SCHEMA_VERSION}); \
                     upgrade inbox-sla instead of starting over"
                ),
            });
        }
        if version == 0 {
            let foreign: i64 = tx
                .query_one(
                    "SELECT count(*) FROM information_schema.tables
                     WHERE table_schema = current_schema() AND table_name IN ('episode', 'outbox')",
                    &[],
                )
                .await
                .map_err(|e| self.error(e))?
                .get(0);
            if foreign > 0 {
                return Err(StoreError::Open {
                    place: self.place.clone(),
                    message: "holds episode or outbox tables but no inbox-sla schema version; \
                              it is not an inbox-sla store"
                        .into(),
                });
            }
        }
        for (from, sql) in schema::migrations(Dialect::Postgres)
            .iter()
            .enumerate()
            .skip(version as usize)
        {
            tx.batch_execute(sql)
                .await
                .map_err(|e| self.error(format!("migration to schema {} failed: {e}", from + 1)))?;
            tx.execute(
                "UPDATE inbox_sla_schema SET version = $1",
                &[&((from + 1) as i64)],
            )
            .await
            .map_err(|e| self.error(e))?;
        }
        tx.commit().await.map_err(|e| self.error(e))
    }

    /// One consistent view across several reads: a repeatable-read, read-only transaction.
    async fn read_transaction<'c>(
        &self,
        client: &'c mut deadpool_postgres::Object,
    ) -> Result<deadpool_postgres::Transaction<'c>, StoreError> {
        client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| self.error(e))
    }

    async fn query_generation(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        instance: &str,
    ) -> Result<i64, StoreError> {
        Ok(tx
            .query_opt(
                "SELECT value FROM generation WHERE instance = $1",
                &[&instance],
            )
            .await
            .map_err(|e| self.error(e))?
            .map_or(0, |r| r.get(0)))
    }

    pub async fn snapshot(
        &self,
        instance: &str,
        now: i64,
        except: JidSet,
    ) -> Result<Snapshot, StoreError> {
        let mut client = self.client().await?;
        let tx = self.read_transaction(&mut client).await?;
        let generation = self.query_generation(&tx, instance).await?;
        let rows = tx
            .query(
                &format!("SELECT {EPISODE_COLUMNS} FROM episode WHERE instance = $1"),
                &[&instance],
            )
            .await
            .map_err(|e| self.error(e))?;
        let mut episodes = HashMap::with_capacity(rows.len());
        for r in rows
            .iter()
            .filter(|r| !except.contains(r.get::<_, &str>(0)))
        {
            let ep = episode_from(r, 0)?;
            episodes.insert(ep.jid.clone(), ep);
        }
        let mutes = self
            .query_mutes(&tx, now)
            .await?
            .into_iter()
            .map(|m| (m.jid, m.until))
            .collect();
        let source = self.query_source(&tx, instance).await?;
        tx.commit().await.map_err(|e| self.error(e))?;
        Ok(Snapshot {
            episodes,
            mutes,
            generation,
            source,
        })
    }

    pub async fn opening(&self, instance: &str) -> Result<Opening, StoreError> {
        let mut client = self.client().await?;
        let tx = self.read_transaction(&mut client).await?;
        let rows = tx
            .query(
                "SELECT jid, fingerprint, quiet_until, coalesce(fired <> '[]', tiers_fired > 0)
                 FROM episode WHERE instance = $1",
                &[&instance],
            )
            .await
            .map_err(|e| self.error(e))?;
        let mut jids = OpenJids::with_capacity(rows.len());
        for r in &rows {
            jids.insert(
                r.get::<_, &str>(0),
                OpenEpisode {
                    fingerprint: r.get::<_, i64>(1) as u64,
                    quiet_until: r.get(2),
                    breached: r.get(3),
                },
            );
        }
        let generation = self.query_generation(&tx, instance).await?;
        let source = self.query_source(&tx, instance).await?;
        tx.commit().await.map_err(|e| self.error(e))?;
        Ok(Opening {
            jids,
            generation,
            source,
        })
    }

    pub async fn commit_cycle(&self, c: CycleCommit<'_>) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        let mut written = 0u64;
        let bumped = if c.generation == 0 {
            tx.execute(
                "INSERT INTO generation (instance, value) VALUES ($1, 1) ON CONFLICT (instance) DO NOTHING",
                &[&c.instance],
            )
            .await
        } else {
            tx.execute(
                "UPDATE generation SET value = value + 1 WHERE instance = $1 AND value = $2",
                &[&c.instance, &c.generation],
            )
            .await
        }
        .map_err(|e| self.error(e))?;
        if bumped != 1 {
            return Err(StoreError::Conflict(c.instance.to_string()));
        }
        written += 1;
        if let Some(f) = c.fence {
            let held: Option<i64> = tx
                .query_opt(
                    "SELECT fence FROM lease WHERE instance = $1 AND holder = $2 FOR UPDATE",
                    &[&c.instance, &f.node],
                )
                .await
                .map_err(|e| self.error(e))?
                .map(|r| r.get(0));
            if held != Some(f.value) {
                return Err(StoreError::Fenced(c.instance.to_string()));
            }
        }
        let delete = tx
            .prepare_cached("DELETE FROM episode WHERE instance = $1 AND jid = $2")
            .await
            .map_err(|e| self.error(e))?;
        let keep = tx
            .prepare_cached(
                "INSERT INTO history (instance, jid, name, started_at, ended_at, wall_seconds,
                                      business_seconds, fired, notified, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await
            .map_err(|e| self.error(e))?;
        for closed in &c.closed {
            let ep = &closed.episode;
            written += tx
                .execute(&delete, &[&c.instance, &ep.jid])
                .await
                .map_err(|e| self.error(e))?;
            written += tx
                .execute(
                    &keep,
                    &[
                        &c.instance,
                        &ep.jid,
                        &ep.name,
                        &ep.started_at,
                        &closed.ended_at,
                        &(closed.ended_at - ep.started_at).max(0),
                        &closed.age,
                        &json_list(&ep.fired),
                        &json_list(&ep.notified),
                        &closed.reason.as_str(),
                    ],
                )
                .await
                .map_err(|e| self.error(e))?;
        }
        let upsert = tx
            .prepare_cached(
                "INSERT INTO episode (instance, jid, name, started_at, unread, last_id, last_body, last_ts,
                                      last_media, has_last, tiers_fired, last_fired_at, nudged,
                                      fired, notified, missing, fingerprint, quiet_until)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
                 ON CONFLICT (instance, jid) DO UPDATE SET
                    name = EXCLUDED.name, started_at = EXCLUDED.started_at, unread = EXCLUDED.unread,
                    last_id = EXCLUDED.last_id, last_body = EXCLUDED.last_body, last_ts = EXCLUDED.last_ts,
                    last_media = EXCLUDED.last_media, has_last = EXCLUDED.has_last,
                    tiers_fired = EXCLUDED.tiers_fired, last_fired_at = EXCLUDED.last_fired_at,
                    nudged = EXCLUDED.nudged, fired = EXCLUDED.fired, notified = EXCLUDED.notified,
                    missing = EXCLUDED.missing, fingerprint = EXCLUDED.fingerprint,
                    quiet_until = EXCLUDED.quiet_until",
            )
            .await
            .map_err(|e| self.error(e))?;
        for ep in &c.upserts {
            let m = ep.last_message.as_ref();
            let (fired, count) = match ep.legacy_fired {
                Some(n) => (None, i64::from(n)),
                None => (Some(json_list(&ep.fired)), ep.fired.len() as i64),
            };
            written += tx
                .execute(
                    &upsert,
                    &[
                        &c.instance,
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
                        &i64::from(ep.missing),
                        &(ep.fingerprint as i64),
                        &ep.quiet_until,
                    ],
                )
                .await
                .map_err(|e| self.error(e))?;
        }
        if let Some(s) = c.source {
            written += self.write_source(&tx, c.instance, s).await?;
        }
        if c.forget {
            written += tx
                .execute("DELETE FROM source WHERE instance = $1", &[&c.instance])
                .await
                .map_err(|e| self.error(e))?;
        }
        written += self.insert_outgoing(&tx, &c.outgoing, c.now).await?.len() as u64;
        tx.commit().await.map_err(|e| self.error(e))?;
        Ok(written)
    }

    pub async fn set_source(
        &self,
        instance: &str,
        state: &SourceState,
        outgoing: &[Outgoing],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        self.write_source(&tx, instance, state).await?;
        self.insert_outgoing(&tx, outgoing, now).await?;
        tx.commit().await.map_err(|e| self.error(e))
    }

    pub async fn source(&self, instance: &str) -> Result<SourceState, StoreError> {
        let client = self.client().await?;
        self.query_source(&client, instance).await
    }

    pub async fn sources(&self) -> Result<Vec<(String, SourceState)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT instance, {SOURCE_COLUMNS} FROM source ORDER BY instance"),
                &[],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows.iter().map(|r| (r.get(0), source_from(r, 1))).collect())
    }

    pub async fn enqueue(&self, outgoing: &[Outgoing], now: i64) -> Result<Vec<i64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        let ids = self.insert_outgoing(&tx, outgoing, now).await?;
        tx.commit().await.map_err(|e| self.error(e))?;
        Ok(ids)
    }

    pub async fn claim(
        &self,
        owner: &str,
        channel: &str,
        _now_ms: i64,
        claim_ms: i64,
    ) -> Result<Option<Queued>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "WITH now AS (SELECT {now} AS ms)
                     UPDATE outbox SET state = 'claimed', owner = $2,
                                       claim_until_ms = (SELECT ms FROM now) + $3
                     WHERE id = (
                        SELECT id FROM outbox o
                        WHERE channel = $1
                          AND ((state = 'pending' AND next_attempt_ms <= (SELECT ms FROM now))
                               OR (state = 'claimed' AND claim_until_ms <= (SELECT ms FROM now)))
                          AND {IN_ORDER}
                        ORDER BY id LIMIT 1
                        FOR UPDATE SKIP LOCKED)
                     RETURNING {OUTBOX_COLUMNS}",
                    now = db_now(4),
                ),
                &[&channel, &owner, &claim_ms, &self.now_param()],
            )
            .await
            .map_err(|e| self.error(e))?;
        row.map(|r| queued_from(&r)).transpose()
    }

    pub async fn confirm_claim(
        &self,
        id: i64,
        owner: &str,
        _now_ms: i64,
        claim_ms: i64,
    ) -> Result<bool, StoreError> {
        self.execute_one(
            &format!(
                "UPDATE outbox SET claim_until_ms = {now} + $3
                 WHERE id = $1 AND state = 'claimed' AND owner = $2 AND claim_until_ms > {now}",
                now = db_now(4)
            ),
            &[&id, &owner, &claim_ms, &self.now_param()],
        )
        .await
    }

    pub async fn ack(&self, id: i64, owner: &str, at: i64) -> Result<bool, StoreError> {
        self.execute_one(
            "UPDATE outbox SET state = 'sent', done_at = $3, last_error = NULL, owner = NULL,
                               claim_until_ms = NULL
             WHERE id = $1 AND state = 'claimed' AND owner = $2",
            &[&id, &owner, &at],
        )
        .await
    }

    pub async fn nack(
        &self,
        id: i64,
        owner: &str,
        _now_ms: i64,
        retry_in_ms: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.execute_one(
            &format!(
                "UPDATE outbox SET state = 'pending', attempts = attempts + 1,
                                   next_attempt_ms = {} + $3,
                                   last_error = $4, owner = NULL, claim_until_ms = NULL
                 WHERE id = $1 AND state = 'claimed' AND owner = $2",
                db_now(5)
            ),
            &[&id, &owner, &retry_in_ms, &error, &self.now_param()],
        )
        .await
    }

    pub async fn kill(
        &self,
        id: i64,
        owner: Option<&str>,
        at: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.execute_one(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, done_at = $3,
                               last_error = $4, owner = NULL, claim_until_ms = NULL
             WHERE id = $1 AND (($2::TEXT IS NULL AND state = 'pending')
                                OR (state = 'claimed' AND owner = $2))",
            &[&id, &owner, &at, &error],
        )
        .await
    }

    async fn execute_one(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(e))?;
        Ok(client
            .execute(&stmt, params)
            .await
            .map_err(|e| self.error(e))?
            == 1)
    }

    pub async fn kill_orphans(
        &self,
        known: &[String],
        before: i64,
        now: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE outbox SET state = 'dead', done_at = $3,
                        last_error = 'channel \"' || channel || '\" is no longer configured'
                 WHERE state = 'pending' AND created_at <= $2 AND NOT (channel = ANY($1))
                 RETURNING id, channel",
                &[&known, &before, &now],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn next_due_in_ms(
        &self,
        channel: &str,
        _now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &format!(
                    "SELECT min(CASE state WHEN 'pending' THEN next_attempt_ms
                                           ELSE claim_until_ms END) - {}
                     FROM outbox o
                     WHERE channel = $1 AND state IN ('pending', 'claimed') AND {IN_ORDER}",
                    db_now(2)
                ),
                &[&channel, &self.now_param()],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.get(0))
    }

    pub async fn outbox(&self, stage: Stage, limit: usize) -> Result<Vec<Queued>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = $1 ORDER BY id DESC LIMIT $2"
                ),
                &[&stage.as_str(), &(limit as i64)],
            )
            .await
            .map_err(|e| self.error(e))?;
        rows.iter().map(queued_from).collect()
    }

    pub async fn outbox_counts(&self) -> Result<Counts, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT state, count(*) FROM outbox GROUP BY state", &[])
            .await
            .map_err(|e| self.error(e))?;
        let mut counts = Counts::default();
        for r in &rows {
            counts.add(r.get::<_, &str>(0), r.get::<_, i64>(1).max(0) as u64);
        }
        Ok(counts)
    }

    pub async fn mute(
        &self,
        jid: &str,
        until: i64,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO mute (jid, until, reason, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (jid) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason,
                                                created_at = EXCLUDED.created_at",
                &[&jid, &until, &reason, &now],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub async fn unmute(&self, jid: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute("DELETE FROM mute WHERE jid = $1", &[&jid])
            .await
            .map_err(|e| self.error(e))?
            > 0)
    }

    pub async fn mutes(&self, now: i64) -> Result<Vec<Mute>, StoreError> {
        let client = self.client().await?;
        self.query_mutes(&client, now).await
    }

    pub async fn episode_instances(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT DISTINCT instance FROM episode", &[])
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn all_episodes(&self) -> Result<Vec<(String, Episode)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT instance, {EPISODE_COLUMNS} FROM episode ORDER BY started_at, jid"
                ),
                &[],
            )
            .await
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| Ok((r.get(0), episode_from(r, 1)?)))
            .collect()
    }

    pub async fn history(
        &self,
        since: i64,
        instance: Option<&str>,
    ) -> Result<Vec<Past>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT instance, jid, name, started_at, ended_at, wall_seconds, business_seconds,
                        fired, notified, reason
                 FROM history WHERE ended_at >= $1 AND ($2::TEXT IS NULL OR instance = $2)
                 ORDER BY ended_at, id",
                &[&since, &instance],
            )
            .await
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|r| {
                Ok(Past {
                    instance: r.get(0),
                    jid: r.get(1),
                    name: r.get(2),
                    started_at: r.get(3),
                    ended_at: r.get(4),
                    wall_seconds: r.get(5),
                    business_seconds: r.get(6),
                    fired: parse_list(r.get(7))?,
                    notified: parse_list(r.get(8))?,
                    reason: r.get(9),
                })
            })
            .collect()
    }

    pub async fn prune(&self, now: i64, keep_sent: i64, keep: i64) -> Result<Pruned, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        let run = async |sql: &str, before: i64| -> Result<usize, StoreError> {
            Ok(tx
                .execute(sql, &[&before])
                .await
                .map_err(|e| self.error(e))? as usize)
        };
        let pruned = Pruned {
            sent: run(
                "DELETE FROM outbox WHERE state = 'sent' AND done_at < $1",
                now - keep_sent,
            )
            .await?,
            dead: run(
                "DELETE FROM outbox WHERE state = 'dead' AND done_at < $1",
                now - keep,
            )
            .await?,
            mutes: run("DELETE FROM mute WHERE until < $1", now - keep).await?,
            history: run("DELETE FROM history WHERE ended_at < $1", now - keep).await?,
        };
        tx.commit().await.map_err(|e| self.error(e))?;
        Ok(pruned)
    }

    pub async fn acquire_lease(
        &self,
        instance: &str,
        node: &str,
        _now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Fence>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "WITH now AS (SELECT {} AS ms)
                     INSERT INTO lease AS l (instance, holder, expires_ms, fence)
                     VALUES ($1, $2, (SELECT ms FROM now) + $3, 1)
                     ON CONFLICT (instance) DO UPDATE SET
                        fence = CASE WHEN l.holder = EXCLUDED.holder
                                          AND l.expires_ms > (SELECT ms FROM now)
                                     THEN l.fence ELSE l.fence + 1 END,
                        holder = EXCLUDED.holder,
                        expires_ms = EXCLUDED.expires_ms
                     WHERE l.holder = EXCLUDED.holder OR l.expires_ms <= (SELECT ms FROM now)
                     RETURNING fence",
                    db_now(4)
                ),
                &[&instance, &node, &lease_ms, &self.now_param()],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.map(|r| Fence {
            node: node.to_string(),
            value: r.get(0),
        }))
    }

    pub async fn release_leases(&self, node: &str, _now_ms: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "UPDATE lease SET expires_ms = LEAST(expires_ms, {}) WHERE holder = $1",
                    db_now(2)
                ),
                &[&node, &self.now_param()],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    pub async fn leases(&self, _now_ms: i64) -> Result<Vec<Lease>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT instance, holder, expires_ms, fence, expires_ms - {}
                     FROM lease ORDER BY instance",
                    db_now(1)
                ),
                &[&self.now_param()],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows
            .iter()
            .map(|r| Lease {
                instance: r.get(0),
                holder: r.get(1),
                expires_ms: r.get(2),
                fence: r.get(3),
                remaining_ms: r.get(4),
            })
            .collect())
    }

    async fn query_mutes(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        now: i64,
    ) -> Result<Vec<Mute>, StoreError> {
        let rows = client
            .query(
                "SELECT jid, until, reason FROM mute WHERE until > $1 ORDER BY until, jid",
                &[&now],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows
            .iter()
            .map(|r| Mute {
                jid: r.get(0),
                until: r.get(1),
                reason: r.get(2),
            })
            .collect())
    }

    async fn query_source(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        instance: &str,
    ) -> Result<SourceState, StoreError> {
        let row = client
            .query_opt(
                &format!("SELECT {SOURCE_COLUMNS} FROM source WHERE instance = $1"),
                &[&instance],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.map(|r| source_from(&r, 0)).unwrap_or_default())
    }

    async fn write_source(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        instance: &str,
        s: &SourceState,
    ) -> Result<u64, StoreError> {
        tx.execute(
            "INSERT INTO source (instance, failing_since, last_error, blind, last_ok_at, complete_chats,
                                 mark_policy, short_since)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (instance) DO UPDATE SET failing_since = EXCLUDED.failing_since,
                last_error = EXCLUDED.last_error, blind = EXCLUDED.blind,
                last_ok_at = EXCLUDED.last_ok_at, complete_chats = EXCLUDED.complete_chats,
                mark_policy = EXCLUDED.mark_policy, short_since = EXCLUDED.short_since",
            &[
                &instance,
                &s.failing_since,
                &s.last_error,
                &s.blind,
                &s.memory.mark,
                &s.memory.complete_chats.map(|n| n as i64),
                &s.memory.mark_policy,
                &s.memory.short_since,
            ],
        )
        .await
        .map_err(|e| self.error(e))
    }

    async fn insert_outgoing(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        outgoing: &[Outgoing],
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        if outgoing.is_empty() {
            return Ok(Vec::new());
        }
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO outbox (created_at, instance, channel, status, document,
                                         next_attempt_ms, subject)
                     VALUES ($1, $2, $3, $4, $5, {}, $7) RETURNING id",
                db_now(6)
            ))
            .await
            .map_err(|e| self.error(e))?;
        let mut ids = Vec::with_capacity(outgoing.len());
        for o in outgoing {
            let row = tx
                .query_one(
                    &insert,
                    &[
                        &now,
                        &o.doc.instance,
                        &o.channel,
                        &o.doc.status.as_str(),
                        &serde_json::to_string(&o.doc)?,
                        &self.now_param(),
                        &o.subject,
                    ],
                )
                .await
                .map_err(|e| self.error(e))?;
            ids.push(row.get(0));
        }
        Ok(ids)
    }
}

/// "host:port/dbname" without user or password.
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(default database)");
    format!("{host}:{port}/{db}")
}

fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Timeout(_) => "timed out".into(),
        PoolError::Backend(b) => crate::with_causes(b.to_string(), b),
        other => other.to_string(),
    }
}

fn source_from(r: &Row, at: usize) -> SourceState {
    SourceState {
        failing_since: r.get(at),
        last_error: r.get(at + 1),
        blind: r.get(at + 2),
        memory: Memory {
            mark: r.get(at + 3),
            complete_chats: r.get::<_, Option<i64>>(at + 4).map(|n| n.max(0) as usize),
            mark_policy: r.get(at + 5),
            short_since: r.get(at + 6),
        },
    }
}

fn episode_from(r: &Row, at: usize) -> Result<Episode, StoreError> {
    let has_last: bool = r.get(at + 8);
    let count: i64 = r.get(at + 9);
    let fired: Option<String> = r.get(at + 12);
    let (fired, legacy_fired) = match fired {
        Some(text) => (parse_list(&text)?, None),
        None => (Vec::new(), (count > 0).then_some(count as u32)),
    };
    let notified: String = r.get(at + 13);
    Ok(Episode {
        jid: r.get(at),
        name: r.get(at + 1),
        started_at: r.get(at + 2),
        unread: r.get(at + 3),
        last_message: has_last.then(|| Preview {
            id: r.get(at + 4),
            body: r.get(at + 5),
            timestamp: r.get(at + 6),
            has_media: r.get(at + 7),
        }),
        fired,
        notified: parse_list(&notified)?,
        last_fired_at: r.get(at + 10),
        nudged: r.get(at + 11),
        missing: r.get::<_, i64>(at + 14).clamp(0, u32::MAX as i64) as u32,
        fingerprint: r.get::<_, i64>(at + 15) as u64,
        quiet_until: r.get(at + 16),
        legacy_fired,
    })
}

fn queued_from(r: &Row) -> Result<Queued, StoreError> {
    let state: String = r.get(6);
    let document: String = r.get(4);
    Ok(Queued {
        id: r.get(0),
        created_at: r.get(1),
        instance: r.get(2),
        channel: r.get(3),
        doc: serde_json::from_str(&document)?,
        attempts: r.get::<_, i64>(5).clamp(0, u32::MAX as i64) as u32,
        state: State::from_row(&state, r.get(7), r.get(8), r.get(9), r.get(10))?,
        last_error: r.get(11),
    })
}
