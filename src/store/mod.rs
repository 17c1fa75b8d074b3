//! The store: open episodes, closed episodes kept for reports, the outbox, mutes, polling
//! health and instance leases, behind one interface.
//!
//! Two backends keep the same schema and migrations: [`sqlite`] (one file, WAL, the
//! embedded default) and [`postgres`] (12 or newer, for two or more daemons in a
//! high-availability group, docs/spec.md section 10). Each concern is written once, generic
//! over the small backend trait in `db`: `schema`, `episodes`, `outbox`, `mutes`,
//! `sources` (with leases) and `history` (with pruning); `dialect` holds what SQL differs,
//! and the backends only connections, transactions and binding. A store written by a
//! newer release, or one that is not an inbox-sla store, is a clear error and never a
//! silent fresh start. A cycle's episode changes and the notifications they cause go in
//! one transaction (the outbox pattern), which is what makes "enqueued exactly once per
//! episode and tier" hold across crashes; that commit also checks the instance's
//! generation (no other writer committed since the cycle read) and, under HA, the
//! lease's fencing number. This module decides nothing: the engine decides what changes,
//! `outbox` what a send did.

mod acks;
mod db;
mod dialect;
mod episodes;
mod history;
mod mutes;
mod outbox;
pub mod postgres;
mod queued;
mod schema;
mod sources;
pub mod sqlite;

pub use crate::config::Location;
pub use queued::{Counts, Queued, Stage, State};
pub use schema::SCHEMA_VERSION;

use crate::alert::Outgoing;
use crate::overview::OpenEpisode;
use crate::sla::{Closed, Episode};
use sqlite::{Tx, ready};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {place}: {message}")]
    Open { place: String, message: String },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: {0}")]
    Postgres(String),
    #[error("store: {0}")]
    Corrupt(String),
    #[error("store: a stored notification is unreadable: {0}")]
    Document(#[from] serde_json::Error),
    #[error(
        "instance \"{0}\": its episodes changed while this cycle ran (an acknowledgement, or a second inbox-sla using the same store); the cycle was dropped and the next one starts afresh"
    )]
    Conflict(String),
    #[error(
        "instance \"{0}\": this node's lease was taken over while the cycle ran (paused or cut off for longer than ha.lease); the cycle was dropped"
    )]
    Fenced(String),
}

impl StoreError {
    /// A lost race with another writer: nothing is wrong, the next cycle starts afresh.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_) | StoreError::Fenced(_))
    }
}

/// Polling health and memory of one instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceState {
    /// When polling started failing, while it fails.
    pub failing_since: Option<i64>,
    pub last_error: Option<String>,
    /// A `blind` alert was enqueued and no `recovered` since.
    pub blind: bool,
    /// What the engine remembers between polls: the reference size for judging an
    /// overview complete, and reply mode's high-water mark.
    pub memory: crate::sla::Memory,
}

/// What a cycle reads, from one consistent snapshot.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub episodes: HashMap<String, Episode>,
    /// JIDs and when their mutes end.
    pub mutes: HashMap<String, i64>,
    /// The instance's generation: the commit fails if another writer bumped it since.
    pub generation: i64,
    pub source: SourceState,
}

/// What a cycle needs first, read in one go: which chats have an episode (so the parser
/// builds only what matters), the generation a commit must find unchanged, and the
/// instance's memory. The episodes themselves are read while the overview streams in.
#[derive(Debug, Default)]
pub struct Opening {
    pub jids: OpenJids,
    pub generation: i64,
    pub source: SourceState,
}

/// Each open episode's fingerprint, by JID. Read at the start of every cycle, before the
/// parser can begin, so it is kept small: the JIDs are held as 64-bit hashes, not strings.
/// Two JIDs sharing a hash (about one chance in 10^10 for 100,000 chats) cost nothing but
/// speed: a chat is then compared with a fingerprint that is not its own, does not match,
/// and is read in full.
#[derive(Debug, Default)]
pub struct OpenJids(HashMap<u64, OpenEpisode, Hashed>);

impl OpenJids {
    pub fn with_capacity(n: usize) -> OpenJids {
        OpenJids(HashMap::with_capacity_and_hasher(n, Hashed::default()))
    }

