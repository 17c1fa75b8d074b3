//! Open episodes and the generation that guards them: what a cycle reads first
//! ([`opening`], [`snapshot`]) and the one transaction it writes ([`commit_cycle`]).

use super::db::{Db, Row, Value};
use super::{
    CycleCommit, JidSet, OpenJids, Opening, Snapshot, StoreError, acks, history, json_list, mutes,
    outbox, parse_list, sources,
};
use crate::overview::OpenEpisode;
use crate::sla::{Episode, Preview};
use std::collections::HashMap;

const EPISODE_COLUMNS: &str = "jid, name, started_at, unread, last_id, last_body, last_ts, \
     last_media, has_last, tiers_fired, last_fired_at, nudged, fired, notified, missing, fingerprint, \
     quiet_until";

/// Whether an episode has fired a tier, in SQL (a legacy count has no `fired` list; such
/// an episode is never quiet, so the answer does not matter for it).
const BREACHED: &str = "coalesce(fired <> '[]', tiers_fired > 0)";

const EPISODE_FIELDS: usize = 18;

/// The upsert of `rows` episodes in one statement.
fn upsert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=EPISODE_FIELDS)
                .map(|n| format!("?{}", row * EPISODE_FIELDS + n))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
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
        values.join(", ")
    )
}

/// An episode's columns as the upsert binds them.
struct Written<'a> {
    instance: &'a str,
    ep: &'a Episode,
    count: i64,
    fired: Option<String>,
    notified: String,
    missing: i64,
    fingerprint: i64,
    id: Option<&'a str>,
    body: Option<&'a str>,
    timestamp: Option<i64>,
    has_media: bool,
    has_last: bool,
    /// `quiet_until` as stored: marks an episode whose history is still to be read.
    quiet_until: i64,
}

impl<'a> Written<'a> {
    fn new(instance: &'a str, ep: &'a Episode) -> Written<'a> {
        let last = ep.last_message.as_ref();
        let (fired, count) = match ep.legacy_fired {
            Some(n) => (None, i64::from(n)),
            None => (Some(json_list(&ep.fired)), ep.fired.len() as i64),
        };
        Written {
            instance,
            ep,
            count,
            fired,
            notified: json_list(&ep.notified),
            missing: i64::from(ep.missing),
            fingerprint: ep.fingerprint as i64,
            id: last.and_then(|m| m.id.as_deref()),
            body: last.and_then(|m| m.body.as_deref()),
            timestamp: last.and_then(|m| m.timestamp),
            has_media: last.is_some_and(|m| m.has_media),
            has_last: last.is_some(),
            quiet_until: stored_quiet_until(ep),
        }
    }

    fn values(&self) -> [&dyn Value; EPISODE_FIELDS] {
        let ep = self.ep;
        [
            &self.instance,
            &ep.jid,
            &ep.name,
            &ep.started_at,
            &ep.unread,
            &self.id,
            &self.body,
            &self.timestamp,
            &self.has_media,
            &self.has_last,
            &self.count,
            &ep.last_fired_at,
            &ep.nudged,
            &self.fired,
            &self.notified,
            &self.missing,
            &self.fingerprint,
            &self.quiet_until,
        ]
    }
}

pub(super) async fn generation(db: &impl Db, instance: &str) -> Result<i64, StoreError> {
    Ok(db
        .row(
            "SELECT value FROM generation WHERE instance = ?1",
            &[&instance],
            |r| r.i64(0),
        )
        .await?
        .unwrap_or(0))
}

/// Which chats have an episode, the generation and the instance's memory.
pub(super) async fn opening(db: &impl Db, instance: &str) -> Result<Opening, StoreError> {
    let mut jids = OpenJids::with_capacity(1024);
    db.each(
        &format!(
            "SELECT jid, fingerprint, quiet_until, {BREACHED} FROM episode WHERE instance = ?1"
        ),
        &[&instance],
        &mut |r| {
            jids.insert(
                r.str(0)?,
                OpenEpisode {
                    fingerprint: r.i64(1)? as u64,
                    quiet_until: r.i64(2)?,
                    breached: r.bool(3)?,
                },
            );
            Ok(())
        },
    )
    .await?;
    // An acknowledgement not yet told: the cycle must read the episode to tell it.
    for jid in acks::untold(db, instance).await? {
        if let Some(open) = jids.get(&jid) {
            jids.insert(
                &jid,
                OpenEpisode {
                    quiet_until: 0,
                    ..open
                },
            );
        }
    }
    Ok(Opening {
        jids,
        generation: generation(db, instance).await?,
        source: sources::source(db, instance).await?,
    })
}

