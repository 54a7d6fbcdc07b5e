//! The status of a tenant database and its status machine (DESIGN.md): a
//! leaf module, imported by the catalog, the errors and the provisioner,
//! importing nothing from the crate.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Status of a tenant database (see the status machine in
/// `docs/ARCHITECTURE.md`). ACTIVE and MIGRATING serve traffic.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum DbStatus {
    /// `PROVISIONING`: being created (role, database, migrations); not serving.
    #[sea_orm(string_value = "PROVISIONING")]
    Provisioning,
    /// `ACTIVE`: ready and serving.
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    /// `MIGRATING`: a tenant migration is running on it; still serving.
    #[sea_orm(string_value = "MIGRATING")]
    Migrating,
    /// `RENAMING`: its database is being renamed to `pending_database_name`;
    /// not serving.
    #[sea_orm(string_value = "RENAMING")]
    Renaming,
    /// `FAILED`: provisioning failed (`error_message` says why); not
    /// serving. Retry or delete it.
    #[sea_orm(string_value = "FAILED")]
    Failed,
    /// `DELETING`: its database and role are being dropped; not serving.
    #[sea_orm(string_value = "DELETING")]
    Deleting,
    /// `MOVING`: its database is being copied to another server while it
    /// is served from where it is, or (once switched) the old copy is
    /// being removed while it is served from the new server; still
    /// serving.
    #[sea_orm(string_value = "MOVING")]
    Moving,
    /// `SWITCHING`: the last moment of a move: writes are paused while the
    /// last changes reach the new server and the catalog switches to it;
    /// requests wait a moment, then get 503 with `Retry-After`.
    #[sea_orm(string_value = "SWITCHING")]
    Switching,
    /// `DELETED`: deleted with a way back: its database is kept under a
    /// trash name (`deleted_at` says since when) and its role may not log
    /// in; refused like a suspended tenant. `restore` brings it back;
    /// `purge`, or the sweep once the retention period is over, drops it.
    #[sea_orm(string_value = "DELETED")]
    Deleted,
}

impl DbStatus {
    /// Whether a database in this status may serve requests.
    pub fn serves_traffic(self) -> bool {
        matches!(self, Self::Active | Self::Migrating | Self::Moving)
    }

    /// The status as the catalog stores it and docs/API.md shows it
    /// (`ACTIVE`); `FromStr` parses it back.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl DbStatus {
    /// The status machine of DESIGN.md. A working status may also "become"
    /// itself: that is a takeover of an expired lease by the reconciler.
    pub fn can_become(self, to: DbStatus) -> bool {
        use DbStatus::*;
        matches!(
            (self, to),
            (Provisioning, Active | Failed | Provisioning)
                | (Failed, Provisioning | Deleting)
                | (Active, Renaming | Migrating | Deleting)
                | (Renaming, Active | Renaming)
                | (Migrating, Active | Migrating)
                | (Deleting, Deleting)
                | (Active, Moving | Switching)
                | (Moving, Switching | Active | Moving)
                | (Switching, Moving | Active | Switching)
                | (Deleting, Deleted)
                // Only a move into the trash goes back, and only while the
                // database still has its name (a drop never does).
                | (Deleting, Active)
                | (Deleted, Deleting | Renaming)
                | (Renaming, Deleted)
        )
    }
}

/// Status of a fleet migration run (`migration_runs.status`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// `RUNNING`: its process works on it (its lease is live).
    Running,
    /// `SUCCEEDED`: every tenant it took was migrated.
    Succeeded,
    /// `FAILED`: it ended, and some tenant failed (they keep their version).
    Failed,
    /// `STOPPED`: stopped early by its canary or its failure limit.
    Stopped,
    /// `ABANDONED`: its process died while it ran (the lease expired).
    Abandoned,
}

impl RunStatus {
    /// The status as the catalog stores it (`SUCCEEDED`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::DbStatus::*;
    use super::*;

    #[test]
    fn only_the_status_machine_transitions_are_legal() {
        let legal = [
            (Provisioning, Active),
            (Provisioning, Failed),
            (Failed, Provisioning),
            (Failed, Deleting),
            (Active, Renaming),
            (Renaming, Active),
            (Active, Migrating),
            (Migrating, Active),
            (Active, Deleting),
            (Active, Moving),
            (Active, Switching),
            (Moving, Switching),
            (Switching, Moving),
            (Moving, Active),
            (Switching, Active),
            (Deleting, Deleted),
            (Deleting, Active),
            (Deleted, Deleting),
            (Deleted, Renaming),
            (Renaming, Deleted),
        ];
        for (from, to) in legal {
            assert!(from.can_become(to), "{from} -> {to}");
        }
        let illegal = [
            (Active, Provisioning),
            (Active, Failed),
            (Active, Active),
            (Failed, Active),
            (Failed, Failed),
            (Renaming, Deleting),
            (Migrating, Deleting),
            (Provisioning, Deleting),
            (Moving, Deleting),
            (Switching, Deleting),
            (Moving, Migrating),
            (Failed, Moving),
            (Deleted, Active),
            (Deleted, Deleted),
            (Deleted, Migrating),
            (Deleted, Moving),
            (Active, Deleted),
        ];
        for (from, to) in illegal {
            assert!(!from.can_become(to), "{from} -> {to}");
        }
    }

    #[test]
    fn only_active_migrating_and_moving_serve_traffic() {
        let serving: Vec<_> = <DbStatus as sea_orm::Iterable>::iter()
            .filter(|s| s.serves_traffic())
            .collect();
        assert_eq!(serving, vec![Active, Migrating, Moving]);
    }
}
