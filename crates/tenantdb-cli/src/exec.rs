//! `tenants exec --sql`: one statement in every tenant's database (or the
//! chosen ones), each as the tenant's own role through its pool, a few
//! tenants at once, with progress on stderr. A read prints its rows per
//! tenant; a write, the rows it changed. Failures are kept per tenant and
//! make the exit code 1.

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tenantdb::{Tenancy, TenantId, TenantRef};

use crate::output::{print_json, print_rows};
use crate::per_tenant;

/// The flags of `tenants exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The statement, run in each tenant's database as the tenant's role.
    #[arg(long)]
    sql: String,
    /// Only this tenant (repeatable; slug or id) [default: every tenant
    /// that is served now].
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// Tenants worked on at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Print `[{"tenant", "ok", "rows" (a read) or "rows_affected" (a
    /// write), "error"}]`, by slug.
    #[arg(long)]
    json: bool,
}

/// What the statement did in one tenant's database.
enum Outcome {
    Rows(Vec<Value>),
    Changed(u64),
}

/// The statement's first word (`select` in `  select 1`).
fn first_word(sql: &str) -> &str {
    sql.trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
}

/// Whether the statement returns rows (a read): its first word.
fn is_read(sql: &str) -> bool {
    let first = first_word(sql);
    ["select", "with", "show", "values", "table", "explain", "pragma"]
        .iter()
        .any(|w| first.eq_ignore_ascii_case(w))
}

pub(crate) async fn exec(tenancy: &Tenancy, args: ExecArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!args.sql.trim().is_empty(), "--sql is empty");
    let targets = per_tenant::targets(tenancy, &args.tenants).await?;
    let sql: Arc<str> = args.sql.into();
    let results = per_tenant::for_each(tenancy, targets, args.concurrency, "ran on", move |tenancy, tenant| {
        let sql = sql.clone();
        async move { run_one(&tenancy, TenantId::from(tenant.id), &sql).await }
    })
    .await?;
    if args.json {
        print_json(&results.iter().map(|(slug, o)| as_json(slug, o)).collect::<Vec<_>>())?;
    } else {
        print_results(&results);
    }
    per_tenant::all_succeeded(&results, "the statement")
}

async fn run_one(tenancy: &Tenancy, tenant: TenantId, sql: &str) -> Result<Outcome, String> {
    let db = tenancy
        .connections()
        .connection(&TenantRef::Id(tenant))
        .await
        .map_err(|err| err.to_string())?;
    if is_read(sql) {
        read(&db, sql).await.map(Outcome::Rows)
    } else {
        db.execute_unprepared(sql)
            .await
            .map(|r| Outcome::Changed(r.rows_affected()))
            .map_err(|err| err.to_string())
    }
}

/// The rows of a read as JSON objects, every column kept: PostgreSQL
/// renders each row itself (`row_to_json`, every type it has) when the
/// statement can be a subquery; otherwise, and on SQLite, each value is
/// taken by the type it holds. The statement is the operator's own, run as
/// the tenant's role (`AssertSqlSafe`: running it is the command's purpose).
async fn read(db: &tenantdb::PoolHandle, sql: &str) -> Result<Vec<Value>, String> {
    use sqlx::{Row, TypeInfo, ValueRef};
    let text = |err: sqlx::Error| err.to_string();
    match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            let first = first_word(sql);
            if ["select", "with", "values", "table"]
                .iter()
                .any(|w| first.eq_ignore_ascii_case(w))
            {
                let inner = sql.trim().trim_end_matches(';');
                let wrapped = format!("SELECT row_to_json(q)::text FROM ({inner}) AS q");
                let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(wrapped))
                    .fetch_all(pool)
                    .await
                    .map_err(text)?;
                return rows
                    .into_iter()
                    .map(|(row,)| serde_json::from_str(&row).map_err(|e| e.to_string()))
                    .collect();
            }
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .map_err(text)?;
            Ok(objects(&rows, |row, i, column| {
                row.try_get::<Option<String>, _>(i).map_or_else(
                    |_| Value::String(format!("({})", sqlx::Column::type_info(column).name())),
                    Value::from,
                )
            }))
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .map_err(text)?;
            Ok(objects(&rows, |row, i, _| {
                let kind = row
                    .try_get_raw(i)
                    .map(|raw| (raw.is_null(), raw.type_info().name().to_owned()));
                match kind {
                    Ok((true, _)) | Err(_) => Value::Null,
                    Ok((false, kind)) => match kind.as_str() {
                        "INTEGER" => row.try_get::<i64, _>(i).map_or(Value::Null, Value::from),
                        "REAL" => row.try_get::<f64, _>(i).map_or(Value::Null, Value::from),
                        "BLOB" => row
                            .try_get::<Vec<u8>, _>(i)
                            .map_or(Value::Null, |b| Value::from(tenantdb::internal::hex(&b))),
                        _ => row.try_get::<String, _>(i).map_or(Value::Null, Value::from),
                    },
                }
            }))
        }
    }
}

/// Each row as a JSON object of its columns, each value made by `cell`.
fn objects<R: sqlx::Row>(
    rows: &[R],
    cell: impl Fn(&R, usize, &<R::Database as sqlx::Database>::Column) -> Value,
) -> Vec<Value> {
    use sqlx::Column;
    rows.iter()
        .map(|row| {
            let cells = row
                .columns()
                .iter()
                .enumerate()
                .map(|(i, column)| (column.name().to_owned(), cell(row, i, column)));
            Value::Object(cells.collect())
        })
        .collect()
}

fn as_json(slug: &str, outcome: &Result<Outcome, String>) -> Value {
    match outcome {
        Ok(Outcome::Rows(rows)) => json!({"tenant": slug, "ok": true, "rows": rows}),
        Ok(Outcome::Changed(n)) => json!({"tenant": slug, "ok": true, "rows_affected": n}),
        Err(error) => json!({"tenant": slug, "ok": false, "error": error}),
    }
}

/// Each tenant's rows as a table under its slug, then the failures.
fn print_results(results: &[(String, Result<Outcome, String>)]) {
    for (slug, outcome) in results {
        match outcome {
            Ok(Outcome::Rows(rows)) => {
                println!("{slug}: {} row(s)", rows.len());
                let columns: Vec<String> = rows
                    .first()
                    .and_then(Value::as_object)
                    .map(|row| row.keys().cloned().collect())
                    .unwrap_or_default();
                if !columns.is_empty() {
                    let header: Vec<&str> = columns.iter().map(String::as_str).collect();
                    let cells = rows.iter().map(|row| {
                        columns
                            .iter()
                            .map(|c| match &row[c] {
                                Value::String(s) => s.clone(),
                                Value::Null => "NULL".to_owned(),
                                other => other.to_string(),
                            })
                            .collect()
                    });
                    print_rows(&header, cells);
                }
            }
            Ok(Outcome::Changed(n)) => println!("{slug}: {n} row(s) changed"),
            Err(_) => {}
        }
    }
    per_tenant::print_failures(results);
}

#[cfg(test)]
mod tests {
    use super::is_read;

    #[test]
    fn reads_are_told_from_writes_by_their_first_word() {
        for read in [
            "SELECT 1",
            "  with x as (select 1) select * from x",
            "select(1)",
            "EXPLAIN SELECT 1",
        ] {
            assert!(is_read(read), "{read}");
        }
        for write in [
            "UPDATE t SET a = 1",
            "insert into t values (1)",
            "DELETE FROM t",
            "CREATE INDEX i ON t(a)",
        ] {
            assert!(!is_read(write), "{write}");
        }
    }
}