/// What a cycle reads, without the episodes of `except`.
pub(super) async fn snapshot(
    db: &impl Db,
    instance: &str,
    now: i64,
    except: &JidSet,
) -> Result<Snapshot, StoreError> {
    let generation = generation(db, instance).await?;
    let mut episodes = HashMap::new();
    db.each(
        &format!("SELECT {EPISODE_COLUMNS} FROM episode WHERE instance = ?1"),
        &[&instance],
        &mut |r| {
            if !except.contains(r.str(0)?) {
                let ep = episode_from(r, 0)?;
                episodes.insert(ep.jid.clone(), ep);
            }
            Ok(())
        },
    )
    .await?;
    for ((_, jid), ack) in acks::acks(db, Some(instance)).await? {
        if let Some(ep) = episodes.get_mut(&jid) {
            ep.ack = Some(ack);
        }
    }
    let mutes = mutes::mutes(db, now)
        .await?
        .into_iter()
        .map(|m| (m.jid, m.until))
        .collect();
    Ok(Snapshot {
        episodes,
        mutes,
        generation,
        source: sources::source(db, instance).await?,
    })
}

/// One cycle's writes; the caller runs it in one transaction (SQLite's taken at once).
/// Returns the rows written.
pub(super) async fn commit_cycle<D: Db>(db: &D, c: CycleCommit<'_>) -> Result<u64, StoreError> {
    let instance = c.instance;
    let bumped = if c.generation == 0 {
        db.execute(
            "INSERT INTO generation (instance, value) VALUES (?1, 1) ON CONFLICT (instance) DO NOTHING",
            &[&instance],
        )
        .await?
    } else {
        db.execute(
            "UPDATE generation SET value = value + 1 WHERE instance = ?1 AND value = ?2",
            &[&instance, &c.generation],
        )
        .await?
    };
    if bumped != 1 {
        return Err(StoreError::Conflict(instance.to_string()));
    }
    let mut written = bumped;
    if let Some(f) = c.fence {
        sources::check_fence(db, instance, f).await?;
    }
    for closed in &c.closed {
        written += db
            .execute(
                "DELETE FROM episode WHERE instance = ?1 AND jid = ?2",
                &[&instance, &closed.episode.jid],
            )
            .await?;
        written += history::keep(db, instance, closed).await?;
        written += acks::forget(db, instance, &closed.episode.jid).await?;
    }
    for (jid, at, by) in &c.told {
        written += acks::mark_told(db, instance, jid, *at, by).await?;
    }
    // In key order: each insert lands next to the last one in SQLite's B-tree. Many rows a
    // statement there: a large cycle's cost is per statement, not per row.
    let mut upserts: Vec<&Episode> = c.upserts.iter().collect();
    upserts.sort_unstable_by(|a, b| a.jid.cmp(&b.jid));
    let per_statement = D::DIALECT.upsert_rows();
    let full = upsert_sql(per_statement);
    for chunk in upserts.chunks(per_statement) {
        let rows: Vec<Written> = chunk.iter().map(|ep| Written::new(instance, ep)).collect();
        let values: Vec<&dyn Value> = rows.iter().flat_map(Written::values).collect();
        written += if chunk.len() == per_statement {
            db.execute(&full, &values).await?
        } else {
            db.execute(&upsert_sql(chunk.len()), &values).await?
        };
    }
    if let Some(s) = c.source {
        written += sources::write_source(db, instance, s).await?;
    }
    if c.forget {
        written += sources::forget(db, instance).await?;
    }
    outbox::insert(db, &c.outgoing, c.now, &mut written).await?;
    Ok(written)
}

/// The instances that have open episodes.
pub(super) async fn instances(db: &impl Db) -> Result<Vec<String>, StoreError> {
    db.rows("SELECT DISTINCT instance FROM episode", &[], |r| {
        r.string(0)
    })
    .await
}

