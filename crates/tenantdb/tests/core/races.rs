//! Concurrent operations on the same tenant, slug or database name: each
//! race ends with at most one winner, the loser gets a clear conflict (never
//! a server error), no row is left in a working status, and `doctor` finds
//! nothing. Each race runs from two `Tenancy` values (two "processes" with
//! their own lease owners) started together, several rounds.

use std::future::Future;

use tenantdb::DoctorOptions;
use tenantdb::Error;
use tenantdb::{DbStatus, NewTenant, Tenancy, TenantRef};
use tenantdb::{ReconcileOutcome, internal::Step};
use tenantdb_test_support::both_backends;

use crate::support::{Backend, LEASE_EXPIRY_WAIT, TestEnv, schema_v1, schema_v2};

both_backends!(
    creates_of_one_slug_race_to_one_winner,
    creates_of_one_database_name_race_to_one_winner,
    a_rename_and_a_create_of_one_name_race_to_one_winner,
    two_renames_to_one_name_race_to_one_winner,
    a_delete_racing_a_rename_leaves_no_stuck_row,
    a_delete_racing_a_migration_leaves_no_stuck_row,
    two_reconcilers_finish_an_expired_lease_once,
    no_create_lands_on_a_server_after_its_drain_returned,
    a_drain_between_placement_and_insert_refuses_the_create,
);

const ROUNDS: usize = 4;

fn new(slug: &str, database_name: Option<String>) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        database_name,
        ..Default::default()
    }
}

fn tenant(slug: &str) -> TenantRef {
    TenantRef::parse(slug).unwrap()
}

/// A loser's error: a conflict the caller can act on (HTTP 404/409).
fn is_conflict(err: &Error) -> bool {
    matches!(
        err,
        Error::AlreadyExists(_)
            | Error::Locked { .. }
            | Error::IllegalState { .. }
            | Error::TenantNotFound(_)
            | Error::TenantDatabaseNotFound(_)
    )
}

/// Runs both at once (on two tasks) and returns both results.
async fn race<A, B, TA, TB>(a: A, b: B) -> (tenantdb::Result<TA>, tenantdb::Result<TB>)
where
    A: Future<Output = tenantdb::Result<TA>> + Send + 'static,
    B: Future<Output = tenantdb::Result<TB>> + Send + 'static,
    TA: Send + 'static,
    TB: Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let (ba, bb) = (barrier.clone(), barrier);
    let a = tokio::spawn(async move {
        ba.wait().await;
        a.await
    });
    let b = tokio::spawn(async move {
        bb.wait().await;
        b.await
    });
    (a.await.unwrap(), b.await.unwrap())
}

/// Exactly `winners` of the results are Ok, the others conflicts.
fn expect_winners(results: &[Result<(), &Error>], winners: usize, what: &str) {
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, winners, "{what}: {results:?}");
    for err in results.iter().filter_map(|r| r.err()) {
        assert!(is_conflict(err), "{what}: the loser must get a conflict, got {err}");
    }
}

/// No row in a working status, and doctor finds nothing.
async fn assert_settled(env: &TestEnv, what: &str) {
    let rows = env.tenancy.catalog().tenant_databases().list(None).await.unwrap();
    for row in &rows {
        assert!(
            matches!(row.status, DbStatus::Active | DbStatus::Failed) && row.lease_owner.is_none(),
            "{what}: row left {} with lease {:?}",
            row.status,
            row.lease_owner
        );
        assert!(row.pending_database_name.is_none(), "{what}: {row:?}");
    }
    let findings = env.tenancy.doctor().examine(DoctorOptions::default()).await.unwrap();
    assert!(findings.is_empty(), "{what}: {findings:#?}");
}

async fn two(env: &TestEnv) -> (Tenancy, Tenancy) {
    (env.second(schema_v1()).await, env.second(schema_v1()).await)
}

