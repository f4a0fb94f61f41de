//! The sandbox database against real PostgreSQL: synchronous replication, a silent standby,
//! a silent primary (automatic failover with fencing) and a manual failover. Every test builds
//! its own cluster in a fresh directory on free ports. PostgreSQL's server programs must be
//! installed (`scripts/setup` does it); as root the nodes run as the `postgres` user.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use provision::sandbox::db::{
    ClusterStatus, DbCluster, DbConfig, DbRole, DbStatus, FailoverCause, NodeSignal,
    ReplicationMode, kill_stale_servers, wait_for_status,
};
use provision::sandbox::process::process_tree;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

const LIMIT: Duration = Duration::from_secs(90);

async fn start(dir: &tempfile::TempDir, azs: &[&str]) -> DbCluster {
    let mut config = DbConfig::new(
        dir.path().join("db"),
        azs.iter().map(|a| a.to_string()).collect(),
    );
    config.check_interval = Duration::from_millis(200);
    config.probe_timeout = Duration::from_millis(500);
    config.detection_time = Duration::from_secs(1);
    DbCluster::start(config).await.unwrap_or_else(|e| {
        panic!("starting the sandbox database (needs PostgreSQL, see scripts/setup): {e}")
    })
}

async fn connect(address: SocketAddr) -> Result<PgConnection, sqlx::Error> {
    let options = PgConnectOptions::new_without_pgpass()
        .host(&address.ip().to_string())
        .port(address.port())
        .username("postgres")
        .database("postgres");
    match tokio::time::timeout(Duration::from_secs(5), options.connect()).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

async fn create_table(cluster: &DbCluster) {
    let mut conn = connect(cluster.endpoint())
        .await
        .expect("connecting through the endpoint");
    sqlx::query("CREATE TABLE acks (id bigint PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .expect("creating the table");
}

/// Inserts `id` through the endpoint on a fresh connection; Ok means the commit was acknowledged.
async fn insert(endpoint: SocketAddr, id: i64) -> Result<(), sqlx::Error> {
    let work = async {
        let mut conn = connect(endpoint).await?;
        sqlx::query("INSERT INTO acks (id) VALUES ($1)")
            .bind(id)
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(10), work).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

/// Retries `insert` until it is acknowledged (the endpoint may be failing over).
async fn insert_eventually(endpoint: SocketAddr, id: i64) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match insert(endpoint, id).await {
            Ok(()) => return,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => return,
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("insert {id} never succeeded: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn stored_ids(address: SocketAddr) -> Vec<i64> {
    let mut conn = connect(address).await.expect("connecting to read back");
    sqlx::query_scalar("SELECT id FROM acks ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("reading the table")
}

async fn wait(
    cluster: &DbCluster,
    what: &str,
    condition: impl FnMut(&DbStatus) -> bool,
) -> DbStatus {
    wait_for_status(cluster, LIMIT, condition)
        .await
        .unwrap_or_else(|last| panic!("waiting for {what}; last status: {last:#?}"))
}

/// Signals each process individually (a fault injector that remembered the pids).
fn signal_each(pids: &[u32], signal: Signal) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid as i32), signal);
    }
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// A writer that keeps inserting through the endpoint and records every acknowledged id.
struct Writer {
    acknowledged: Arc<Mutex<Vec<i64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(endpoint: SocketAddr, first: i64) -> Writer {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let acks = acknowledged.clone();
        let task = tokio::spawn(async move {
            let mut id = first;
            loop {
                if insert(endpoint, id).await.is_ok() {
                    acks.lock().expect("ack list").push(id);
                }
                // A failed attempt may still have committed; never reuse its id.
                id += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Writer { acknowledged, task }
    }

    fn count(&self) -> usize {
        self.acknowledged.lock().expect("ack list").len()
    }

    async fn wait_for_more(&self, more: usize) {
        let target = self.count() + more;
        let deadline = tokio::time::Instant::now() + LIMIT;
        while self.count() < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "writes did not resume"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(self) -> Vec<i64> {
        self.task.abort();
        self.acknowledged.lock().expect("ack list").clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_synchronous_and_replicates_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = start(&dir, &["az-a", "az-b", "az-c"]).await;
    let status = cluster.status();
    assert!(status.is_synchronous(), "{status:#?}");
    let primary = status.primary().expect("a primary").clone();
    let standby = status.standby().expect("a standby").clone();
    assert_eq!(primary.az, "az-a");
    assert_eq!(standby.az, "az-b");
    assert_eq!(primary.address.ip().to_string(), "127.0.1.250");
    assert_eq!(standby.address.ip().to_string(), "127.0.2.250");
    assert!(cluster.endpoint().ip().is_loopback());

    create_table(&cluster).await;
    insert(cluster.endpoint(), 7)
        .await
        .expect("a commit through the endpoint");

    // Through the endpoint we reach the primary.
    let mut conn = connect(cluster.endpoint()).await.expect("endpoint");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert!(!in_recovery);
    let sync: String = sqlx::query_scalar("SELECT sync_state FROM pg_stat_replication")
        .fetch_one(&mut conn)
        .await
        .expect("the standby streams");
    assert_eq!(sync, "sync");

    // The commit is on the standby.
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let seen = connect(standby.address).await.ok();
        if let Some(mut standby_conn) = seen {
            let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM acks")
                .fetch_all(&mut standby_conn)
                .await
                .unwrap_or_default();
            if ids == vec![7] {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the commit never reached the standby"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A standby refuses writes.
    let mut standby_conn = connect(standby.address).await.expect("standby");
    let refused = sqlx::query("INSERT INTO acks (id) VALUES (8)")
        .execute(&mut standby_conn)
        .await;
    assert!(refused.is_err(), "a standby accepted a write");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_standby_never_blocks_commits_and_is_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = start(&dir, &["az-a", "az-b", "az-c"]).await;
    create_table(&cluster).await;
    let old = cluster.status().standby().expect("a standby").clone();

    let old_tree = process_tree(old.pid.expect("pid"));
    assert!(
        old_tree.len() > 2,
        "a standby runs a postmaster and its children: {old_tree:?}"
    );
    cluster
        .signal_node(&old.id, NodeSignal::Stop)
        .expect("stopping the standby");
    // Commits go on: each one is acknowledged (at worst after the detection time).
    for id in 0..20 {
        insert_eventually(cluster.endpoint(), id).await;
    }
    let status = wait(&cluster, "a replacement standby, synchronous", |s| {
        s.standby().is_some_and(|n| n.id != old.id) && s.is_synchronous()
    })
    .await;
    let replacement = status.standby().expect("a standby");
    assert_ne!(
        replacement.az, "az-a",
        "the standby shares the primary's AZ"
    );
    assert_ne!(
        replacement.az, old.az,
        "the replacement went back into the AZ that lost a node"
    );
    assert!(
        status.nodes.iter().all(|n| n.id != old.id),
        "the lost standby is still listed"
    );
    assert!(
        status.failovers.is_empty(),
        "a standby loss caused a failover"
    );
    assert_eq!(status.primary().expect("primary").az, "az-a");
    signal_each(&old_tree, Signal::SIGCONT);

    // Synchronous again: a new commit reaches the new standby.
    insert(cluster.endpoint(), 100)
        .await
        .expect("a commit after the replacement");
    let ids = stored_ids(cluster.endpoint()).await;
    assert_eq!(ids, (0..20).chain([100]).collect::<Vec<i64>>());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_primary_fails_over_without_losing_acknowledged_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = start(&dir, &["az-a", "az-b", "az-c"]).await;
    create_table(&cluster).await;
    let before = cluster.status();
    let old = before.primary().expect("a primary").clone();
    let standby = before.standby().expect("a standby").clone();

    let writer = Writer::start(cluster.endpoint(), 1);
    writer.wait_for_more(50).await;
    let old_tree = process_tree(old.pid.expect("pid"));
    assert!(
        old_tree.len() > 2,
        "a primary runs a postmaster and its children: {old_tree:?}"
    );
    cluster
        .signal_node(&old.id, NodeSignal::Stop)
        .expect("stopping the primary");

    let status = wait(&cluster, "a failover", |s| !s.failovers.is_empty()).await;
    let record = &status.failovers[0];
    assert_eq!(record.cause, FailoverCause::PrimaryUnreachable);
    assert_eq!(record.from_node, old.id);
    assert_eq!(record.to_node, standby.id);
    assert_eq!(status.primary().expect("new primary").id, standby.id);
    assert!(
        status.nodes.iter().all(|n| n.id != old.id),
        "the old primary is still listed"
    );

    // Writes resume through the same endpoint.
    writer.wait_for_more(50).await;
    // The old primary wakes up: it is fenced, and the endpoint never leads to it.
    signal_each(&old_tree, Signal::SIGCONT);
    writer.wait_for_more(20).await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while old_tree.iter().any(|pid| alive(*pid)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a process of the fenced primary lives on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acknowledged = writer.stop();

    let mut conn = connect(cluster.endpoint()).await.expect("endpoint");
    let (addr, port): (String, i32) =
        sqlx::query_as("SELECT host(inet_server_addr()), inet_server_port()")
            .fetch_one(&mut conn)
            .await
            .expect("server address");
    assert_eq!(addr, standby.address.ip().to_string());
    assert_eq!(port, i32::from(standby.address.port()));
    match connect(old.address).await {
        Err(_) => {}
        Ok(mut direct) => {
            let write = sqlx::query("INSERT INTO acks (id) VALUES (-1)")
                .execute(&mut direct)
                .await;
            assert!(write.is_err(), "the fenced primary accepted a write");
        }
    }

    let stored = stored_ids(cluster.endpoint()).await;
    let missing: Vec<i64> = acknowledged
        .iter()
        .filter(|id| stored.binary_search(id).is_err())
        .copied()
        .collect();
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
    assert!(!stored.contains(&-1));

    // A new standby is built from the new primary and replication is synchronous again.
    let status = wait(
        &cluster,
        "a new synchronous standby",
        DbStatus::is_synchronous,
    )
    .await;
    let new_standby = status.standby().expect("standby");
    assert_ne!(new_standby.id, old.id);
    assert_ne!(new_standby.az, standby.az);
    assert_eq!(status.status, ClusterStatus::Available);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_keeps_acknowledged_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = start(&dir, &["az-a", "az-b"]).await;
    create_table(&cluster).await;
    let before = cluster.status();
    let old = before.primary().expect("a primary").clone();

    let writer = Writer::start(cluster.endpoint(), 1);
    writer.wait_for_more(30).await;
    let record = cluster.failover().await.expect("a manual failover");
    assert_eq!(record.cause, FailoverCause::Manual);
    assert_eq!(record.from_node, old.id);
    assert_eq!(record.to_az, "az-b");
    writer.wait_for_more(30).await;
    let acknowledged = writer.stop();

    let status = cluster.status();
    let primary = status.primary().expect("primary");
    assert_eq!(primary.role, DbRole::Primary);
    assert_eq!(primary.az, "az-b");
    let stored = stored_ids(cluster.endpoint()).await;
    let missing: Vec<i64> = acknowledged
        .iter()
        .filter(|id| stored.binary_search(id).is_err())
        .copied()
        .collect();
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
    assert!(
        connect(old.address).await.is_err(),
        "the old primary still accepts connections"
    );

    // With two AZs the replacement standby goes back to az-a; a second failover then works.
    let status = wait(
        &cluster,
        "a new synchronous standby",
        DbStatus::is_synchronous,
    )
    .await;
    assert_eq!(status.standby().expect("standby").az, "az-a");
    assert_eq!(status.replication, ReplicationMode::Synchronous);
    let again = cluster.failover().await.expect("a second failover");
    assert_eq!(again.to_az, "az-a");
    cluster.shutdown().await;
}

/// A cluster whose owner vanished without shutting it down (its runtime gone, its handle
/// leaked) leaves servers behind; `kill_stale_servers` finds and kills them, and a new cluster
/// starts in the same directory.
#[test]
fn servers_left_by_a_crashed_owner_are_killed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let cluster = runtime.block_on(start(&dir, &["az-a", "az-b"]));
    let trees: Vec<u32> = cluster
        .status()
        .nodes
        .iter()
        .flat_map(|n| process_tree(n.pid.expect("pid")))
        .collect();
    std::mem::forget(cluster);
    drop(runtime);
    assert!(
        trees.iter().any(|pid| alive(*pid)),
        "nothing was left running"
    );

    assert_eq!(kill_stale_servers(&dir.path().join("db")), 2);
    let deadline = std::time::Instant::now() + LIMIT;
    while trees.iter().any(|pid| alive(*pid)) {
        assert!(
            std::time::Instant::now() < deadline,
            "a stale server lives on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let again = start(&dir, &["az-a", "az-b"]).await;
        assert!(again.status().is_synchronous());
        again.shutdown().await;
    });
}
