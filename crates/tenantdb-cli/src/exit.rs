//! Exit codes, the same for every command (scripts and monitors rely on
//! them):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done, nothing left to report |
//! | 1 | failure: the command could not do its work, or work it did failed (a tenant that did not migrate, an abandoned row that could not be finished) |
//! | 2 | usage: invalid flags, arguments or settings (`TENANTDB_*`) |
//! | 3 | `doctor`: it ran and found problems (1 means it could not check) |

/// Done.
pub const SUCCESS: u8 = 0;
/// The command failed, or part of its work did.
pub const FAILURE: u8 = 1;
/// Invalid flags, arguments or settings.
pub const USAGE: u8 = 2;
/// `doctor` ran and found problems.
pub const PROBLEMS_FOUND: u8 = 3;