/// Every open episode of every instance, longest waiting first, with its
/// acknowledgement.
pub(super) async fn all(db: &impl Db) -> Result<Vec<(String, Episode)>, StoreError> {
    let mut all = db
        .rows(
            &format!("SELECT instance, {EPISODE_COLUMNS} FROM episode ORDER BY started_at, jid"),
            &[],
            |r| Ok((r.string(0)?, episode_from(r, 1)?)),
        )
        .await?;
    let mut acks = acks::acks(db, None).await?;
    if !acks.is_empty() {
        for (instance, ep) in &mut all {
            ep.ack = acks.remove(&(instance.clone(), ep.jid.clone()));
        }
    }
    Ok(all)
}

/// The open episodes of `jid` in every instance (or `instance` only), with their
/// acknowledgements.
pub(super) async fn of_jid(
    db: &impl Db,
    jid: &str,
    instance: Option<&str>,
) -> Result<Vec<(String, Episode)>, StoreError> {
    let found = db
        .rows(
            &format!(
                "SELECT instance, {EPISODE_COLUMNS} FROM episode
                 WHERE jid = ?1 AND (CAST(?2 AS TEXT) IS NULL OR instance = ?2) ORDER BY instance"
            ),
            &[&jid, &instance],
            |r| Ok((r.string(0)?, episode_from(r, 1)?)),
        )
        .await?;
    let mut out = Vec::with_capacity(found.len());
    for (instance, mut ep) in found {
        ep.ack = acks::acks(db, Some(&instance))
            .await?
            .remove(&(instance.clone(), jid.to_string()));
        out.push((instance, ep));
    }
    Ok(out)
}

/// One open episode, with its acknowledgement.
pub(super) async fn one(
    db: &impl Db,
    instance: &str,
    jid: &str,
) -> Result<Option<Episode>, StoreError> {
    let found = db
        .row(
            &format!("SELECT {EPISODE_COLUMNS} FROM episode WHERE instance = ?1 AND jid = ?2"),
            &[&instance, &jid],
            |r| episode_from(r, 0),
        )
        .await?;
    let Some(mut ep) = found else {
        return Ok(None);
    };
    ep.ack = acks::acks(db, Some(instance))
        .await?
        .remove(&(instance.to_string(), jid.to_string()));
    Ok(Some(ep))
}

/// An episode from `EPISODE_COLUMNS` starting at column `at`.
fn episode_from(r: &dyn Row, at: usize) -> Result<Episode, StoreError> {
    let count = r.u32(at + 9)?;
    let (fired, legacy_fired) = match r.opt_string(at + 12)? {
        Some(text) => (parse_list(&text)?, None),
        None => (Vec::new(), (count > 0).then_some(count)),
    };
    Ok(Episode {
        jid: r.string(at)?,
        name: r.opt_string(at + 1)?,
        started_at: r.i64(at + 2)?,
        unread: r.opt_i64(at + 3)?,
        last_message: if r.bool(at + 8)? {
            Some(Preview {
                id: r.opt_string(at + 4)?,
                body: r.opt_string(at + 5)?,
                timestamp: r.opt_i64(at + 6)?,
                has_media: r.bool(at + 7)?,
            })
        } else {
            None
        },
        fired,
        notified: parse_list(r.str(at + 13)?)?,
        last_fired_at: r.opt_i64(at + 10)?,
        nudged: r.bool(at + 11)?,
        missing: r.u32(at + 14)?,
        fingerprint: r.i64(at + 15)? as u64,
        quiet_until: r.i64(at + 16)?.max(0),
        legacy_fired,
        history_pending: r.i64(at + 16)? == HISTORY_PENDING,
        ack: None,
    })
}

/// `quiet_until` as stored: an episode whose history is still to be read (section 2,
/// the first unanswered message) is stored as [`HISTORY_PENDING`], a value no instant
/// takes. Such an episode is never quiet either way (a cycle must see it to read it), so
/// the one column says both, and no schema change was needed for it.
fn stored_quiet_until(ep: &Episode) -> i64 {
    if ep.history_pending {
        HISTORY_PENDING
    } else {
        ep.quiet_until
    }
}

/// See [`stored_quiet_until`]: negative, so "now < quiet_until" never holds for it.
const HISTORY_PENDING: i64 = -1;
