//! The store: open episodes, closed episodes kept for reports, the outbox, mutes, polling
//! health and instance leases, behind one interface.
//!
//! Two backends keep the same schema semantics and migrations: [`sqlite`] (one file, WAL,
//! the embedded default) and [`postgres`] (12 or newer, for two or more daemons in a
//! high-availability group, PRODUCT.md section 10). A store written by a newer release, or
//! one that is not an inbox-sla store, is a clear error and never a silent fresh start. A
//! cycle's episode changes and the notifications they cause go in one transaction (the
//! outbox pattern), which is what makes "enqueued exactly once per episode and tier" hold
//! across crashes; that commit also checks the instance's generation (no other writer
//! committed since the cycle read) and, under HA, the lease's fencing number. This module
//! decides nothing: the engine decides what changes, `outbox` what a send did.

mod dialect;
pub mod postgres;
mod queued;
mod schema;
pub mod sqlite;

pub use crate::config::Location;
pub use queued::{Counts, Queued, Stage, State};
pub use schema::SCHEMA_VERSION;

use crate::alert::Outgoing;
use crate::overview::OpenEpisode;
use crate::sla::{Closed, Episode};
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
        "instance \"{0}\": another process changed its episodes while this cycle ran (is a second inbox-sla using the same store?); the cycle was dropped and the next one starts afresh"
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
pub struct OpenJids(HashMap<u64, OpenEpisode>);

impl OpenJids {
    pub fn with_capacity(n: usize) -> OpenJids {
        OpenJids(HashMap::with_capacity(n))
    }

    pub fn insert(&mut self, jid: &str, episode: OpenEpisode) {
        self.0.insert(jid_hash(jid), episode);
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
pub struct JidSet(std::collections::HashSet<u64>);

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
    pub now: i64,
}

impl CycleCommit<'_> {
    fn is_empty(&self) -> bool {
        self.upserts.is_empty()
            && self.closed.is_empty()
            && self.outgoing.is_empty()
            && self.source.is_none()
            && !self.forget
    }
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

/// Whose clock a PostgreSQL store judges leases and claims by (PRODUCT.md section 6).
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

/// Calls the same method on whichever backend this is.
macro_rules! both {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(p) => p.$method($($arg),*).await,
        }
    };
}

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
        both!(self.snapshot(instance, now, JidSet::default()))
    }

    /// The snapshot without the episodes of `except` (their chats are quiet this cycle).
    pub async fn snapshot_except(
        &self,
        instance: &str,
        now: i64,
        except: JidSet,
    ) -> Result<Snapshot, StoreError> {
        both!(self.snapshot(instance, now, except))
    }

    pub async fn opening(&self, instance: &str) -> Result<Opening, StoreError> {
        both!(self.opening(instance))
    }

    /// Commits one cycle, all or nothing; returns the rows written (0 when there was
    /// nothing to write).
    pub async fn commit_cycle(&self, c: CycleCommit<'_>) -> Result<u64, StoreError> {
        if c.is_empty() {
            return Ok(0);
        }
        both!(self.commit_cycle(c))
    }

    /// Writes an instance's source state with the notifications it causes (blind).
    pub async fn set_source(
        &self,
        instance: &str,
        state: &SourceState,
        outgoing: &[Outgoing],
        now: i64,
    ) -> Result<(), StoreError> {
        both!(self.set_source(instance, state, outgoing, now))
    }

    pub async fn source(&self, instance: &str) -> Result<SourceState, StoreError> {
        both!(self.source(instance))
    }

    pub async fn sources(&self) -> Result<Vec<(String, SourceState)>, StoreError> {
        both!(self.sources())
    }

    /// Enqueues notifications outside a cycle (test, recovered).
    pub async fn enqueue(&self, outgoing: &[Outgoing], now: i64) -> Result<Vec<i64>, StoreError> {
        both!(self.enqueue(outgoing, now))
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
        both!(self.claim(owner, channel, now_ms, claim_ms))
    }

    /// Claimed → sent. `false` when `owner` no longer holds the claim.
    pub async fn ack(&self, id: i64, owner: &str, at: i64) -> Result<bool, StoreError> {
        both!(self.ack(id, owner, at))
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
        both!(self.confirm_claim(id, owner, now_ms, claim_ms))
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
        both!(self.nack(id, owner, now_ms, retry_in_ms, error))
    }

    /// Claimed by `owner` (or, with `None`, pending) → dead.
    pub async fn kill(
        &self,
        id: i64,
        owner: Option<&str>,
        at: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        both!(self.kill(id, owner, at, error))
    }

    /// Pending notifications of channels not in `known`, created at or before `before`: dead.
    pub async fn kill_orphans(
        &self,
        known: &[String],
        before: i64,
        now: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        both!(self.kill_orphans(known, before, now))
    }

    /// How long until `channel`'s next notification falls due (ms, negative when it is
    /// due already): a pending one's retry time or a claim's expiry, by the store's clock.
    pub async fn next_due_in_ms(
        &self,
        channel: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        both!(self.next_due_in_ms(channel, now_ms))
    }

    /// Notifications at `stage`, newest first.
    pub async fn outbox(&self, stage: Stage, limit: usize) -> Result<Vec<Queued>, StoreError> {
        both!(self.outbox(stage, limit))
    }

    /// How many notifications are at each stage.
    pub async fn outbox_counts(&self) -> Result<Counts, StoreError> {
        both!(self.outbox_counts())
    }

    pub async fn mute(
        &self,
        jid: &str,
        until: i64,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        both!(self.mute(jid, until, reason, now))
    }

    /// `true` when a mute was removed.
    pub async fn unmute(&self, jid: &str) -> Result<bool, StoreError> {
        both!(self.unmute(jid))
    }

    /// Mutes still in force at `now`, soonest to end first.
    pub async fn mutes(&self, now: i64) -> Result<Vec<Mute>, StoreError> {
        both!(self.mutes(now))
    }

    /// The instances that have open episodes.
    pub async fn episode_instances(&self) -> Result<Vec<String>, StoreError> {
        both!(self.episode_instances())
    }

    /// Every open episode of every instance, longest waiting first.
    pub async fn all_episodes(&self) -> Result<Vec<(String, Episode)>, StoreError> {
        both!(self.all_episodes())
    }

    /// Closed episodes that ended at or after `since`, oldest first.
    pub async fn history(
        &self,
        since: i64,
        instance: Option<&str>,
    ) -> Result<Vec<Past>, StoreError> {
        both!(self.history(since, instance))
    }

    /// Removes what is older than its keep: sent notifications after `keep_sent`, dead
    /// ones, expired mutes and closed episodes after `keep`.
    pub async fn prune(&self, now: i64, keep_sent: i64, keep: i64) -> Result<Pruned, StoreError> {
        both!(self.prune(now, keep_sent, keep))
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
        both!(self.acquire_lease(instance, node, now_ms, lease_ms))
    }

    /// Lets go of every lease `node` holds, expiring them now (a clean shutdown: another
    /// node takes over at once instead of after `ha.lease`).
    pub async fn release_leases(&self, node: &str, now_ms: i64) -> Result<(), StoreError> {
        both!(self.release_leases(node, now_ms))
    }

    /// Every lease, each judged live or expired by the store's clock.
    pub async fn leases(&self, now_ms: i64) -> Result<Vec<Lease>, StoreError> {
        both!(self.leases(now_ms))
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
