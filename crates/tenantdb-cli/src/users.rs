//! `users ...`, `tokens ...` and `members ...`: users, their API tokens and
//! their memberships of tenants. Each prints a line or a table for people,
//! or with `--json` one JSON document (its shape is in the README).

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use tenantdb::Tenancy;
use tenantdb::catalog::MemberRole;
use uuid::Uuid;

use crate::args::{enum_parser, parse_ref};
use crate::output::{print_json, print_rows};

/// The `users` subcommands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        email: String,
        /// Display name [default: the part of the email before the @].
        #[arg(long)]
        name: Option<String>,
        /// Print `{"id", "email", "name"}`.
        #[arg(long)]
        json: bool,
    },
    /// List users.
    List {
        /// Print `[{"id", "email", "name", "created_at"}]`.
        #[arg(long)]
        json: bool,
    },
    /// Make an API token for a user; it is printed once and never stored.
    Token {
        email: String,
        /// A name to tell the user's tokens apart.
        #[arg(long)]
        name: Option<String>,
        /// Print `{"id", "name", "token"}` instead of the token alone.
        #[arg(long)]
        json: bool,
    },
    /// List a user's API tokens (never their values).
    Tokens {
        email: String,
        /// Print `[{"id", "name", "created_at", "last_used_at", "revoked_at"}]`.
        #[arg(long)]
        json: bool,
    },
}

/// The `tokens` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Revoke an API token by its id (`users tokens` lists them); the
    /// token stops working within the catalog poll interval everywhere.
    Revoke {
        id: Uuid,
        /// Print `{"id", "revoked"}`.
        #[arg(long)]
        json: bool,
    },
}

/// The `members` subcommands.
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Make a user a member of a tenant (or change their role).
    Add {
        tenant: String,
        email: String,
        /// The member's role.
        #[arg(long, ignore_case = true, value_parser = enum_parser::<MemberRole>())]
        role: MemberRole,
        /// Print `{"tenant", "user_id", "email", "role"}`.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user from a tenant.
    Remove {
        tenant: String,
        email: String,
        /// Print `{"tenant", "user_id", "email", "removed"}`.
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's members.
    List {
        tenant: String,
        /// Print `[{"user_id", "email", "role"}]`.
        #[arg(long)]
        json: bool,
    },
}

fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), tenantdb::rfc3339)
}

pub(crate) async fn users(tenancy: &Tenancy, command: UsersCommand) -> anyhow::Result<()> {
    let catalog = tenancy.catalog();
    match command {
        UsersCommand::Create { email, name, json } => {
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
            let user = catalog
                .users()
                .create(&email, &name)
                .await
                .with_context(|| format!("failed to create user '{email}'"))?;
            if json {
                return print_json(&json!({"id": user.id, "email": user.email, "name": user.name}));
            }
            println!("created user {} ({})", user.email, user.id);
        }
        UsersCommand::List { json } => {
            let users = catalog.users().list().await?;
            if json {
                let users: Vec<Value> = users
                    .iter()
                    .map(|u| json!({"id": u.id, "email": u.email, "name": u.name, "created_at": tenantdb::rfc3339(u.created_at)}))
                    .collect();
                return print_json(&users);
            }
            let rows = users
                .into_iter()
                .map(|u| vec![u.email, u.name, u.id.to_string(), tenantdb::rfc3339(u.created_at)]);
            print_rows(&["EMAIL", "NAME", "ID", "CREATED"], rows);
        }
        UsersCommand::Token { email, name, json } => {
            let user = catalog
                .users()
                .find_by_email(&email)
                .await?
                .with_context(|| format!("no user with email '{email}'"))?;
            let (model, token) = catalog
                .tokens()
                .create(user.id, name.as_deref().unwrap_or("cli"))
                .await?;
            if json {
                return print_json(&json!({"id": model.id, "name": model.name, "token": token}));
            }
            println!("{token}");
        }
        UsersCommand::Tokens { email, json } => {
            let user = catalog
                .users()
                .find_by_email(&email)
                .await?
                .with_context(|| format!("no user with email '{email}'"))?;
            let tokens = catalog.tokens().list_for_user(user.id).await?;
            if json {
                let tokens: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id, "name": t.name, "created_at": tenantdb::rfc3339(t.created_at),
                            "last_used_at": t.last_used_at.map(tenantdb::rfc3339),
                            "revoked_at": t.revoked_at.map(tenantdb::rfc3339),
                        })
                    })
                    .collect();
                return print_json(&tokens);
            }
            let rows = tokens.into_iter().map(|t| {
                vec![
                    t.id.to_string(),
                    t.name,
                    tenantdb::rfc3339(t.created_at),
                    time(t.last_used_at),
                    time(t.revoked_at),
                ]
            });
            print_rows(&["ID", "NAME", "CREATED", "LAST USED", "REVOKED"], rows);
        }
    }
    Ok(())
}

