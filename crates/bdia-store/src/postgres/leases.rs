//! Visitor-group leases, shared secrets and node heartbeats.
//!
//! A group's lease is on its `visitor_groups` row: holder (`node_id`),
//! `epoch`, `expires_ms` (unix milliseconds on the database clock,
//! [`NOW_MS`]). [`claim_groups`] locks free groups `FOR UPDATE SKIP
//! LOCKED`: nodes claiming at once each lock different rows, and none waits
//! for another. It then reads the clock (after its locks, so a release or
//! renewal committed before is never in its future), moves each epoch up,
//! records the claim and voids the group's `PROCESSING` run, in one
//! transaction.
//!
//! Fencing: every write a lease holder makes to a group's files reads the
//! group's row under a lock first ([`lock_holder`]: `FOR KEY SHARE` for
//! completion, failure and requeue, `FOR UPDATE` for a claim) and checks
//! that the lease is still current. A takeover needs `FOR UPDATE` on that
//! row, which waits for (or, in a claim, skips) those writes: a takeover
//! and a fenced write of one group never interleave. `FOR KEY SHARE` does
//! not block uploads of the group (their upsert of `last_seq` changes no
//! key), so a long completion never holds uploads up.
//!
//! Lock order, everywhere: the group's row, then file rows; so two of these
//! transactions never wait for each other in a cycle.

use deadpool_postgres::GenericClient;

use super::{db, exec, map_rows, query_all, query_one, query_opt};
use crate::{FileStatus, GroupLease, GroupRef, LeaseClaim, StoreResult};

/// The database clock in unix milliseconds. `clock_timestamp()`, not
/// `now()` (the start of the transaction): a value read after waiting for
/// a lock is the time after the wait.
pub(super) const NOW_MS: &str = "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// A duration in milliseconds as stored.
fn millis(ms: u64) -> i64 {
    ms.min(i64::MAX as u64) as i64
}

/// How a fenced write locks its group's row.
#[derive(Clone, Copy)]
pub(super) enum GroupLock {
    /// A claim of the group's next file: excludes other claims, uploads
    /// and takeovers.
    Update,
    /// Completion, failure, requeue: excludes takeovers only.
    KeyShare,
}

/// Locks a group's row and returns its (holder, epoch); `None` when the
/// group has no row (it never had a file to process).
pub(super) async fn lock_holder(
    c: &impl GenericClient,
    group: &GroupRef,
    mode: GroupLock,
) -> StoreResult<Option<(Option<String>, i64)>> {
    let sql = match mode {
        GroupLock::Update => {
            "SELECT node_id, epoch FROM visitor_groups \
             WHERE company_id = $1 AND visitor_group_id = $2 FOR UPDATE"
        }
        GroupLock::KeyShare => {
            "SELECT node_id, epoch FROM visitor_groups \
             WHERE company_id = $1 AND visitor_group_id = $2 FOR KEY SHARE"
        }
    };
    let row = query_opt(
        c,
        "lock a group",
        sql,
        &[&group.company_id, &group.visitor_group_id],
    )
    .await?;
    row.map(|r| Ok((r.try_get("node_id")?, r.try_get("epoch")?)))
        .transpose()
        .map_err(db("lock a group"))
}

