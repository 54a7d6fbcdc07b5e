//! Validated names: tenant ids, slugs, database names and prefixes.
//!
//! Raw strings never cross a module boundary: everything that ends up in DDL
//! is one of these types first, and DDL still quotes it (see `quote_ident`).

use std::fmt;

use uuid::Uuid;

use crate::error::{Error, Result};

/// PostgreSQL silently truncates identifiers longer than this many bytes.
pub(crate) const MAX_IDENTIFIER_LEN: usize = 63;
/// The longest database-name prefix we accept, so generated names keep room
/// for the slug or the tenant id.
pub(crate) const MAX_PREFIX_LEN: usize = 20;
/// Names no tenant database may take, whatever the prefix.
const RESERVED_DATABASE_NAMES: &[&str] = &["postgres", "template0", "template1"];

/// A system database's name, or one in PostgreSQL's `pg_` space.
fn is_system_name(s: &str) -> bool {
    RESERVED_DATABASE_NAMES.contains(&s) || s.starts_with("pg_")
}

/// A tenant's id (a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Uuid);

impl TenantId {
    /// A fresh id. Version 7 UUIDs sort by creation time, which keeps catalog
    /// indexes compact.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses a UUID in any of its text forms.
    pub fn parse(s: &str) -> Result<Self> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| Error::invalid("tenant id", s, "must be a UUID"))
    }

    /// The id as a plain UUID, as the catalog stores it.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// 32 lower-case hex digits, no dashes: used in role and file names.
    pub fn simple(&self) -> String {
        self.0.simple().to_string()
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for TenantId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tenant's slug: a DNS label (1-63 of `a-z 0-9 -`, not starting or ending
/// with `-`), so it can also be the first label of a host name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantSlug(String);

impl TenantSlug {
    /// Validates a slug: 1-63 of `a-z 0-9 -`, not starting or ending with
    /// `-`, and not of the form of a UUID (it would be taken for an id).
    pub fn parse(s: &str) -> Result<Self> {
        const RULE: &str = "must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'";
        let ok = !s.is_empty()
            && s.len() <= MAX_IDENTIFIER_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if !ok {
            return Err(Error::invalid("slug", s, RULE));
        }
        // A tenant is named by id or slug in one place (`X-Tenant`, paths):
        // a slug that reads as a UUID would be taken for an id.
        // (Only the simple and hyphenated forms fit the slug alphabet.)
        if matches!(s.len(), 32 | 36) && Uuid::parse_str(s).is_ok() {
            return Err(Error::invalid("slug", s, "must not have the form of a UUID"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a caller names a tenant: by id or by slug. A string that parses as a
/// UUID is an id; anything else must be a valid slug.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TenantRef {
    /// By id.
    Id(TenantId),
    /// By slug.
    Slug(TenantSlug),
}

impl TenantRef {
    /// An id when the string parses as a UUID, otherwise a slug (which must be
    /// valid).
    pub fn parse(s: &str) -> Result<Self> {
        // Only the lengths of a UUID's text forms (simple, hyphenated,
        // braced, URN) are tried as one: a short slug skips building the
        // parse error.
        if matches!(s.len(), 32 | 36 | 38 | 45)
            && let Ok(id) = Uuid::parse_str(s)
        {
            return Ok(Self::Id(TenantId(id)));
        }
        TenantSlug::parse(s).map(Self::Slug)
    }
}

impl From<TenantId> for TenantRef {
    fn from(id: TenantId) -> Self {
        Self::Id(id)
    }
}

impl From<TenantSlug> for TenantRef {
    fn from(slug: TenantSlug) -> Self {
        Self::Slug(slug)
    }
}

impl fmt::Display for TenantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Slug(slug) => slug.fmt(f),
        }
    }
}

/// The prefix of every tenant database name of a deployment (default
/// `tenant_`): 1-20 of `a-z 0-9 _`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatabasePrefix(String);

impl DatabasePrefix {
    /// Validates a prefix: 1-20 of `a-z 0-9 _`, starting with a letter, not
    /// `pg_`.
    pub fn parse(s: &str) -> Result<Self> {
        const RULE: &str = "must be 1-20 characters of a-z, 0-9 and '_', starting with a letter";
        let ok = s.len() <= MAX_PREFIX_LEN && is_plain_identifier(s) && !s.starts_with("pg_");
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::invalid("database prefix", s, RULE))
        }
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for DatabasePrefix {
    fn default() -> Self {
        Self("tenant_".to_owned())
    }
}

impl fmt::Display for DatabasePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant database name: 1-63 of `a-z 0-9 _`, starting with a letter, with
/// the deployment's prefix, and never a system database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatabaseName(String);

impl DatabaseName {
    /// Validates a requested name against the rules and the prefix.
    pub fn parse(s: &str, prefix: &DatabasePrefix) -> Result<Self> {
        if !is_plain_identifier(s) {
            return Err(Error::invalid(
                "database name",
                s,
                "must be 1-63 characters of a-z, 0-9 and '_', starting with a letter",
            ));
        }
        if is_system_name(s) {
            return Err(Error::invalid(
                "database name",
                s,
                "must not be a system database name (postgres, template0, template1, pg_*)",
            ));
        }
        if s.starts_with(&Self::trash_stem(prefix)) {
            return Err(Error::invalid(
                "database name",
                s,
                &format!(
                    "must not start with '{}': deleted tenants' databases are kept under such names",
                    Self::trash_stem(prefix)
                ),
            ));
        }
        if !s.starts_with(prefix.as_str()) || s.len() == prefix.as_str().len() {
            return Err(Error::invalid(
                "database name",
                s,
                &format!("must start with the prefix '{prefix}' and have more after it"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name a tenant gets when none is requested: the prefix and the
    /// slug (`-` becomes `_`); when that would pass 63 bytes, the slug is cut
    /// and eight hex digits of the tenant id's random part keep it unique.
    pub fn generate(prefix: &DatabasePrefix, slug: &TenantSlug, id: TenantId) -> Self {
        let full = format!("{prefix}{}", slug.as_str().replace('-', "_"));
        // A short prefix and slug may spell a system name (`p` and `g-x`:
        // `pg_x`; `t` and `emplate0`): those take the suffixed form too.
        if full.len() <= MAX_IDENTIFIER_LEN && !is_system_name(&full) {
            return Self(full);
        }
        // A version 7 id starts with its timestamp, which stays the same
        // for a while: its last digits are the random ones.
        Self::with_suffix(prefix, slug, &id.simple()[24..])
    }

    /// The prefix, the slug cut to fit, `_` and `suffix` (8 hex digits):
    /// another name for a tenant whose generated one is taken.
    pub fn with_suffix(prefix: &DatabasePrefix, slug: &TenantSlug, suffix: &str) -> Self {
        let mut body = slug.as_str().replace('-', "_");
        if format!("{prefix}{body}_").starts_with("pg_") {
            // Prefix `p` and a slug `g` or `g-…`: a `t` between keeps the
            // name out of the system's `pg_` space.
            body.insert(0, 't');
        }
        let room = MAX_IDENTIFIER_LEN - prefix.as_str().len() - suffix.len() - 1;
        Self(format!("{prefix}{}_{suffix}", &body[..room.min(body.len())]))
    }

    /// The name a deleted tenant's database is kept under until it is
    /// restored or purged: `<prefix>_deleted_<tenant id as 32 hex digits>`
    /// (at most 61 bytes). No tenant can have it: generated names never
    /// have `_` right after the prefix (a slug starts with a letter or a
    /// digit) and `parse` refuses requested ones of this form.
    pub fn trash(prefix: &DatabasePrefix, id: TenantId) -> Self {
        Self(format!("{}{}", Self::trash_stem(prefix), id.simple()))
    }

    /// Whether this is a trash name (see [`DatabaseName::trash`]).
    pub fn is_trash(&self, prefix: &DatabasePrefix) -> bool {
        self.0.starts_with(&Self::trash_stem(prefix))
    }

    fn trash_stem(prefix: &DatabasePrefix) -> String {
        format!("{prefix}_deleted_")
    }

    /// A name read back from the catalog, which only ever stores validated
    /// names.
    pub(crate) fn from_catalog(s: String) -> Self {
        Self(s)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What every template name of a catalog starts with: the prefix without
/// its trailing `_`, `-tpl-`, and 16 hex digits of the catalog's id (the
/// random ones), then 12 hex digits of the migration hash follow (at most
/// 54 bytes in all), e.g. `tenant-tpl-8f3a0c2e9b1d4f67-0123456789ab`.
///
/// Templates live in a name space no tenant database can enter, whatever the
/// prefix: tenant database names are `a-z 0-9 _` only, template names carry
/// `-`. The catalog's id in the name means two catalogs sharing a server
/// never build, clone or drop each other's templates; the prefix in front
/// keeps a deployment's databases together in listings.
pub fn template_stem(prefix: &DatabasePrefix, catalog_id: Uuid) -> String {
    let id = catalog_id.simple().to_string();
    format!("{}-tpl-{}-", prefix.as_str().trim_end_matches('_'), &id[16..])
}

/// Whether `name` is a template name of the catalog with this `stem`.
#[cfg(test)]
fn is_template_name(name: &str, stem: &str) -> bool {
    name.strip_prefix(stem)
        .is_some_and(|hash| hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The PostgreSQL role of one tenant: the prefix, `r_`, and the tenant id, so
/// it survives renames and never collides between tenants (at most 54 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleName(String);

impl RoleName {
    /// The role of tenant `id`: `<prefix>r_<id as 32 hex digits>`.
    pub fn for_tenant(prefix: &DatabasePrefix, id: TenantId) -> Self {
        Self(format!("{prefix}r_{}", id.simple()))
    }

    /// The NOLOGIN role that owns a catalog's templates (its ownership is
    /// the templates' mark): the template stem without its last `-`, e.g.
    /// `tenant-tpl-8f3a0c2e9b1d4f67`. Never a tenant's role (those are
    /// `<prefix>r_<tenant id>`, without `-`).
    pub fn for_templates(prefix: &DatabasePrefix, catalog_id: Uuid) -> Self {
        Self(template_stem(prefix, catalog_id).trim_end_matches('-').to_owned())
    }

    pub(crate) fn from_catalog(s: String) -> Self {
        Self(s)
    }

    /// The role name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_IDENTIFIER_LEN
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Free text (display names, titles): trimmed, 1 to `max` characters, no
/// control characters.
pub fn plain_text(kind: &'static str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(Error::invalid(
            kind,
            value,
            &format!("must be 1-{max} characters without control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Quotes an identifier for DDL. Names are validated before they get here;
/// quoting anyway means a validation bug cannot become an injection.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for DDL that takes no bind parameters
/// (`COMMENT ON`, `PASSWORD`).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix() -> DatabasePrefix {
        DatabasePrefix::default()
    }

    #[test]
    fn slugs_follow_the_dns_label_rules() {
        for good in ["acme", "a", "acme-2", "0day", &"a".repeat(63)] {
            assert!(TenantSlug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-acme",
            "acme-",
            "Acme",
            "ac_me",
            "a b",
            "x; drop database y",
            &"a".repeat(64),
        ] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn database_names_are_refused_with_the_rule_they_break() {
        let cases = [
            ("x; drop database y", "a-z"),
            ("\"quoted\"", "a-z"),
            ("pg_catalog", "system database"),
            ("template0", "system database"),
            ("postgres", "system database"),
            ("other_db", "prefix"),
            ("tenant_", "prefix"),
            ("Tenant_acme", "a-z"),
            ("", "a-z"),
        ];
        for (name, rule) in cases {
            let err = DatabaseName::parse(name, &prefix()).unwrap_err().to_string();
            assert!(err.contains(rule), "{name}: {err}");
        }
        let long = format!("tenant_{}", "a".repeat(57));
        assert_eq!(long.len(), 64);
        assert!(DatabaseName::parse(&long, &prefix()).is_err());
        assert!(DatabaseName::parse(&long[..63], &prefix()).is_ok());
    }

    #[test]
    fn generated_names_fit_in_63_bytes_and_stay_valid() {
        let id = TenantId::new();
        let short = DatabaseName::generate(&prefix(), &TenantSlug::parse("acme-co").unwrap(), id);
        assert_eq!(short.as_str(), "tenant_acme_co");
        let long_slug = TenantSlug::parse(&"b".repeat(63)).unwrap();
        let long_prefix = DatabasePrefix::parse(&"p".repeat(20)).unwrap();
        let long = DatabaseName::generate(&long_prefix, &long_slug, id);
        assert_eq!(long.as_str().len(), 63);
        assert!(long.as_str().ends_with(&id.simple()[24..]));
        // Ids made in the same millisecond share their first digits, not
        // their last: long slugs with a common start get different names.
        let names: std::collections::HashSet<_> = (0..50)
            .map(|_| DatabaseName::generate(&long_prefix, &long_slug, TenantId::new()))
            .collect();
        assert_eq!(names.len(), 50);
        let other = DatabaseName::with_suffix(&long_prefix, &long_slug, "0badf00d");
        assert_eq!(other.as_str().len(), 63);
        assert!(DatabaseName::parse(other.as_str(), &long_prefix).is_ok());
        assert!(DatabaseName::parse(long.as_str(), &long_prefix).is_ok());
    }

    #[test]
    fn no_tenant_database_name_is_a_template_name_for_any_prefix() {
        let catalog = Uuid::now_v7();
        let longest = DatabasePrefix::parse(&"p".repeat(MAX_PREFIX_LEN)).unwrap();
        assert!(template_stem(&longest, catalog).len() + 12 <= MAX_IDENTIFIER_LEN);
        for prefix in ["tenant_", "app", "apptpl", "t", "tenant_tpl_"] {
            let prefix = DatabasePrefix::parse(prefix).unwrap();
            let stem = template_stem(&prefix, catalog);
            let template = format!("{stem}0123456789ab");
            assert!(is_template_name(&template, &stem));
            assert!(!is_template_name(&format!("{stem}0123456789"), &stem));
            // Another catalog (a different random part) has other names.
            assert!(!is_template_name(&template, &template_stem(&prefix, Uuid::now_v7())));
            // Whatever the prefix, the template's name is refused as a
            // tenant database name (its '-' is outside the alphabet).
            for other in ["tenant_", "app", "apptpl", "t", "tenant_tpl_"] {
                let other = DatabasePrefix::parse(other).unwrap();
                assert!(
                    DatabaseName::parse(&template, &other).is_err(),
                    "{template} under {other}"
                );
            }
        }
    }

    #[test]
    fn trash_names_fit_and_no_tenant_can_take_one() {
        for p in ["tenant_", "t", "abcdefghijklmnopqrst"] {
            let prefix = DatabasePrefix::parse(p).unwrap();
            let id = TenantId::new();
            let trash = DatabaseName::trash(&prefix, id);
            assert!(trash.as_str().len() <= MAX_IDENTIFIER_LEN, "{trash}");
            assert!(is_plain_identifier(trash.as_str()), "{trash}");
            assert!(trash.is_trash(&prefix));
            assert!(DatabaseName::parse(trash.as_str(), &prefix).is_err(), "{trash}");
            for slug in ["deleted", "a", "x-deleted-1"] {
                let slug = TenantSlug::parse(slug).unwrap();
                assert!(!DatabaseName::generate(&prefix, &slug, id).is_trash(&prefix));
                assert!(!DatabaseName::with_suffix(&prefix, &slug, "0123abcd").is_trash(&prefix));
            }
        }
    }

    #[test]
    fn prefixes_are_short_plain_identifiers() {
        assert!(DatabasePrefix::parse("tenant_").is_ok());
        assert!(DatabasePrefix::parse(&"p".repeat(21)).is_err());
        assert!(DatabasePrefix::parse("pg_tenant").is_err());
        assert!(DatabasePrefix::parse("1tenant").is_err());
    }

    #[test]
    fn role_names_derive_from_the_tenant_id() {
        let id = TenantId::new();
        let long_prefix = DatabasePrefix::parse(&"p".repeat(20)).unwrap();
        let role = RoleName::for_tenant(&long_prefix, id);
        assert!(role.as_str().len() <= MAX_IDENTIFIER_LEN);
        assert!(role.as_str().ends_with(&id.simple()));
    }

    #[test]
    fn tenant_refs_are_ids_or_slugs() {
        let id = TenantId::new();
        assert_eq!(TenantRef::parse(&id.to_string()).unwrap(), TenantRef::Id(id));
        assert!(matches!(TenantRef::parse("acme").unwrap(), TenantRef::Slug(_)));
        assert!(TenantRef::parse("ACME").is_err());
    }

    #[test]
    fn quoting_doubles_embedded_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Strings near the rules' edges: the alphabet, its neighbours,
        /// quotes, NUL, non-ASCII, lengths around 63.
        fn near_names() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9_-]{0,70}",
                "[a-zA-Z0-9_\\-\"'; .\\x00]{0,70}",
                any::<String>(),
                "(tenant_|app|pg_|template)[a-z0-9_]{0,60}",
            ]
        }

        /// A short prefix and slug that would spell a system name (found
        /// by the property below: prefix `p`, slug `g`).
        #[test]
        fn generated_names_that_would_spell_a_system_name_are_valid_too() {
            for (prefix, slug) in [
                ("p", "g"),
                ("p", "g-x"),
                ("p", "ostgres"),
                ("t", "emplate0"),
                ("te", "mplate1"),
            ] {
                let prefix = DatabasePrefix::parse(prefix).unwrap();
                let slug = TenantSlug::parse(slug).unwrap();
                let name = DatabaseName::generate(&prefix, &slug, TenantId::new());
                assert!(DatabaseName::parse(name.as_str(), &prefix).is_ok(), "{name}");
                let other = DatabaseName::with_suffix(&prefix, &slug, "0badf00d");
                assert!(DatabaseName::parse(other.as_str(), &prefix).is_ok(), "{other}");
            }
        }

        proptest! {
            #[test]
            fn an_accepted_slug_is_a_dns_label_that_reads_back(s in near_names()) {
                if let Ok(slug) = TenantSlug::parse(&s) {
                    prop_assert_eq!(slug.as_str(), s.as_str());
                    prop_assert!((1..=63).contains(&s.len()));
                    prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                    prop_assert!(!s.starts_with('-') && !s.ends_with('-'));
                    prop_assert!(matches!(TenantRef::parse(&s), Ok(TenantRef::Slug(_))));
                }
            }

            #[test]
            fn an_accepted_database_name_needs_no_escaping_and_keeps_its_prefix(
                s in near_names(),
                prefix in prop_oneof![Just("tenant_"), Just("app"), Just("t")],
            ) {
                let prefix = DatabasePrefix::parse(prefix).unwrap();
                if let Ok(name) = DatabaseName::parse(&s, &prefix) {
                    prop_assert_eq!(name.as_str(), s.as_str());
                    prop_assert!(s.len() <= MAX_IDENTIFIER_LEN && s.starts_with(prefix.as_str()));
                    prop_assert!(!s.starts_with("pg_") && !RESERVED_DATABASE_NAMES.contains(&s.as_str()));
                    // Quoting adds the quotes and changes nothing inside.
                    prop_assert_eq!(quote_ident(&s), format!("\"{s}\""));
                    // Never a template name, of any catalog.
                    prop_assert!(!s.contains('-'));
                }
            }

            #[test]
            fn any_tenant_reference_parses_or_is_refused_without_panicking(s in near_names()) {
                match TenantRef::parse(&s) {
                    Ok(TenantRef::Id(id)) => prop_assert!(Uuid::parse_str(&s).is_ok() && !id.to_string().is_empty()),
                    Ok(TenantRef::Slug(slug)) => prop_assert_eq!(slug.as_str(), s.as_str()),
                    Err(_) => {}
                }
            }

            #[test]
            fn quoting_round_trips_any_identifier(s in any::<String>()) {
                let quoted = quote_ident(&s);
                let inner = &quoted[1..quoted.len() - 1];
                prop_assert_eq!(inner.replace("\"\"", "\""), s);
            }

            #[test]
            fn generated_names_are_valid_for_any_slug_and_prefix(
                slug in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
                prefix in "[a-z][a-z0-9_]{0,19}",
            ) {
                prop_assume!(!prefix.starts_with("pg_"));
                let Ok(slug) = TenantSlug::parse(&slug) else { return Ok(()) };
                let prefix = DatabasePrefix::parse(&prefix).unwrap();
                let name = DatabaseName::generate(&prefix, &slug, TenantId::new());
                prop_assert!(DatabaseName::parse(name.as_str(), &prefix).is_ok(), "{}", name);
                let other = DatabaseName::with_suffix(&prefix, &slug, "0badf00d");
                prop_assert!(DatabaseName::parse(other.as_str(), &prefix).is_ok(), "{}", other);
            }
        }
    }
}
