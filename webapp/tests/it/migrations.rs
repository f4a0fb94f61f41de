//! Instances starting together against one database: the embedded migrations run under
//! sqlx's PostgreSQL advisory lock, so each is applied once and nobody fails.

use std::time::Duration;

use webapp::config::DatabaseSource;
use webapp::db::{Db, migrator};

use crate::common::{admin_connection, eventually, settings};

async fn db_for(url: &str) -> Db {
    let s = settings(url);
    let secrets = aws_sdk_secretsmanager::Client::new(&testkit::aws_config().await);
    Db::new(&DatabaseSource::Url(url.to_string()), &s.pool, secrets)
        .await
        .expect("pool")
}

/// The lock sqlx's migrator takes: `pg_advisory_lock(0x3d32ad9e * crc32(database name))`.
fn migrator_lock_id(database: &str) -> i64 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32ad9e * (CRC.checksum(database.as_bytes()) as i64)
}

#[tokio::test]
async fn several_instances_migrating_at_once_all_succeed_once() {
    let url = testkit::fresh_database().await.expect("fresh database");
    let mut dbs = Vec::new();
    for _ in 0..4 {
        dbs.push(db_for(&url).await);
    }
    let results = futures::future::join_all(dbs.iter().map(|db| db.migrate())).await;
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    let mut conn = admin_connection(&url).await;
    let (applied,): (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(
        applied as usize,
        migrator().await.expect("migrations").iter().count()
    );
}

/// While someone holds the migrator's advisory lock, a starting instance waits for it (seen as
/// an ungranted advisory lock) and creates nothing; once released, it migrates.
#[tokio::test]
async fn migration_waits_for_the_advisory_lock() {
    let url = testkit::fresh_database().await.expect("fresh database");
    let name = url.rsplit('/').next().expect("db name").to_string();
    let mut holder = admin_connection(&url).await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(migrator_lock_id(&name))
        .execute(&mut holder)
        .await
        .expect("take the lock");

    let db = db_for(&url).await;
    let migrating = tokio::spawn(async move { db.migrate().await });
    let observer = crate::common::observer_pool(&url).await;
    eventually("the migrator to wait on the advisory lock", Duration::from_secs(20), || {
        let observer = observer.clone();
        async move {
            let (waiting,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                 WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()",
            )
            .fetch_one(&observer)
            .await
            .expect("pg_locks");
            (waiting > 0).then_some(())
        }
    })
    .await;
    let (users_table,): (Option<String>,) = sqlx::query_as("SELECT to_regclass('users')::text")
        .fetch_one(&observer)
        .await
        .expect("regclass");
    assert_eq!(
        users_table, None,
        "nothing is created while the lock is held"
    );
    assert!(!migrating.is_finished());

    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(migrator_lock_id(&name))
        .execute(&mut holder)
        .await
        .expect("release the lock");
    migrating
        .await
        .expect("task")
        .expect("migrates after the lock is released");
    let (users_table,): (Option<String>,) = sqlx::query_as("SELECT to_regclass('users')::text")
        .fetch_one(&observer)
        .await
        .expect("regclass");
    assert_eq!(users_table.as_deref(), Some("users"));
}