pub(super) async fn claim_groups(
    conn: &mut deadpool_postgres::Object,
    node_id: &str,
    limit: u32,
    lease_ms: u64,
) -> StoreResult<Vec<GroupLease>> {
    let tx = conn
        .transaction()
        .await
        .map_err(db("begin a lease claim"))?;
    // Groups with a file to process and none stopped on an error, whose
    // lease is free or ran out, least recently held first (then oldest
    // waiting file): a round robin over the groups; rows another
    // transaction holds (a claim, an upload commit, a fenced write) are
    // skipped.
    let free = query_all(
        &tx,
        "lock claimable groups",
        &format!(
            "SELECT vg.company_id, vg.visitor_group_id, vg.epoch, vg.expires_ms \
             FROM visitor_groups vg \
             JOIN (SELECT company_id, visitor_group_id, MIN(seq) AS first FROM files \
                   WHERE status IN ($1, $2) GROUP BY company_id, visitor_group_id) w \
               ON w.company_id = vg.company_id AND w.visitor_group_id = vg.visitor_group_id \
             WHERE (vg.node_id IS NULL OR vg.expires_ms <= {NOW_MS}) AND NOT vg.paused \
               AND NOT EXISTS (SELECT 1 FROM files g WHERE g.company_id = vg.company_id \
                 AND g.visitor_group_id = vg.visitor_group_id AND g.status = $3) \
             ORDER BY vg.expires_ms, w.first LIMIT $4 \
             FOR UPDATE OF vg SKIP LOCKED"
        ),
        &[
            &FileStatus::Uploaded.as_str(),
            &FileStatus::Processing.as_str(),
            &FileStatus::Error.as_str(),
            &i64::from(limit),
        ],
    )
    .await?;
    let free = map_rows(free, "lock claimable groups", |r| {
        Ok((
            GroupRef {
                company_id: r.try_get("company_id")?,
                visitor_group_id: r.try_get("visitor_group_id")?,
            },
            r.try_get::<_, i64>("epoch")?,
            r.try_get::<_, i64>("expires_ms")?,
        ))
    })?;
    // The list was read from a snapshot taken before the locks: a group
    // whose last file completed (or failed) in between is dropped. Nothing
    // that changes that can commit now: uploads, claims and fenced writes
    // of these groups wait for this transaction's locks.
    let free = still_claimable(&tx, free).await?;
    if free.is_empty() {
        return Ok(Vec::new());
    }
    let now: i64 = query_one(
        &tx,
        "read the database clock",
        &format!("SELECT {NOW_MS} AS now"),
        &[],
    )
    .await?
    .try_get("now")
    .map_err(db("read the database clock"))?;
    let expires = now.saturating_add(millis(lease_ms));
    let mut out = Vec::with_capacity(free.len());
    for (group, before, before_expires) in free {
        let epoch = before + 1;
        let (c, g) = (&group.company_id, &group.visitor_group_id);
        exec(
            &tx,
            "claim a group lease",
            "UPDATE visitor_groups SET node_id = $3, epoch = $4, expires_ms = $5 \
             WHERE company_id = $1 AND visitor_group_id = $2",
            &[c, g, &node_id, &epoch, &expires],
        )
        .await?;
        // The first claim follows no lease.
        let previous = (before > 0).then_some(before_expires);
        exec(
            &tx,
            "record a lease claim",
            "INSERT INTO lease_claims (company_id, visitor_group_id, epoch, node_id, \
             claimed_ms, previous_expires_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            &[c, g, &epoch, &node_id, &now, &previous],
        )
        .await?;
        exec(
            &tx,
            "void the run of an earlier lease",
            "UPDATE files SET status = $3, processing_start_date = NULL, \
             file_reader_complete_date = NULL \
             WHERE company_id = $1 AND visitor_group_id = $2 AND status = $4",
            &[
                c,
                g,
                &FileStatus::Uploaded.as_str(),
                &FileStatus::Processing.as_str(),
            ],
        )
        .await?;
        out.push(GroupLease {
            group,
            node_id: node_id.to_string(),
            epoch: epoch as u64,
        });
    }
    tx.commit().await.map_err(db("commit a lease claim"))?;
    Ok(out)
}

/// The groups of `locked` that still have a file to process and none
/// stopped on an error, in the same order.
async fn still_claimable(
    c: &impl GenericClient,
    locked: Vec<(GroupRef, i64, i64)>,
) -> StoreResult<Vec<(GroupRef, i64, i64)>> {
    if locked.is_empty() {
        return Ok(locked);
    }
    let companies: Vec<&str> = locked.iter().map(|(g, ..)| g.company_id.as_str()).collect();
    let groups: Vec<&str> = locked
        .iter()
        .map(|(g, ..)| g.visitor_group_id.as_str())
        .collect();
    let rows = query_all(
        c,
        "recheck claimable groups",
        "SELECT k.i FROM unnest($1::text[], $2::text[]) WITH ORDINALITY \
           AS k(company_id, visitor_group_id, i) \
         WHERE EXISTS (SELECT 1 FROM files f WHERE f.company_id = k.company_id \
             AND f.visitor_group_id = k.visitor_group_id AND f.status IN ($3, $4)) \
           AND NOT EXISTS (SELECT 1 FROM files f WHERE f.company_id = k.company_id \
             AND f.visitor_group_id = k.visitor_group_id AND f.status = $5)",
        &[
            &companies,
            &groups,
            &FileStatus::Uploaded.as_str(),
            &FileStatus::Processing.as_str(),
            &FileStatus::Error.as_str(),
        ],
    )
    .await?;
    let keep: std::collections::HashSet<i64> =
        map_rows(rows, "recheck claimable groups", |r| r.try_get("i"))?
            .into_iter()
            .collect();
    Ok(locked
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(&(*i as i64 + 1)))
        .map(|(_, g)| g)
        .collect())
}

pub(super) async fn renew_leases(
    c: &impl GenericClient,
    leases: &[GroupLease],
    lease_ms: u64,
) -> StoreResult<Vec<bool>> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let companies: Vec<&str> = leases.iter().map(|l| l.group.company_id.as_str()).collect();
    let groups: Vec<&str> = leases
        .iter()
        .map(|l| l.group.visitor_group_id.as_str())
        .collect();
    let nodes: Vec<&str> = leases.iter().map(|l| l.node_id.as_str()).collect();
    let epochs: Vec<i64> = leases.iter().map(|l| l.epoch as i64).collect();
    // One statement for all: each row is extended only while it is still
    // the caller's (same node and epoch).
    let rows = query_all(
        c,
        "renew group leases",
        &format!(
            "UPDATE visitor_groups vg SET expires_ms = {NOW_MS} + $5 \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) \
               AS l(company_id, visitor_group_id, node_id, epoch) \
             WHERE vg.company_id = l.company_id AND vg.visitor_group_id = l.visitor_group_id \
               AND vg.node_id = l.node_id AND vg.epoch = l.epoch \
             RETURNING vg.company_id, vg.visitor_group_id, vg.node_id, vg.epoch"
        ),
        &[&companies, &groups, &nodes, &epochs, &millis(lease_ms)],
    )
    .await?;
    let renewed = map_rows(rows, "renew group leases", |r| {
        Ok(GroupLease {
            group: GroupRef {
                company_id: r.try_get("company_id")?,
                visitor_group_id: r.try_get("visitor_group_id")?,
            },
            node_id: r.try_get("node_id")?,
            epoch: r.try_get::<_, i64>("epoch")? as u64,
        })
    })?;
    Ok(leases.iter().map(|l| renewed.contains(l)).collect())
}

