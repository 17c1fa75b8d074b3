//! Mutes: chats that page nobody until a time.

use super::db::Db;
use super::{Mute, StoreError};

pub(super) async fn mute(
    db: &impl Db,
    jid: &str,
    until: i64,
    reason: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO mute (jid, until, reason, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (jid) DO UPDATE SET until = excluded.until, reason = excluded.reason,
                                        created_at = excluded.created_at",
        &[&jid, &until, &reason, &now],
    )
    .await?;
    // A cycle that read the mutes before this one must not commit what it planned (a tier
    // the mute holds): every instance's generation moves, and such a cycle is dropped and
    // runs again. (Found by the simulator, seed 320074: a mute while a cycle was paused
    // between its plan and its commit; acknowledgements do the same for their instance.)
    db.execute("UPDATE generation SET value = value + 1", &[])
        .await?;
    Ok(())
}

/// `true` when a mute was removed.
pub(super) async fn unmute(db: &impl Db, jid: &str) -> Result<bool, StoreError> {
    Ok(db
        .execute("DELETE FROM mute WHERE jid = ?1", &[&jid])
        .await?
        > 0)
}

/// Mutes still in force at `now`, soonest to end first.
pub(super) async fn mutes(db: &impl Db, now: i64) -> Result<Vec<Mute>, StoreError> {
    db.rows(
        "SELECT jid, until, reason FROM mute WHERE until > ?1 ORDER BY until, jid",
        &[&now],
        |r| {
            Ok(Mute {
                jid: r.string(0)?,
                until: r.i64(1)?,
                reason: r.opt_string(2)?,
            })
        },
    )
    .await
}
