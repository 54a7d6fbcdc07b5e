//! Exports: a tenant's database in one file with its header; restored by
//! hand (`pg_restore` into a scratch database, or the SQLite file opened),
//! it holds the same rows (count and checksum); imported as a new tenant,
//! by this program or a newer one (which migrates it up), the same rows
//! again; an export from an unknown version is refused, an import whose
//! process died is never finished empty; bad input changes nothing.

use sea_orm::{ConnectionTrait, Statement};
use tenantdb::faults::Step;
use tenantdb::{DbStatus, EXPORT_MAGIC, Error, NewTenant, Tenancy, TenantRef, read_export};
use tenantdb_test_support::{PgScratch, both_backends};

use crate::support::{Backend, LEASE_EXPIRY_WAIT, TestEnv, schema_v1, schema_v2};

both_backends!(an_export_restores_to_the_same_rows);

const CHECKSUM: &str = "SELECT count(*) AS n, CAST(coalesce(sum(length(body) * id), 0) AS bigint) AS weight, \
     max(body) AS last FROM exported";

async fn an_export_restores_to_the_same_rows(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let row = env.create("exported").await;
    let tenant = TenantRef::parse("exported").unwrap();
    let conn = env.tenancy.connections().connection(&tenant).await.unwrap();
    conn.execute_unprepared("CREATE TABLE exported (id bigint PRIMARY KEY, body text NOT NULL)")
        .await
        .unwrap();
    for chunk in 0..10 {
        let values: Vec<String> = (0..100)
            .map(|i| {
                let id = chunk * 100 + i;
                format!("({id}, 'row {id} it''s')")
            })
            .collect();
        conn.execute_unprepared(&format!("INSERT INTO exported VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    drop(conn);
    let original = checksum(&env.tenancy, "exported").await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exported.tenantdb");
    let missing = env
        .tenancy
        .export_tenant(&TenantRef::parse("nobody").unwrap(), &file)
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::TenantNotFound(_)), "{missing}");
    assert!(!file.exists(), "nothing written for a bad request");

    let exported = env.tenancy.export_tenant(&tenant, &file).await.unwrap();
    assert_eq!(exported.header.slug, "exported");
    assert_eq!(exported.header.schema_version, row.schema_version);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), exported.bytes);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "an export is readable by its owner only");
    }
    let (header, offset) = read_export(&file).unwrap();
    assert_eq!(header, exported.header);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(EXPORT_MAGIC.as_bytes()));
    let body = &bytes[usize::try_from(offset).unwrap()..];
    let not_an_export = dir.path().join("plain");
    std::fs::write(&not_an_export, b"hello").unwrap();
    assert!(read_export(&not_an_export).is_err());

    let restored = match backend {
        Backend::Postgres => {
            assert!(
                body.starts_with(b"PGDMP"),
                "a pg_dump custom-format archive follows the header"
            );
            let scratch = PgScratch::new();
            let url = scratch.create_database("restored").await;
            let archive = dir.path().join("archive.dump");
            std::fs::write(&archive, body).unwrap();
            let out = std::process::Command::new("pg_restore")
                .args(["--no-owner", "--no-privileges", "--exit-on-error"])
                // libpq takes no sqlx parameters.
                .arg(format!("--dbname={}", url.split('?').next().unwrap()))
                .arg(&archive)
                .output()
                .expect("pg_restore");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let got: (i64, i64, String) = sqlx::query_as(CHECKSUM).fetch_one(&pool).await.unwrap();
            pool.close().await;
            drop(scratch);
            got
        }
        Backend::Sqlite => {
            assert!(body.starts_with(b"SQLite format 3"), "a SQLite file follows the header");
            let copy = dir.path().join("restored.db");
            std::fs::write(&copy, body).unwrap();
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", copy.display()))
                .await
                .unwrap();
            let got: (i64, i64, String) = sqlx::query_as(CHECKSUM).fetch_one(&pool).await.unwrap();
            pool.close().await;
            got
        }
    };
    assert_eq!(restored, original);

    // Imported as a new tenant: its own database, the same rows.
    let imported = env
        .tenancy
        .provisioner()
        .import_tenant(new("imported"), &file)
        .await
        .unwrap();
    assert_eq!(
        (imported.status, imported.schema_version.clone()),
        (DbStatus::Active, row.schema_version.clone())
    );
    assert_ne!(imported.database_name, row.database_name);
    assert_eq!(checksum(&env.tenancy, "imported").await, original);
    // From a version this program does not have: refused, nothing made.
    let future = dir.path().join("future.tenantdb");
    let mut header = exported.header.clone();
    header.schema_version = Some("m9999_from_the_future".into());
    let mut forged = format!("{EXPORT_MAGIC}\n{}\n", serde_json::to_string(&header).unwrap()).into_bytes();
    forged.extend_from_slice(body);
    std::fs::write(&future, forged).unwrap();
    let refused = env
        .tenancy
        .provisioner()
        .import_tenant(new("future"), &future)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("m9999_from_the_future"), "{refused}");
    assert!(env.tenancy.tenant(&TenantRef::parse("future").unwrap()).await.is_err());
    // An import whose process died: taken over, it fails (the file is not
    // at hand) rather than finish as an empty tenant.
    env.tenancy.provisioner().crash_after(Step::RoleCreated);
    let died = env
        .tenancy
        .provisioner()
        .import_tenant(new("halfway"), &file)
        .await
        .unwrap_err();
    assert!(matches!(died, Error::Interrupted { .. }), "{died}");
    tokio::time::sleep(LEASE_EXPIRY_WAIT).await;
    env.tenancy.provisioner().reconcile().await.unwrap();
    let halfway = env.tenancy.tenant(&TenantRef::parse("halfway").unwrap()).await.unwrap();
    let halfway = halfway.database.unwrap();
    assert_eq!(halfway.status, DbStatus::Failed, "{halfway:?}");
    assert!(halfway.error_message.unwrap_or_default().contains("import"));
    env.tenancy.close().await;
    // By a newer program (alone: instances share the server's budget):
    // migrated up to its version.
    let newer = env.second(schema_v2()).await;
    let upgraded = newer.provisioner().import_tenant(new("upgraded"), &file).await.unwrap();
    assert_eq!(upgraded.schema_version, schema_v2().latest_version());
    assert_ne!(upgraded.schema_version, row.schema_version, "migrated up");
    assert_eq!(checksum(&newer, "upgraded").await, original);
    newer.close().await;
}

fn new(slug: &str) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        ..Default::default()
    }
}

/// Rows, a weight and the last body of the tenant's `exported` table.
async fn checksum(tenancy: &Tenancy, slug: &str) -> (i64, i64, String) {
    let conn = tenancy
        .connections()
        .connection(&TenantRef::parse(slug).unwrap())
        .await
        .unwrap();
    let got = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), CHECKSUM))
        .await
        .unwrap()
        .unwrap();
    (
        got.try_get::<i64>("", "n").unwrap(),
        got.try_get::<i64>("", "weight").unwrap(),
        got.try_get::<String>("", "last").unwrap(),
    )
}
