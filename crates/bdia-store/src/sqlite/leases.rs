//! Visitor-group leases, shared secrets and node heartbeats.
//!
//! A lease is one `group_leases` row per group: holder, epoch, expiry (unix
//! milliseconds on the database clock, [`NOW_MS`]). [`claim_groups`] takes
//! free groups in one `IMMEDIATE` transaction (SQLite's single writer is
//! what keeps two claimers apart), moving each epoch up and voiding the
//! group's `PROCESSING` run. Every write a lease holder makes to a group's
//! files checks the lease in its own transaction ([`check_lease`]).

use rusqlite::{params, Connection};

use super::groups::PAUSED_FILTER;
use super::{commit, exec, query_all, query_one, query_opt, write_tx};
use crate::common::check_holder;
use crate::{FileStatus, GroupLease, GroupRef, LeaseClaim, StoreResult};

/// The database clock in unix milliseconds.
pub(super) const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// Fails with [`crate::StoreError::Fenced`] unless `lease` is the group's current
/// lease (same holder and epoch).
pub(super) fn check_lease(conn: &Connection, lease: &GroupLease) -> StoreResult<()> {
    let current: Option<(Option<String>, i64)> = query_opt(
        conn,
        "check a group lease",
        "SELECT node_id, epoch FROM group_leases WHERE company_id = ?1 AND visitor_group_id = ?2",
        params![lease.group.company_id, lease.group.visitor_group_id],
        |r| Ok((r.get("node_id")?, r.get("epoch")?)),
    )?;
    check_holder(lease, current)
}

pub(super) fn claim_groups(
    conn: &mut Connection,
    node_id: &str,
    limit: u32,
    lease_ms: u64,
) -> StoreResult<Vec<GroupLease>> {
    let tx = write_tx(conn, "begin a lease claim")?;
    let now: i64 = query_one(
        &tx,
        "read the database clock",
        &format!("SELECT {NOW_MS} AS now"),
        [],
        |r| r.get("now"),
    )?;
    let free = query_all(
        &tx,
        "list claimable groups",
        &format!(
            "SELECT f.company_id, f.visitor_group_id, MIN(f.seq) AS first FROM files f \
         LEFT JOIN group_leases l ON l.company_id = f.company_id \
           AND l.visitor_group_id = f.visitor_group_id \
         WHERE f.status IN (?1, ?2) \
           AND (l.node_id IS NULL OR l.expires_ms <= ?4) AND {PAUSED_FILTER} \
           AND NOT EXISTS (SELECT 1 FROM files g WHERE g.company_id = f.company_id \
             AND g.visitor_group_id = f.visitor_group_id AND g.status = ?3) \
         GROUP BY f.company_id, f.visitor_group_id \
         ORDER BY COALESCE(MAX(l.expires_ms), 0), first LIMIT ?5"
        ),
        params![
            FileStatus::Uploaded.as_str(),
            FileStatus::Processing.as_str(),
            FileStatus::Error.as_str(),
            now,
            limit as i64
        ],
        |r| {
            Ok(GroupRef {
                company_id: r.get("company_id")?,
                visitor_group_id: r.get("visitor_group_id")?,
            })
        },
    )?;
    let expires = now.saturating_add(lease_ms.min(i64::MAX as u64) as i64);
    let mut out = Vec::with_capacity(free.len());
    for group in free {
        let before: Option<(i64, i64)> = query_opt(
            &tx,
            "read a group lease",
            "SELECT epoch, expires_ms FROM group_leases \
             WHERE company_id = ?1 AND visitor_group_id = ?2",
            params![group.company_id, group.visitor_group_id],
            |r| Ok((r.get("epoch")?, r.get("expires_ms")?)),
        )?;
        let epoch = before.map_or(1, |(e, _)| e + 1);
        exec(
            &tx,
            "claim a group lease",
            "INSERT INTO group_leases (company_id, visitor_group_id, node_id, epoch, expires_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (company_id, visitor_group_id) DO UPDATE \
             SET node_id = excluded.node_id, epoch = excluded.epoch, expires_ms = excluded.expires_ms",
            params![group.company_id, group.visitor_group_id, node_id, epoch, expires],
        )?;
        exec(
            &tx,
            "record a lease claim",
            "INSERT INTO lease_claims (company_id, visitor_group_id, epoch, node_id, claimed_ms, \
             previous_expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                group.company_id,
                group.visitor_group_id,
                epoch,
                node_id,
                now,
                before.map(|(_, x)| x)
            ],
        )?;
        exec(
            &tx,
            "void the run of an earlier lease",
            "UPDATE files SET status = ?3, processing_start_date = NULL, \
             file_reader_complete_date = NULL \
             WHERE company_id = ?1 AND visitor_group_id = ?2 AND status = ?4",
            params![
                group.company_id,
                group.visitor_group_id,
                FileStatus::Uploaded.as_str(),
                FileStatus::Processing.as_str()
            ],
        )?;
        out.push(GroupLease {
            group,
            node_id: node_id.to_string(),
            epoch: epoch as u64,
        });
    }
    commit(tx, "commit a lease claim")?;
    Ok(out)
}

