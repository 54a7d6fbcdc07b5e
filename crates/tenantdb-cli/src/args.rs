//! Turning command-line words into the core's types.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use sea_orm::ActiveEnum;
use tenantdb::TenantRef;

/// A tenant by slug or id.
pub(crate) fn parse_ref(tenant: &str) -> anyhow::Result<TenantRef> {
    Ok(TenantRef::parse(tenant)?)
}

/// A value parser for a catalog enum (`ACTIVE`, `OWNER`, ...): the value as
/// the catalog stores it, in any case.
pub(crate) fn catalog_enum<E>(s: &str) -> Result<E, String>
where
    E: ActiveEnum<Value = String>,
{
    E::try_from_value(&s.to_ascii_uppercase()).map_err(|_| format!("expected {}", one_of(&E::values())))
}

/// The value parser of a flag taking a catalog enum: `--help` lists the
/// values as the catalog stores them (`OWNER`, `ADMIN`, `MEMBER`); with
/// `ignore_case = true` on the flag, any case is accepted.
pub(crate) fn enum_parser<E>() -> impl TypedValueParser<Value = E>
where
    E: ActiveEnum<Value = String> + Into<&'static str> + Clone + Send + Sync + 'static,
{
    let names: Vec<&'static str> = E::iter().map(Into::into).collect();
    PossibleValuesParser::new(names).try_map(|value| catalog_enum::<E>(&value))
}

/// `A, B or C`.
fn one_of(values: &[String]) -> String {
    match values {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use tenantdb::catalog::MemberRole;
    use tenantdb::{DbStatus, TenantStatus};

    use super::*;

    #[test]
    fn catalog_enums_parse_in_any_case() {
        assert_eq!(catalog_enum::<MemberRole>("admin"), Ok(MemberRole::Admin));
        assert_eq!(catalog_enum::<TenantStatus>("SUSPENDED"), Ok(TenantStatus::Suspended));
        assert_eq!(catalog_enum::<DbStatus>("Failed"), Ok(DbStatus::Failed));
    }

    #[test]
    fn an_unknown_value_is_refused_with_the_values_there_are() {
        assert_eq!(
            catalog_enum::<MemberRole>("boss"),
            Err("expected OWNER, ADMIN or MEMBER".to_owned())
        );
    }
}