async fn creates_of_one_slug_race_to_one_winner(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let (a, b) = two(&env).await;
    for round in 0..ROUNDS {
        let slug = format!("same-{round}");
        let (pa, pb) = (a.provisioner().clone(), b.provisioner().clone());
        let (s1, s2) = (slug.clone(), slug.clone());
        let (ra, rb) = race(async move { pa.create_tenant(new(&s1, None)).await }, async move {
            pb.create_tenant(new(&s2, None)).await
        })
        .await;
        expect_winners(&[ra.as_ref().map(drop), rb.as_ref().map(drop)], 1, &slug);
        for err in [ra.err(), rb.err()].into_iter().flatten() {
            // Refused by the check before the insert, or by the insert.
            assert!(err.to_string().contains(&format!("slug '{slug}'")), "{err}");
        }
    }
    assert_settled(&env, "create/create slug").await;
    a.close().await;
    b.close().await;
}

async fn creates_of_one_database_name_race_to_one_winner(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let (a, b) = two(&env).await;
    for round in 0..ROUNDS {
        let name = format!("{}name_{round}", env.db_prefix());
        let (pa, pb) = (a.provisioner().clone(), b.provisioner().clone());
        let (n1, n2) = (name.clone(), name.clone());
        let (ra, rb) = race(
            async move { pa.create_tenant(new(&format!("one-{round}"), Some(n1))).await },
            async move { pb.create_tenant(new(&format!("two-{round}"), Some(n2))).await },
        )
        .await;
        expect_winners(&[ra.as_ref().map(drop), rb.as_ref().map(drop)], 1, &name);
        for err in [ra.err(), rb.err()].into_iter().flatten() {
            assert!(err.to_string().contains(&name), "{err}");
        }
    }
    assert_settled(&env, "create/create name").await;
    a.close().await;
    b.close().await;
}

/// The bug: the renamed tenant was left RENAMING forever and the loser got
/// a server error.
async fn a_rename_and_a_create_of_one_name_race_to_one_winner(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let (a, b) = two(&env).await;
    for round in 0..ROUNDS {
        let slug = format!("renamed-{round}");
        env.create(&slug).await;
        let name = format!("{}contested_{round}", env.db_prefix());
        let (pa, pb) = (a.provisioner().clone(), b.provisioner().clone());
        let (n1, n2) = (name.clone(), name.clone());
        let (ra, rb) = race(
            async move { pa.rename_tenant_database(&tenant(&slug), &n1).await },
            async move { pb.create_tenant(new(&format!("creator-{round}"), Some(n2))).await },
        )
        .await;
        expect_winners(&[ra.as_ref().map(drop), rb.as_ref().map(drop)], 1, &name);
    }
    assert_settled(&env, "rename/create").await;
    a.close().await;
    b.close().await;
}

async fn two_renames_to_one_name_race_to_one_winner(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let (a, b) = two(&env).await;
    for round in 0..ROUNDS {
        let (first, second) = (format!("first-{round}"), format!("second-{round}"));
        env.create(&first).await;
        env.create(&second).await;
        let name = format!("{}wanted_{round}", env.db_prefix());
        let (pa, pb) = (a.provisioner().clone(), b.provisioner().clone());
        let (n1, n2) = (name.clone(), name.clone());
        let (ra, rb) = race(
            async move { pa.rename_tenant_database(&tenant(&first), &n1).await },
            async move { pb.rename_tenant_database(&tenant(&second), &n2).await },
        )
        .await;
        expect_winners(&[ra.as_ref().map(drop), rb.as_ref().map(drop)], 1, &name);
    }
    assert_settled(&env, "rename/rename").await;
    a.close().await;
    b.close().await;
}

