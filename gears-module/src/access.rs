//! Who may run which `RG.*` command: the flags and ACL categories each
//! command is created with (the table in `lib.rs`), and, on servers that
//! can not file module commands under categories, the same rule enforced
//! here.
//!
//! Redis 7.0 puts every module command in no category (`-@admin` does not
//! cover it) and has no `RedisModule_SetCommandACLCategories`. There an
//! administrative `RG.*` command is allowed only to a user who may also run
//! the Redis command of the same nature (`RG.CONFIGSET` needs what
//! `CONFIG SET` needs), so `+@all -@admin -@dangerous` means the same with
//! or without the categories.

use crate::errors::Error;
use crate::redis;
use redis_module::{Context, RedisString};

/// The administrative commands and the Redis command of the same nature
/// whose permission they also need where categories are missing.
const ADMIN: &[(&str, &[&str])] = &[
    ("rg.configset", &["CONFIG", "SET"]),
    ("rg.pyimportreq", &["MODULE", "LOAD"]),
    ("rg.refreshcluster", &["CLUSTER", "SAVECONFIG"]),
    ("rg.hello", &["PSYNC"]),
    ("rg.innermsgcommand", &["PSYNC"]),
    ("rg.networktest", &["PSYNC"]),
    ("rg.pykill", &["CLIENT", "KILL"]),
    ("rg.pyprofile", &["SLOWLOG", "RESET"]),
    ("rg.innerregister", &["PSYNC"]),
    ("rg.innerunregister", &["PSYNC"]),
    ("rg.innertimeevent", &["PSYNC"]),
];

/// The Redis command an administrative `RG.*` command stands for, if
/// `name` is one.
pub fn admin_equivalent(name: &[u8]) -> Option<&'static [&'static str]> {
    ADMIN
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|(_, eq)| *eq)
}

/// On a server without ACL categories for modules: refuses an
/// administrative command to a client whose user may not run its Redis
/// equivalent. Replayed commands (master, AOF) are the server's own.
pub fn check(ctx: &Context, args: &[RedisString]) -> Result<(), Error> {
    if redis::acl_categories_supported() {
        return Ok(());
    }
    // Every command passes here: no allocation unless it is an
    // administrative one.
    let Some(name) = args.first().map(|a| a.as_slice()) else {
        return Ok(());
    };
    let Some(equivalent) = admin_equivalent(name) else {
        return Ok(());
    };
    if redis::is_replayed(ctx) {
        return Ok(());
    }
    // A script's or another module's caller is unknown (a user that can
    // not exist): refused, failing closed.
    let user = redis::identity_of(ctx).user;
    match user {
        None => Ok(()),
        Some(u) if redis::may_run(ctx, &u, equivalent) => Ok(()),
        Some(_) => Err(Error::NoPermission(
            String::from_utf8_lossy(name).into_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_commands_have_an_equivalent() {
        assert_eq!(
            admin_equivalent(b"RG.CONFIGSET"),
            Some(&["CONFIG", "SET"][..])
        );
        assert_eq!(admin_equivalent(b"rg.pyexecute"), None);
        assert_eq!(admin_equivalent(b"rg.configget"), None);
    }
}