    pub fn insert(&mut self, jid: &str, episode: OpenEpisode) {
        self.0.insert(jid_hash(jid), episode);
    }

    /// Before this instant nothing can fall due for any open episode whose chat stays
    /// as it is (`i64::MAX` with none open).
    pub fn quiet_until(&self) -> i64 {
        self.0
            .values()
            .map(|e| e.quiet_until)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// What is known of the JID's open episode, if it has one.
    pub fn get(&self, jid: &str) -> Option<OpenEpisode> {
        self.0.get(&jid_hash(jid)).copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A set of JIDs, held as the same 64-bit hashes as [`OpenJids`]: the chats whose
/// episodes a cycle need not read (a shared hash only means one more episode is read).
#[derive(Debug, Default, Clone)]
pub struct JidSet(std::collections::HashSet<u64, Hashed>);

impl JidSet {
    pub fn insert(&mut self, jid: &str) {
        self.0.insert(jid_hash(jid));
    }

    pub fn contains(&self, jid: &str) -> bool {
        !self.0.is_empty() && self.0.contains(&jid_hash(jid))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn jid_hash(jid: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(jid.as_bytes())
}

/// The tables keyed by [`jid_hash`] use the key as its own hash: it is one already, and
/// hashing it again (SipHash, for each of 100,000 chats a poll) was a measurable share
/// of a warm cycle.
type Hashed = std::hash::BuildHasherDefault<AlreadyHashed>;

#[derive(Default)]
struct AlreadyHashed(u64);

impl std::hash::Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys (`write_u64`) are hashed here. Anything else still gets a sound
        // hash (FNV-1a), not a broken one.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Proof of holding an instance's lease: a commit carries it, and fails if another node
/// has taken the lease since (its fencing number moved on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub node: String,
    pub value: i64,
}

/// One cycle's writes.
pub struct CycleCommit<'a> {
    pub instance: &'a str,
    pub generation: i64,
    pub fence: Option<&'a Fence>,
    /// Applied after `closed` (a chat read between polls ends one episode and opens one).
    /// Owned: a large cycle's rows move to the writing thread instead of being copied.
    pub upserts: Vec<Episode>,
    pub closed: Vec<Closed>,
    pub outgoing: Vec<Outgoing>,
    /// The instance's new source state, when it changed.
    pub source: Option<&'a SourceState>,
    /// The instance is no longer watched: its source row (polling health, reply mode's
    /// mark) goes, so that adding it back later starts afresh.
    pub forget: bool,
    /// Acknowledgements told this cycle: (chat, the acknowledgement's instant, who).
    pub told: Vec<(String, i64, String)>,
    pub now: i64,
}

impl CycleCommit<'_> {
    fn is_empty(&self) -> bool {
        self.upserts.is_empty()
            && self.closed.is_empty()
            && self.outgoing.is_empty()
            && self.source.is_none()
            && !self.forget
            && self.told.is_empty()
    }
}

/// What acknowledging a chat did.
#[derive(Debug, Clone, PartialEq)]
pub enum Acknowledged {
    /// The open episode in `instance` is acknowledged.
    Done { instance: String },
    /// The chat has no open episode (in that instance): nothing was written.
    NotOpen,
    /// The chat is open in several instances and none was named: nothing was written.
    Several(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mute {
    pub jid: String,
    pub until: i64,
    pub reason: Option<String>,
}

/// Who polls an instance in an HA group.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub instance: String,
    pub holder: String,
    pub expires_ms: i64,
    pub fence: i64,
    /// How long until it expires (negative: how long ago it did), by the store's clock
    /// (with PostgreSQL the database's, never a node's).
    pub remaining_ms: i64,
}

impl Lease {
    /// Whether it has not expired.
    pub fn live(&self) -> bool {
        self.remaining_ms > 0
    }
}

/// Whose clock a PostgreSQL store judges leases and claims by (docs/spec.md section 6).
/// Nodes' clocks disagree; the database's is the one every node sees.
#[derive(Debug, Clone, Default)]
pub enum DbClock {
    /// The database server's own clock (`clock_timestamp()`): what a real deployment uses.
    #[default]
    Server,
    /// A clock given by the caller, standing for the database's: tests and the simulator
    /// move it. Every node of a simulated group shares it, whatever their own clocks say.
    Injected(crate::clock::Clock),
}

/// A closed episode as kept for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Past {
    pub instance: String,
    pub jid: String,
    pub name: Option<String>,
    pub started_at: i64,
    pub ended_at: i64,
    pub wall_seconds: i64,
    /// The SLA's clock: business time where business hours apply.
    pub business_seconds: i64,
    /// The `after` of every tier that fired.
    pub fired: Vec<u64>,
    pub notified: Vec<String>,
    pub reason: String,
    /// When a tier last fired or repeated.
    pub last_fired_at: Option<i64>,
    /// Who acknowledged it, when, and when the page it answered was sent.
    pub acked_by: Option<String>,
    pub acked_at: Option<i64>,
    pub ack_paged_at: Option<i64>,
}

/// What housekeeping removed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pruned {
    pub sent: usize,
    pub dead: usize,
    pub mutes: usize,
    pub history: usize,
}

/// An open store; cheap to clone, safe to share between tasks.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// Each method runs a concern function on whichever backend this is: on SQLite's
/// blocking pool (what it borrows copied there first), in the transaction that method
/// always took there, or on a pooled PostgreSQL connection or transaction.
impl Store {
    /// Opens (creating and migrating if needed) the store.
    pub async fn open(location: &Location) -> Result<Store, StoreError> {
        Store::open_with(location, DbClock::Server).await
    }

