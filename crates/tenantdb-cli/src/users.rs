//! `users ...` and `members ...`: users, their API tokens and their
//! memberships of tenants.

use anyhow::Context;
use clap::Subcommand;
use tenantdb::Tenancy;
use tenantdb::catalog::MemberRole;

use crate::args::{catalog_enum, parse_ref};
use crate::output::print_json;

/// The `users` subcommands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        email: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Make an API token for a user; it is printed once and never stored.
    Token {
        email: String,
        #[arg(long)]
        name: Option<String>,
    },
}

/// The `members` subcommands.
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Make a user a member of a tenant (or change their role).
    Add {
        tenant: String,
        email: String,
        /// OWNER, ADMIN or MEMBER.
        #[arg(long, value_parser = catalog_enum::<MemberRole>)]
        role: MemberRole,
    },
    /// Remove a user from a tenant.
    Remove { tenant: String, email: String },
}

pub(crate) async fn users(tenancy: &Tenancy, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create { email, name } => {
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
            let user = tenancy
                .catalog()
                .users()
                .create(&email, &name)
                .await
                .with_context(|| format!("failed to create user '{email}'"))?;
            print_json(&serde_json::json!({"id": user.id, "email": user.email, "name": user.name}))
        }
        UsersCommand::Token { email, name } => {
            let user = tenancy
                .catalog()
                .users()
                .find_by_email(&email)
                .await?
                .with_context(|| format!("no user with email '{email}'"))?;
            let (_, token) = tenancy
                .catalog()
                .tokens()
                .create(user.id, name.as_deref().unwrap_or("cli"))
                .await?;
            println!("{token}");
            Ok(())
        }
    }
}

pub(crate) async fn members(tenancy: &Tenancy, command: MembersCommand) -> anyhow::Result<()> {
    let catalog = tenancy.catalog();
    let (tenant, email) = match &command {
        MembersCommand::Add { tenant, email, .. } | MembersCommand::Remove { tenant, email } => (tenant, email),
    };
    let tenant = catalog.tenants().get(&parse_ref(tenant)?).await?;
    let user = catalog
        .users()
        .find_by_email(email)
        .await?
        .with_context(|| format!("no user with email '{email}'"))?;
    match command {
        MembersCommand::Add { role, .. } => {
            catalog.memberships().upsert(tenant.id, user.id, role).await?;
            println!("{} is {role:?} of {}", user.email, tenant.slug);
        }
        MembersCommand::Remove { .. } => {
            anyhow::ensure!(
                catalog.memberships().remove(tenant.id, user.id).await?,
                "{} is not a member of {}",
                user.email,
                tenant.slug
            );
            println!("{} is no longer a member of {}", user.email, tenant.slug);
        }
    }
    Ok(())
}
