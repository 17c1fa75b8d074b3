//! Closed episodes kept for reports, and housekeeping: what is older than its keep goes.

use super::db::Db;
use super::{Past, Pruned, StoreError, json_list, parse_list};
use crate::sla::Closed;

/// Keeps a closed episode of `instance` for reports; the rows written.
pub(super) async fn keep(db: &impl Db, instance: &str, c: &Closed) -> Result<u64, StoreError> {
    let ep = &c.episode;
    db.execute(
        // The acknowledgement as the store has it (not as the cycle read it: one made
        // while the cycle ran is kept too).
        "INSERT INTO history (instance, jid, name, started_at, ended_at, wall_seconds,
                              business_seconds, fired, notified, reason, last_fired_at,
                              acked_by, acked_at, ack_paged_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                 (SELECT by_name FROM ack WHERE instance = ?1 AND jid = ?2),
                 (SELECT first_at FROM ack WHERE instance = ?1 AND jid = ?2),
                 (SELECT paged_at FROM ack WHERE instance = ?1 AND jid = ?2))",
        &[
            &instance,
            &ep.jid,
            &ep.name,
            &ep.started_at,
            &c.ended_at,
            &(c.ended_at - ep.started_at).max(0),
            &c.age,
            &json_list(&ep.fired),
            &json_list(&ep.notified),
            &c.reason.as_str(),
            &ep.last_fired_at,
        ],
    )
    .await
}

/// Closed episodes that ended at or after `since`, oldest first.
pub(super) async fn history(
    db: &impl Db,
    since: i64,
    instance: Option<&str>,
) -> Result<Vec<Past>, StoreError> {
    db.rows(
        "SELECT instance, jid, name, started_at, ended_at, wall_seconds, business_seconds,
                fired, notified, reason, last_fired_at, acked_by, acked_at, ack_paged_at
         FROM history WHERE ended_at >= ?1 AND (CAST(?2 AS TEXT) IS NULL OR instance = ?2)
         ORDER BY ended_at, id",
        &[&since, &instance],
        |r| {
            Ok(Past {
                instance: r.string(0)?,
                jid: r.string(1)?,
                name: r.opt_string(2)?,
                started_at: r.i64(3)?,
                ended_at: r.i64(4)?,
                wall_seconds: r.i64(5)?,
                business_seconds: r.i64(6)?,
                fired: parse_list(r.str(7)?)?,
                notified: parse_list(r.str(8)?)?,
                reason: r.string(9)?,
                last_fired_at: r.opt_i64(10)?,
                acked_by: r.opt_string(11)?,
                acked_at: r.opt_i64(12)?,
                ack_paged_at: r.opt_i64(13)?,
            })
        },
    )
    .await
}

/// Removes sent notifications older than `keep_sent`, and dead ones, expired mutes and
/// closed episodes older than `keep` (a notification's document goes with it). The
/// caller runs it in one transaction.
pub(super) async fn prune(
    db: &impl Db,
    now: i64,
    keep_sent: i64,
    keep: i64,
) -> Result<Pruned, StoreError> {
    let run = async |sql: &str, before: i64| -> Result<usize, StoreError> {
        Ok(db.execute(sql, &[&before]).await? as usize)
    };
    Ok(Pruned {
        sent: run(
            "DELETE FROM outbox WHERE state = 'sent' AND done_at < ?1",
            now - keep_sent,
        )
        .await?,
        dead: run(
            "DELETE FROM outbox WHERE state = 'dead' AND done_at < ?1",
            now - keep,
        )
        .await?,
        mutes: run("DELETE FROM mute WHERE until < ?1", now - keep).await?,
        history: run("DELETE FROM history WHERE ended_at < ?1", now - keep).await?,
    })
}