    /// Opens with a chosen database clock for PostgreSQL (SQLite, on one machine, is
    /// judged by the callers' clock).
    pub async fn open_with(location: &Location, clock: DbClock) -> Result<Store, StoreError> {
        Ok(match location {
            Location::Sqlite(path) => Store::Sqlite(sqlite::Sqlite::open(path).await?),
            Location::Postgres(url) => Store::Postgres(postgres::Postgres::open(url, clock).await?),
        })
    }

    /// Opens an existing store without creating or migrating it: `None` when a SQLite
    /// file does not exist yet (nothing has been polled).
    pub async fn open_existing(location: &Location) -> Result<Option<Store>, StoreError> {
        Ok(match location {
            Location::Sqlite(path) => sqlite::Sqlite::open_read_only(path)
                .await?
                .map(Store::Sqlite),
            Location::Postgres(url) => Some(Store::Postgres(
                postgres::Postgres::open(url, DbClock::Server).await?,
            )),
        })
    }

    /// "state.db at /var/lib/…" or "PostgreSQL at host/db", never the password.
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(s) => s.describe(),
            Store::Postgres(p) => p.describe(),
        }
    }

    /// Whether several daemons may share it (then instance leases are used).
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    pub async fn snapshot(&self, instance: &str, now: i64) -> Result<Snapshot, StoreError> {
        self.snapshot_except(instance, now, JidSet::default()).await
    }

    /// The snapshot without the episodes of `except` (their chats are quiet this cycle).
    pub async fn snapshot_except(
        &self,
        instance: &str,
        now: i64,
        except: JidSet,
    ) -> Result<Snapshot, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let instance = instance.to_string();
                s.run(Tx::Deferred, move |c| {
                    ready(episodes::snapshot(c, &instance, now, &except))
                })
                .await
            }
            Store::Postgres(p) => {
                let mut client = p.client().await?;
                let tx = p.transaction(&mut client, true).await?;
                let out = episodes::snapshot(&tx, instance, now, &except).await?;
                tx.commit(out).await
            }
        }
    }

    pub async fn opening(&self, instance: &str) -> Result<Opening, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let instance = instance.to_string();
                s.run(Tx::Deferred, move |c| {
                    ready(episodes::opening(c, &instance))
                })
                .await
            }
            Store::Postgres(p) => {
                let mut client = p.client().await?;
                let tx = p.transaction(&mut client, true).await?;
                let out = episodes::opening(&tx, instance).await?;
                tx.commit(out).await
            }
        }
    }

    /// Commits one cycle, all or nothing; returns the rows written (0 when there was
    /// nothing to write).
    pub async fn commit_cycle(&self, c: CycleCommit<'_>) -> Result<u64, StoreError> {
        if c.is_empty() {
            return Ok(0);
        }
        match self {
            Store::Sqlite(s) => {
                // The commit runs on another thread: it takes the rows and copies the rest.
                let instance = c.instance.to_string();
                let fence = c.fence.cloned();
                let source = c.source.cloned();
                let CycleCommit {
                    generation,
                    upserts,
                    closed,
                    outgoing,
                    forget,
                    told,
                    now,
                    ..
                } = c;
                s.run(Tx::Immediate, move |conn| {
                    ready(episodes::commit_cycle(
                        conn,
                        CycleCommit {
                            instance: &instance,
                            generation,
                            fence: fence.as_ref(),
                            upserts,
                            closed,
                            outgoing,
                            source: source.as_ref(),
                            forget,
                            told,
                            now,
                        },
                    ))
                })
                .await
            }
            Store::Postgres(p) => {
                let mut client = p.client().await?;
                let tx = p.transaction(&mut client, false).await?;
                let out = episodes::commit_cycle(&tx, c).await?;
                tx.commit(out).await
            }
        }
    }

    /// Writes an instance's source state with the notifications it causes (blind).
    pub async fn set_source(
        &self,
        instance: &str,
        state: &SourceState,
        outgoing: &[Outgoing],
        now: i64,
    ) -> Result<(), StoreError> {
        async fn set(
            db: &impl db::Db,
            instance: &str,
            state: &SourceState,
            outgoing: &[Outgoing],
            now: i64,
        ) -> Result<(), StoreError> {
            sources::write_source(db, instance, state).await?;
            outbox::insert(db, outgoing, now, &mut 0).await?;
            Ok(())
        }
        match self {
            Store::Sqlite(s) => {
                let (instance, state) = (instance.to_string(), state.clone());
                let outgoing = outgoing.to_vec();
                s.run(Tx::Deferred, move |c| {
                    ready(set(c, &instance, &state, &outgoing, now))
                })
                .await
            }
            Store::Postgres(p) => {
                let mut client = p.client().await?;
                let tx = p.transaction(&mut client, false).await?;
                set(&tx, instance, state, outgoing, now).await?;
                tx.commit(()).await
            }
        }
    }

    pub async fn source(&self, instance: &str) -> Result<SourceState, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let instance = instance.to_string();
                s.run(Tx::None, move |c| ready(sources::source(c, &instance)))
                    .await
            }
            Store::Postgres(p) => sources::source(&p.conn().await?, instance).await,
        }
    }

    pub async fn sources(&self) -> Result<Vec<(String, SourceState)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.run(Tx::None, |c| ready(sources::sources(c))).await,
            Store::Postgres(p) => sources::sources(&p.conn().await?).await,
        }
    }

    /// Enqueues notifications outside a cycle (test, recovered).
    pub async fn enqueue(&self, outgoing: &[Outgoing], now: i64) -> Result<Vec<i64>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let outgoing = outgoing.to_vec();
                s.run(Tx::Deferred, move |c| {
                    ready(outbox::insert(c, &outgoing, now, &mut 0))
                })
                .await
            }
            Store::Postgres(p) => {
                let mut client = p.client().await?;
                let tx = p.transaction(&mut client, false).await?;
                let ids = outbox::insert(&tx, outgoing, now, &mut 0).await?;
                tx.commit(ids).await
            }
        }
    }

    /// Claims `channel`'s oldest due notification for `owner` until `now_ms + claim_ms`:
    /// a pending one whose time has come, or one whose claim expired. A notice never
    /// overtakes an undelivered earlier notice of another kind for the same instance on
    /// the same channel (section 6: resolved after firing, recovered after blind, a new
    /// firing after the resolved before it). With PostgreSQL `now_ms` is not used: the
    /// database's clock judges.
    pub async fn claim(
        &self,
        owner: &str,
        channel: &str,
        now_ms: i64,
        claim_ms: i64,
    ) -> Result<Option<Queued>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (owner, channel) = (owner.to_string(), channel.to_string());
                s.run(Tx::Immediate, move |c| {
                    ready(outbox::claim(c, &owner, &channel, now_ms, claim_ms))
                })
                .await
            }
            Store::Postgres(p) => {
                outbox::claim(&p.conn().await?, owner, channel, now_ms, claim_ms).await
            }
        }
    }

    /// Claimed → sent. `false` when `owner` no longer holds the claim.
    pub async fn ack(&self, id: i64, owner: &str, at: i64) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let owner = owner.to_string();
                s.run(Tx::None, move |c| ready(outbox::ack(c, id, &owner, at)))
                    .await
            }
            Store::Postgres(p) => outbox::ack(&p.conn().await?, id, owner, at).await,
        }
    }

    /// Whether `owner` still holds the claim on row `id` (unexpired by the store's clock),
    /// extending it by `claim_ms` if so: checked just before a send, so a node that was
    /// paused past its claim never sends what another node has taken over.
    pub async fn confirm_claim(
        &self,
        id: i64,
        owner: &str,
        now_ms: i64,
        claim_ms: i64,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let owner = owner.to_string();
                s.run(Tx::None, move |c| {
                    ready(outbox::confirm_claim(c, id, &owner, now_ms, claim_ms))
                })
                .await
            }
            Store::Postgres(p) => {
                outbox::confirm_claim(&p.conn().await?, id, owner, now_ms, claim_ms).await
            }
        }
    }

    /// Claimed → pending, due `retry_in_ms` from now (the store's now: with PostgreSQL the
    /// database's clock, so a node's skew never shortens or stretches a backoff).
    pub async fn nack(
        &self,
        id: i64,
        owner: &str,
        now_ms: i64,
        retry_in_ms: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (owner, error) = (owner.to_string(), error.to_string());
                s.run(Tx::None, move |c| {
                    ready(outbox::nack(c, id, &owner, now_ms, retry_in_ms, &error))
                })
                .await
            }
            Store::Postgres(p) => {
                let conn = p.conn().await?;
                outbox::nack(&conn, id, owner, now_ms, retry_in_ms, error).await
            }
        }
    }

    /// Claimed by `owner` (or, with `None`, pending) → dead.
    pub async fn kill(
        &self,
        id: i64,
        owner: Option<&str>,
        at: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (owner, error) = (owner.map(str::to_string), error.to_string());
                s.run(Tx::None, move |c| {
                    ready(outbox::kill(c, id, owner.as_deref(), at, &error))
                })
                .await
            }
            Store::Postgres(p) => outbox::kill(&p.conn().await?, id, owner, at, error).await,
        }
    }

    /// Pending notifications of channels not in `known`, created at or before `before`: dead.
    pub async fn kill_orphans(
        &self,
        known: &[String],
        before: i64,
        now: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let known = known.to_vec();
                s.run(Tx::Immediate, move |c| {
                    ready(outbox::kill_orphans(c, &known, before, now))
                })
                .await
            }
            Store::Postgres(p) => outbox::kill_orphans(&p.conn().await?, known, before, now).await,
        }
    }

    /// How long until `channel`'s next notification falls due (ms, negative when it is
    /// due already): a pending one's retry time or a claim's expiry, by the store's clock.
    pub async fn next_due_in_ms(
        &self,
        channel: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let channel = channel.to_string();
                s.run(Tx::None, move |c| {
                    ready(outbox::next_due_in_ms(c, &channel, now_ms))
                })
                .await
            }
            Store::Postgres(p) => outbox::next_due_in_ms(&p.conn().await?, channel, now_ms).await,
        }
    }

    /// Notifications at `stage`, newest first.
    pub async fn outbox(&self, stage: Stage, limit: usize) -> Result<Vec<Queued>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                s.run(Tx::None, move |c| ready(outbox::list(c, stage, limit)))
                    .await
            }
            Store::Postgres(p) => outbox::list(&p.conn().await?, stage, limit).await,
        }
    }

    /// How many notifications are at each stage.
    pub async fn outbox_counts(&self) -> Result<Counts, StoreError> {
        match self {
            Store::Sqlite(s) => s.run(Tx::None, |c| ready(outbox::counts(c))).await,
            Store::Postgres(p) => outbox::counts(&p.conn().await?).await,
        }
    }

    pub async fn mute(
        &self,
        jid: &str,
        until: i64,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (jid, reason) = (jid.to_string(), reason.map(str::to_string));
                s.run(Tx::Immediate, move |c| {
                    ready(mutes::mute(c, &jid, until, reason.as_deref(), now))
                })
                .await
            }
            Store::Postgres(p) => {
                let mut client = p.client().await?;
                let tx = p.transaction(&mut client, false).await?;
                mutes::mute(&tx, jid, until, reason, now).await?;
                tx.commit(()).await
            }
        }
    }

    /// `true` when a mute was removed.
    pub async fn unmute(&self, jid: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let jid = jid.to_string();
                s.run(Tx::None, move |c| ready(mutes::unmute(c, &jid)))
                    .await
            }
            Store::Postgres(p) => mutes::unmute(&p.conn().await?, jid).await,
        }
    }

    /// Acknowledges the open episode of `jid` for `by` at `at`, holding its next tier
    /// until `until` (docs/spec.md section 2). `instance` may be left out when the chat is
    /// open in one instance only. Nothing is written unless an episode is open.
    pub async fn acknowledge(
        &self,
        instance: Option<&str>,
        jid: &str,
        by: &str,
        at: i64,
        until: i64,
    ) -> Result<Acknowledged, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (instance, jid, by) = (
                    instance.map(str::to_string),
                    jid.to_string(),
                    by.to_string(),
                );
                s.run(Tx::Immediate, move |c| {
                    ready(acks::acknowledge(
                        c,
                        instance.as_deref(),
                        &jid,
                        &by,
                        at,
                        until,
                    ))
                })
                .await
            }
            Store::Postgres(p) => {
                let mut client = p.client().await?;
                let tx = p.transaction(&mut client, false).await?;
                let out = acks::acknowledge(&tx, instance, jid, by, at, until).await?;
                tx.commit(out).await
            }
        }
    }

    /// Mutes still in force at `now`, soonest to end first.
    pub async fn mutes(&self, now: i64) -> Result<Vec<Mute>, StoreError> {
        match self {
            Store::Sqlite(s) => s.run(Tx::None, move |c| ready(mutes::mutes(c, now))).await,
            Store::Postgres(p) => mutes::mutes(&p.conn().await?, now).await,
        }
    }

    /// The instances that have open episodes.
    pub async fn episode_instances(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.run(Tx::None, |c| ready(episodes::instances(c))).await,
            Store::Postgres(p) => episodes::instances(&p.conn().await?).await,
        }
    }

    /// The open episode of `jid` in `instance`, if there is one.
    pub async fn episode(&self, instance: &str, jid: &str) -> Result<Option<Episode>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (instance, jid) = (instance.to_string(), jid.to_string());
                s.run(Tx::Deferred, move |c| {
                    ready(episodes::one(c, &instance, &jid))
                })
                .await
            }
            Store::Postgres(p) => episodes::one(&p.conn().await?, instance, jid).await,
        }
    }

    /// The open episodes of `jid`, in every instance or in `instance` only.
    pub async fn episodes_of(
        &self,
        jid: &str,
        instance: Option<&str>,
    ) -> Result<Vec<(String, Episode)>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (jid, instance) = (jid.to_string(), instance.map(str::to_string));
                s.run(Tx::Deferred, move |c| {
                    ready(episodes::of_jid(c, &jid, instance.as_deref()))
                })
                .await
            }
            Store::Postgres(p) => episodes::of_jid(&p.conn().await?, jid, instance).await,
        }
    }

    /// Every open episode of every instance, longest waiting first.
    pub async fn all_episodes(&self) -> Result<Vec<(String, Episode)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.run(Tx::None, |c| ready(episodes::all(c))).await,
            Store::Postgres(p) => episodes::all(&p.conn().await?).await,
        }
    }

    /// Closed episodes that ended at or after `since`, oldest first.
    pub async fn history(
        &self,
        since: i64,
        instance: Option<&str>,
    ) -> Result<Vec<Past>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let instance = instance.map(str::to_string);
                s.run(Tx::None, move |c| {
                    ready(history::history(c, since, instance.as_deref()))
                })
                .await
            }
            Store::Postgres(p) => history::history(&p.conn().await?, since, instance).await,
        }
    }

    /// Removes what is older than its keep: sent notifications after `keep_sent`, dead
    /// ones, expired mutes and closed episodes after `keep`.
    pub async fn prune(&self, now: i64, keep_sent: i64, keep: i64) -> Result<Pruned, StoreError> {
        match self {
            Store::Sqlite(s) => {
                s.run(Tx::Deferred, move |c| {
                    ready(history::prune(c, now, keep_sent, keep))
                })
                .await
            }
            Store::Postgres(p) => {
                let mut client = p.client().await?;
                let tx = p.transaction(&mut client, false).await?;
                let pruned = history::prune(&tx, now, keep_sent, keep).await?;
                tx.commit(pruned).await
            }
        }
    }

    /// Takes or renews `instance`'s lease for `node` until `now_ms + lease_ms`, if it is
    /// free, expired, or already ours. Returns the fence to commit with, or `None` when
    /// another node holds it. With PostgreSQL the database's clock judges, not `now_ms`.
    pub async fn acquire_lease(
        &self,
        instance: &str,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Fence>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (instance, node) = (instance.to_string(), node.to_string());
                s.run(Tx::Immediate, move |c| {
                    ready(sources::acquire_lease(
                        c, &instance, &node, now_ms, lease_ms,
                    ))
                })
                .await
            }
            Store::Postgres(p) => {
                let conn = p.conn().await?;
                sources::acquire_lease(&conn, instance, node, now_ms, lease_ms).await
            }
        }
    }

    /// Lets go of every lease `node` holds, expiring them now (a clean shutdown: another
    /// node takes over at once instead of after `ha.lease`).
    pub async fn release_leases(&self, node: &str, now_ms: i64) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                let node = node.to_string();
                s.run(Tx::None, move |c| {
                    ready(sources::release_leases(c, &node, now_ms))
                })
                .await
            }
            Store::Postgres(p) => sources::release_leases(&p.conn().await?, node, now_ms).await,
        }
    }

    /// Hands `instance` over to another node: expires `node`'s lease on it now.
    pub async fn release_lease(
        &self,
        instance: &str,
        node: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                let (instance, node) = (instance.to_string(), node.to_string());
                s.run(Tx::None, move |c| {
                    ready(sources::release_lease(c, &instance, &node, now_ms))
                })
                .await
            }
            Store::Postgres(p) => {
                sources::release_lease(&p.conn().await?, instance, node, now_ms).await
            }
        }
    }

    /// Says `node` is a live member of the HA group for the next `lease_ms` (by the
    /// store's clock), and returns the live members (itself included).
    pub async fn heartbeat(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let node = node.to_string();
                s.run(Tx::Immediate, move |c| {
                    ready(async move {
                        sources::heartbeat(c, &node, now_ms, lease_ms).await?;
                        sources::members(c, now_ms).await
                    })
                })
                .await
            }
            Store::Postgres(p) => {
                let conn = p.conn().await?;
                sources::heartbeat(&conn, node, now_ms, lease_ms).await?;
                sources::members(&conn, now_ms).await
            }
        }
    }

    /// `node` leaves the HA group now (a clean shutdown).
    pub async fn leave(&self, node: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => {
                let node = node.to_string();
                s.run(Tx::None, move |c| ready(sources::leave(c, &node)))
                    .await
            }
            Store::Postgres(p) => sources::leave(&p.conn().await?, node).await,
        }
    }

    /// Every lease, each judged live or expired by the store's clock.
    pub async fn leases(&self, now_ms: i64) -> Result<Vec<Lease>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                s.run(Tx::None, move |c| ready(sources::leases(c, now_ms)))
                    .await
            }
            Store::Postgres(p) => sources::leases(&p.conn().await?, now_ms).await,
        }
    }
}

/// Encodes a list column (tiers fired, channels notified) as JSON.
pub(crate) fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Decodes a list column; a damaged value is an error, never silently empty.
pub(crate) fn parse_list<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("a list column is unreadable ({e}): {text}")))
}