/// Frees a group's lease now (`expires_ms` no later than now).
const RELEASE: &str = "UPDATE visitor_groups SET node_id = NULL, expires_ms = LEAST(expires_ms, ";

pub(super) async fn release_lease(c: &impl GenericClient, lease: &GroupLease) -> StoreResult<bool> {
    let n = exec(
        c,
        "release a group lease",
        &format!(
            "{RELEASE}{NOW_MS}) \
             WHERE company_id = $1 AND visitor_group_id = $2 AND node_id = $3 AND epoch = $4"
        ),
        &[
            &lease.group.company_id,
            &lease.group.visitor_group_id,
            &lease.node_id,
            &(lease.epoch as i64),
        ],
    )
    .await?;
    Ok(n == 1)
}

pub(super) async fn release_node_leases(c: &impl GenericClient, node_id: &str) -> StoreResult<u64> {
    exec(
        c,
        "release a node's leases",
        &format!("{RELEASE}{NOW_MS}) WHERE node_id = $1"),
        &[&node_id],
    )
    .await
}

/// Releases every lease (a single node's start).
pub(super) async fn release_all_leases(c: &impl GenericClient) -> StoreResult<u64> {
    exec(
        c,
        "release every lease",
        &format!("{RELEASE}{NOW_MS}) WHERE node_id IS NOT NULL"),
        &[],
    )
    .await
}

pub(super) async fn lease_claims(
    c: &impl GenericClient,
    group: &GroupRef,
) -> StoreResult<Vec<LeaseClaim>> {
    let rows = query_all(
        c,
        "list lease claims",
        "SELECT epoch, node_id, claimed_ms, previous_expires_ms FROM lease_claims \
         WHERE company_id = $1 AND visitor_group_id = $2 ORDER BY epoch",
        &[&group.company_id, &group.visitor_group_id],
    )
    .await?;
    map_rows(rows, "list lease claims", |r| {
        Ok(LeaseClaim {
            epoch: r.try_get::<_, i64>("epoch")? as u64,
            node_id: r.try_get("node_id")?,
            claimed_ms: r.try_get("claimed_ms")?,
            previous_expires_ms: r.try_get("previous_expires_ms")?,
        })
    })
}

pub(super) async fn shared_secret(
    c: &impl GenericClient,
    name: &str,
    candidate: &str,
) -> StoreResult<String> {
    // Of two first stores at once, the second waits for the first's row
    // and stores nothing; the read that follows sees the first's value.
    exec(
        c,
        "store a shared secret",
        "INSERT INTO shared_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &candidate],
    )
    .await?;
    query_one(
        c,
        "read a shared secret",
        "SELECT value FROM shared_secrets WHERE name = $1",
        &[&name],
    )
    .await?
    .try_get("value")
    .map_err(db("read a shared secret"))
}

pub(super) async fn node_heartbeat(
    conn: &mut deadpool_postgres::Object,
    node_id: &str,
    ttl_ms: u64,
) -> StoreResult<u32> {
    let tx = conn
        .transaction()
        .await
        .map_err(db("begin a node heartbeat"))?;
    exec(
        &tx,
        "record a node heartbeat",
        &format!(
            "INSERT INTO nodes (node_id, expires_ms) VALUES ($1, {NOW_MS} + $2) \
             ON CONFLICT (node_id) DO UPDATE SET expires_ms = EXCLUDED.expires_ms"
        ),
        &[&node_id, &millis(ttl_ms)],
    )
    .await?;
    // Nodes gone for a day are forgotten.
    exec(
        &tx,
        "forget old nodes",
        &format!("DELETE FROM nodes WHERE expires_ms < {NOW_MS} - 86400000"),
        &[],
    )
    .await?;
    let live: i64 = query_one(
        &tx,
        "count live nodes",
        &format!("SELECT COUNT(*) AS live FROM nodes WHERE expires_ms > {NOW_MS}"),
        &[],
    )
    .await?
    .try_get("live")
    .map_err(db("count live nodes"))?;
    tx.commit().await.map_err(db("commit a node heartbeat"))?;
    Ok(live.max(1) as u32)
}