pub(super) fn renew_leases(
    conn: &mut Connection,
    leases: &[GroupLease],
    lease_ms: u64,
) -> StoreResult<Vec<bool>> {
    let tx = write_tx(conn, "begin a lease renewal")?;
    let mut out = Vec::with_capacity(leases.len());
    for l in leases {
        let n = exec(
            &tx,
            "renew a group lease",
            &format!(
                "UPDATE group_leases SET expires_ms = {NOW_MS} + ?5 \
                 WHERE company_id = ?1 AND visitor_group_id = ?2 AND node_id = ?3 AND epoch = ?4"
            ),
            params![
                l.group.company_id,
                l.group.visitor_group_id,
                l.node_id,
                l.epoch as i64,
                lease_ms.min(i64::MAX as u64) as i64
            ],
        )?;
        out.push(n == 1);
    }
    commit(tx, "commit a lease renewal")?;
    Ok(out)
}

pub(super) fn release_lease(conn: &Connection, lease: &GroupLease) -> StoreResult<bool> {
    let n = exec(
        conn,
        "release a group lease",
        &format!(
            "UPDATE group_leases SET node_id = NULL, expires_ms = MIN(expires_ms, {NOW_MS}) \
             WHERE company_id = ?1 AND visitor_group_id = ?2 AND node_id = ?3 AND epoch = ?4"
        ),
        params![
            lease.group.company_id,
            lease.group.visitor_group_id,
            lease.node_id,
            lease.epoch as i64
        ],
    )?;
    Ok(n == 1)
}

pub(super) fn release_node_leases(conn: &Connection, node_id: &str) -> StoreResult<u64> {
    let n = exec(
        conn,
        "release a node's leases",
        &format!(
            "UPDATE group_leases SET node_id = NULL, expires_ms = MIN(expires_ms, {NOW_MS}) \
             WHERE node_id = ?1"
        ),
        params![node_id],
    )?;
    Ok(n as u64)
}

/// Releases every lease (a single node's start).
pub(super) fn release_all_leases(conn: &Connection) -> StoreResult<u64> {
    let n = exec(
        conn,
        "release every lease",
        &format!(
            "UPDATE group_leases SET node_id = NULL, expires_ms = MIN(expires_ms, {NOW_MS}) \
             WHERE node_id IS NOT NULL"
        ),
        [],
    )?;
    Ok(n as u64)
}

pub(super) fn lease_claims(conn: &Connection, group: &GroupRef) -> StoreResult<Vec<LeaseClaim>> {
    query_all(
        conn,
        "list lease claims",
        "SELECT epoch, node_id, claimed_ms, previous_expires_ms FROM lease_claims \
         WHERE company_id = ?1 AND visitor_group_id = ?2 ORDER BY epoch",
        params![group.company_id, group.visitor_group_id],
        |r| {
            Ok(LeaseClaim {
                epoch: r.get::<_, i64>("epoch")? as u64,
                node_id: r.get("node_id")?,
                claimed_ms: r.get("claimed_ms")?,
                previous_expires_ms: r.get("previous_expires_ms")?,
            })
        },
    )
}

pub(super) fn shared_secret(
    conn: &mut Connection,
    name: &str,
    candidate: &str,
) -> StoreResult<String> {
    let tx = write_tx(conn, "begin a shared secret lookup")?;
    exec(
        &tx,
        "store a shared secret",
        "INSERT INTO shared_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, candidate],
    )?;
    let value: String = query_one(
        &tx,
        "read a shared secret",
        "SELECT value FROM shared_secrets WHERE name = ?1",
        params![name],
        |r| r.get("value"),
    )?;
    commit(tx, "commit a shared secret")?;
    Ok(value)
}

pub(super) fn node_heartbeat(
    conn: &mut Connection,
    node_id: &str,
    ttl_ms: u64,
) -> StoreResult<u32> {
    let tx = write_tx(conn, "begin a node heartbeat")?;
    exec(
        &tx,
        "record a node heartbeat",
        &format!(
            "INSERT INTO nodes (node_id, expires_ms) VALUES (?1, {NOW_MS} + ?2) \
             ON CONFLICT (node_id) DO UPDATE SET expires_ms = excluded.expires_ms"
        ),
        params![node_id, ttl_ms.min(i64::MAX as u64) as i64],
    )?;
    // Nodes gone for a day are forgotten.
    exec(
        &tx,
        "forget old nodes",
        &format!("DELETE FROM nodes WHERE expires_ms < {NOW_MS} - 86400000"),
        [],
    )?;
    let live: i64 = query_one(
        &tx,
        "count live nodes",
        &format!("SELECT COUNT(*) AS live FROM nodes WHERE expires_ms > {NOW_MS}"),
        [],
        |r| r.get("live"),
    )?;
    commit(tx, "commit a node heartbeat")?;
    Ok(live.max(1) as u32)
}