async fn a_delete_racing_a_rename_leaves_no_stuck_row(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let (a, b) = two(&env).await;
    for round in 0..ROUNDS {
        let slug = format!("doomed-{round}");
        env.create(&slug).await;
        let name = format!("{}escape_{round}", env.db_prefix());
        let (pa, pb) = (a.provisioner().clone(), b.provisioner().clone());
        let s2 = slug.clone();
        let (ra, rb) = race(async move { pa.delete_tenant_now(&tenant(&slug)).await }, async move {
            pb.rename_tenant_database(&tenant(&s2), &name).await
        })
        .await;
        // Both may succeed one after the other (rename, then delete).
        for err in [ra.as_ref().err(), rb.as_ref().err()].into_iter().flatten() {
            assert!(is_conflict(err), "delete/rename: {err}");
        }
        assert!(ra.is_ok() || rb.is_ok(), "one of them goes through: {ra:?} {rb:?}");
    }
    // A delete that lost finishes now: nothing may be left half-deleted.
    assert_settled(&env, "delete/rename").await;
    a.close().await;
    b.close().await;
}

async fn a_delete_racing_a_migration_leaves_no_stuck_row(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    // Every tenant is made at v1 first: once a program with v2 migrated
    // one, the v1 program may no longer create tenants.
    for round in 0..ROUNDS {
        env.create(&format!("moving-{round}")).await;
    }
    let a = env.second(schema_v2()).await;
    let b = env.second(schema_v2()).await;
    for round in 0..ROUNDS {
        let slug = format!("moving-{round}");
        let (pa, pb) = (a.provisioner().clone(), b.provisioner().clone());
        let s2 = slug.clone();
        let (ra, rb) = race(async move { pa.delete_tenant_now(&tenant(&slug)).await }, async move {
            pb.migrate_tenant(&tenant(&s2)).await
        })
        .await;
        for err in [ra.as_ref().err(), rb.as_ref().err()].into_iter().flatten() {
            assert!(is_conflict(err), "delete/migrate: {err}");
        }
        assert!(ra.is_ok() || rb.is_ok(), "one of them goes through: {ra:?} {rb:?}");
    }
    let rows = a.catalog().tenant_databases().list(None).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.status == DbStatus::Active && r.lease_owner.is_none()),
        "{rows:#?}"
    );
    a.close().await;
    b.close().await;
}

/// Two instances find the same expired lease at once: one finishes the
/// work, the other skips it; the work is done once.
async fn two_reconcilers_finish_an_expired_lease_once(backend: Backend) {
    let env = TestEnv::new(backend, schema_v1()).await;
    let (a, b) = two(&env).await;
    for round in 0..ROUNDS {
        let slug = format!("orphaned-{round}");
        env.create(&slug).await;
        let to = format!("{}landed_{round}", env.db_prefix());
        env.tenancy.provisioner().crash_after(Step::RenameClaimed);
        let err = env
            .tenancy
            .provisioner()
            .rename_tenant_database(&tenant(&slug), &to)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Interrupted { .. }), "{err}");
        tokio::time::sleep(LEASE_EXPIRY_WAIT).await;
        let (pa, pb) = (a.provisioner().clone(), b.provisioner().clone());
        let (ra, rb) = race(async move { pa.reconcile().await }, async move { pb.reconcile().await }).await;
        let outcomes: Vec<ReconcileOutcome> = ra.unwrap().into_iter().chain(rb.unwrap()).map(|r| r.outcome).collect();
        let finished = outcomes.iter().filter(|o| **o == ReconcileOutcome::Finished).count();
        assert_eq!(finished, 1, "{outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, ReconcileOutcome::Finished | ReconcileOutcome::Skipped)),
            "{outcomes:?}"
        );
        let view = env.tenancy.tenant(&tenant(&slug)).await.unwrap();
        assert_eq!(view.database.unwrap().database_name, to);
    }
    assert_settled(&env, "reconcile/reconcile").await;
    a.close().await;
    b.close().await;
}