pub(crate) async fn tokens(tenancy: &Tenancy, command: TokensCommand) -> anyhow::Result<()> {
    let TokensCommand::Revoke { id, json } = command;
    let tokens = tenancy.catalog().tokens();
    let token = tokens
        .find(id)
        .await?
        .with_context(|| format!("no token with id {id}"))?;
    anyhow::ensure!(token.revoked_at.is_none(), "token {id} is already revoked");
    let revoked = tokens.revoke(token.user_id, id).await?;
    anyhow::ensure!(revoked, "token {id} is already revoked");
    if json {
        return print_json(&json!({"id": id, "revoked": true}));
    }
    println!("revoked token {id}");
    Ok(())
}

pub(crate) async fn members(tenancy: &Tenancy, command: MembersCommand) -> anyhow::Result<()> {
    let catalog = tenancy.catalog();
    let (tenant, email) = match &command {
        MembersCommand::List { tenant, json } => {
            let tenant = catalog.tenants().get(&parse_ref(tenant)?).await?;
            let mut members = Vec::new();
            for membership in catalog.memberships().list_for_tenant(tenant.id).await? {
                let email = catalog
                    .users()
                    .find(membership.user_id)
                    .await?
                    .map_or_else(|| "-".to_owned(), |u| u.email);
                members.push((membership.user_id, email, membership.role));
            }
            if *json {
                let members: Vec<Value> = members
                    .iter()
                    .map(|(id, email, role)| json!({"user_id": id, "email": email, "role": role.to_string()}))
                    .collect();
                return print_json(&members);
            }
            let rows = members
                .into_iter()
                .map(|(id, email, role)| vec![email, role.to_string(), id.to_string()]);
            print_rows(&["EMAIL", "ROLE", "USER ID"], rows);
            return Ok(());
        }
        MembersCommand::Add { tenant, email, .. } | MembersCommand::Remove { tenant, email, .. } => (tenant, email),
    };
    let tenant = catalog.tenants().get(&parse_ref(tenant)?).await?;
    let user = catalog
        .users()
        .find_by_email(email)
        .await?
        .with_context(|| format!("no user with email '{email}'"))?;
    match command {
        MembersCommand::Add { role, json, .. } => {
            catalog.memberships().upsert(tenant.id, user.id, role).await?;
            if json {
                return print_json(
                    &json!({"tenant": tenant.slug, "user_id": user.id, "email": user.email, "role": role.to_string()}),
                );
            }
            println!("{} is {role} of {}", user.email, tenant.slug);
        }
        MembersCommand::Remove { json, .. } => {
            anyhow::ensure!(
                catalog.memberships().remove(tenant.id, user.id).await?,
                "{} is not a member of {}",
                user.email,
                tenant.slug
            );
            if json {
                return print_json(
                    &json!({"tenant": tenant.slug, "user_id": user.id, "email": user.email, "removed": true}),
                );
            }
            println!("{} is no longer a member of {}", user.email, tenant.slug);
        }
        MembersCommand::List { .. } => unreachable!("answered above"),
    }
    Ok(())
}