/// Creates keep coming from two processes while a third drains their only
/// server: once the drain has returned, no new tenant database lands on
/// it, and every create either was placed there before (ACTIVE now) or
/// was refused with `ServerDraining` (never another error). So a listing
/// taken right after the drain (what `tenants move --all-from` moves) is
/// the server's final list. Several rounds, the drain at a different
/// moment each time. (Whether a create falls in the window between
/// placement and insert is left to timing here; the next test makes it
/// certain.)
async fn no_create_lands_on_a_server_after_its_drain_returned(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let env = TestEnv::with(backend, schema_v1(), |config| config.warm_databases = 0).await;
    let (a, b) = two(&env).await;
    let server = env.config.server_name.clone();
    let rows = |env: &TestEnv| {
        let tenancy = env.tenancy.clone();
        async move { tenancy.catalog().tenant_databases().list(None).await.unwrap().len() }
    };
    let refused = Arc::new(AtomicUsize::new(0));
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let mut creators = Vec::new();
        for (n, tenancy) in [&a, &b, &a, &b].into_iter().enumerate() {
            let (tenancy, stop, refused) = (tenancy.clone(), stop.clone(), refused.clone());
            creators.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    i += 1;
                    match tenancy
                        .provisioner()
                        .create_tenant(new(&format!("d{round}-{n}-{i}"), None))
                        .await
                    {
                        Ok(_) => {}
                        Err(Error::ServerDraining(_)) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        }
                        Err(err) => panic!("a create during a drain failed with: {err}"),
                    }
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(60 + 17 * round as u64)).await;
        env.tenancy.set_server_accepting(&server, false).await.unwrap().unwrap();
        let at_drain = rows(&env).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        stop.store(true, Ordering::Release);
        for creator in creators {
            creator.await.unwrap();
        }
        let after = rows(&env).await;
        assert_eq!(
            after, at_drain,
            "round {round}: tenant databases on the server when the drain returned, and after"
        );
        assert_settled(&env, "after a drain").await;
        env.tenancy.set_server_accepting(&server, true).await.unwrap().unwrap();
    }
    eprintln!("creates refused while draining: {}", refused.load(Ordering::Relaxed));
}

/// The drain's window made certain: a placement that drains the server
/// it is about to choose (another process's drain, run from inside
/// `rank`). The create must be refused (`ServerDraining`: placed again, it
/// finds no server that takes tenants) with nothing recorded; before the
/// insert checked, it landed on the drained server.
async fn a_drain_between_placement_and_insert_refuses_the_create(backend: Backend) {
    #[derive(Debug)]
    struct DrainWhileRanking {
        other: Tenancy,
        server: String,
    }
    impl tenantdb::Placement for DrainWhileRanking {
        fn rank(&self, _: &NewTenant, candidates: Vec<tenantdb::Candidate>) -> Vec<tenantdb::Candidate> {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(self.other.set_server_accepting(&self.server, false))
            })
            .unwrap();
            candidates
        }
    }
    let env = TestEnv::new(backend, schema_v1()).await;
    let server = env.config.server_name.clone();
    let other = env.second(schema_v1()).await;
    env.tenancy.set_placement(std::sync::Arc::new(DrainWhileRanking {
        other: other.clone(),
        server: server.clone(),
    }));
    let before = env.tenancy.catalog().tenant_databases().list(None).await.unwrap().len();
    match env.tenancy.provisioner().create_tenant(new("late", None)).await {
        Err(Error::ServerDraining(name)) => assert_eq!(name, server),
        other => panic!("a create whose server was drained after placement: {other:?}"),
    }
    assert_eq!(
        env.tenancy.catalog().tenant_databases().list(None).await.unwrap().len(),
        before
    );
    assert!(
        env.tenancy
            .catalog()
            .tenants()
            .find(&tenant("late"))
            .await
            .unwrap()
            .is_none()
    );
    other.set_server_accepting(&server, true).await.unwrap();
    env.tenancy.set_placement(std::sync::Arc::new(tenantdb::FewestTenants));
    env.tenancy
        .provisioner()
        .create_tenant(new("late", None))
        .await
        .unwrap();
    assert_settled(&env, "after the drain was undone").await;
}
