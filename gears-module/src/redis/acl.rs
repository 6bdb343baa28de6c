//! Who may do what: users (`AclUser`), command and key permission
//! checks, the identity of a client, key filters for readers, and the
//! `getkeys-api` answers of RG.INNERHOOK.

use super::*;

/// Commands that check permissions of their own when they run, which the
/// fake client of `RedisModule_Call` (no user) would skip: refused to
/// Python acting for a user.
pub(super) fn escapes_acl(words: &Words) -> bool {
    let cmd = String::from_utf8_lossy(words.first()).to_ascii_lowercase();
    match cmd.as_str() {
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" => true,
        // SORT ... BY/GET patterns read other keys.
        "sort" | "sort_ro" => words.strings.iter().skip(2).any(|s| {
            // SAFETY: live strings of `words`.
            let w = unsafe { string_bytes(*s) };
            w.eq_ignore_ascii_case(b"by") || w.eq_ignore_ascii_case(b"get")
        }),
        _ => false,
    }
}

/// Whether `user` may run the command of `words` (command and keys), by
/// the server's ACLs.
pub(super) fn permitted(ctx: LockedCtx, user: &str, words: &mut Words) -> Result<(), Reply> {
    if escapes_acl(words) {
        return Err(Reply::Error(format!(
            "NOPERM '{}' can not be run from gears on behalf of a user",
            String::from_utf8_lossy(words.first()).to_ascii_lowercase()
        )));
    }
    let Some(u) = AclUser::find(ctx, user) else {
        return Err(Reply::Error(format!(
            "NOPERM the user '{user}' does not exist"
        )));
    };
    // SAFETY: lock held (a `LockedCtx` exists); `words` are live strings.
    let (status, errno) = unsafe {
        let status = raw::RedisModule_ACLCheckCommandPermissions.unwrap()(
            u.0,
            words.strings.as_mut_ptr(),
            words.strings.len() as c_int,
        );
        (status, std::io::Error::last_os_error().raw_os_error())
    };
    if status == raw::REDISMODULE_OK as c_int || errno == Some(ENOENT) {
        // (An unknown command: let the call say so.)
        return Ok(());
    }
    Err(Reply::Error(format!(
        "NOPERM this user has no permissions to run the '{}' command or to access one of its keys",
        String::from_utf8_lossy(words.first()).to_ascii_lowercase()
    )))
}

/// Whether this server files module commands under ACL categories
/// (`RedisModule_SetCommandACLCategories`: Redis 7.2 and later, Valkey).
pub fn acl_categories_supported() -> bool {
    // SAFETY: reads a function pointer the API filled in at load.
    unsafe { raw::RedisModule_SetCommandACLCategories }.is_some()
}

/// Whether `user` may run the command `argv` by the server's ACLs. Called
/// from a command handler (the lock is held).
pub fn may_run(ctx: &Context, user: &str, argv: &[&str]) -> bool {
    let locked = LockedCtx(ctx.ctx, std::marker::PhantomData);
    let argv: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    let mut words = Words::new(locked, &argv);
    permitted(locked, user, &mut words).is_ok()
}

/// Whether Redis asks this call of a `getkeys-api` command for its key
/// positions (ACL key checks, `COMMAND GETKEYS`) instead of running it.
pub fn is_keys_position_request(ctx: &Context) -> bool {
    // SAFETY: a live command context.
    unsafe { raw::RedisModule_IsKeysPositionRequest.unwrap()(ctx.ctx) != 0 }
}

/// Answers a key position request: argument `pos` is a key, read, or read
/// and written when `writes`.
pub fn key_at(ctx: &Context, pos: usize, writes: bool) {
    let flags = if writes {
        raw::REDISMODULE_CMD_KEY_RW
            | raw::REDISMODULE_CMD_KEY_ACCESS
            | raw::REDISMODULE_CMD_KEY_UPDATE
    } else {
        raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS
    };
    // SAFETY: a live context of a key position request.
    unsafe {
        match raw::RedisModule_KeyAtPosWithFlags {
            Some(with_flags) => with_flags(ctx.ctx, pos as c_int, flags as c_int),
            None => raw::RedisModule_KeyAtPos.unwrap()(ctx.ctx, pos as c_int),
        }
    }
}

/// A Redis ACL user, looked up by name, to check key permissions with.
pub struct AclUser(*mut raw::RedisModuleUser);

impl AclUser {
    /// The user called `name`, or `None` if there is none.
    pub fn find(ctx: LockedCtx, name: &str) -> Option<AclUser> {
        let s = LockedString::new(ctx, name.as_bytes());
        // SAFETY: lock held (a `LockedCtx` exists); the user is freed by
        // `Drop`.
        let u = unsafe { raw::RedisModule_GetModuleUserFromUserName.unwrap()(s.ptr()) };
        (!u.is_null()).then(|| AclUser(u))
    }

    /// Whether the user may read `key`.
    pub fn may_read(&self, ctx: LockedCtx, key: &[u8]) -> bool {
        // ACCESS alone asks for read permission (other flags are refused).
        self.may(ctx, key, raw::REDISMODULE_CMD_KEY_ACCESS as c_int)
    }

    /// Whether the user may use `key` as `flags` (ACCESS, INSERT...) says.
    fn may(&self, ctx: LockedCtx, key: &[u8], flags: c_int) -> bool {
        let s = LockedString::new(ctx, key);
        // SAFETY: lock held; a live user and string.
        let status =
            unsafe { raw::RedisModule_ACLCheckKeyPermissions.unwrap()(self.0, s.ptr(), flags) };
        status == raw::REDISMODULE_OK as c_int
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        // SAFETY: obtained from GetModuleUserFromUserName, freed once.
        unsafe { raw::RedisModule_FreeModuleUser.unwrap()(self.0) };
    }
}

/// What `who` may write: everything for the module itself, the keys its
/// user's ACLs allow otherwise.
pub fn write_filter<'a>(ctx: LockedCtx<'a>, who: &Identity) -> impl Fn(&[u8]) -> bool + 'a {
    let user = who.user.as_deref().map(|name| AclUser::find(ctx, name));
    move |key: &[u8]| match &user {
        None => true,
        Some(None) => false,
        Some(Some(u)) => u.may(ctx, key, raw::REDISMODULE_CMD_KEY_INSERT as c_int),
    }
}

/// Whether `user` may read every key (`~*` or `%R~*` among its key
/// patterns), so that no key needs a check of its own.
pub(super) fn reads_all_keys(ctx: LockedCtx, user: &str) -> bool {
    let reply = call_locked(
        ctx,
        c"ACL",
        &[b"GETUSER".to_vec(), user.as_bytes().to_vec()],
        c"",
    );
    let Reply::Array(fields) = reply else {
        return false;
    };
    fields
        .chunks(2)
        .find(|kv| matches!(&kv[0], Reply::Bulk(k) if k == b"keys"))
        .and_then(|kv| match kv.get(1) {
            Some(Reply::Bulk(v)) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        })
        .is_some_and(|keys| {
            keys.split(' ')
                .any(|p| p == "~*" || p == "%R~*" || p == "%RW~*" || p == "%WR~*")
        })
}

/// What `who` may read: everything for the module itself, the keys its
/// user's ACLs allow otherwise (nothing for a user that no longer exists).
/// For `many` keys (a scan), a user who may read every key is found out
/// once instead of checking each key.
pub fn read_filter<'a>(
    ctx: LockedCtx<'a>,
    who: &Identity,
    many: bool,
) -> impl Fn(&[u8]) -> bool + 'a {
    let user = who
        .user
        .as_deref()
        .filter(|name| !(many && reads_all_keys(ctx, name)))
        .map(|name| AclUser::find(ctx, name));
    move |key: &[u8]| match &user {
        None => true,
        Some(None) => false,
        Some(Some(u)) => u.may_read(ctx, key),
    }
}

/// `ENOENT`, the errno of an ACL check of an unknown command.
pub(super) const ENOENT: i32 = 2;

/// Who the client of a command is: its user and its database. A command
/// replayed from the master or the AOF is the module's own; one that our
/// own `call_as` runs is the identity it runs as (its client is a fake one,
/// without a user).
pub fn identity_of(ctx: &Context) -> Identity {
    // SAFETY: `ctx` is a live command context; the returned name is freed.
    let db = unsafe { raw::RedisModule_GetSelectedDb.unwrap()(ctx.ctx) as i64 };
    if is_replayed(ctx) {
        return Identity::module(db);
    }
    // SAFETY: as above; a client id that is not a connected client (a fake
    // client) gives NULL, as does a client without a user.
    let user = unsafe {
        match raw::RedisModule_GetClientUserNameById {
            Some(by_id) => {
                let id = raw::RedisModule_GetClientId.unwrap()(ctx.ctx);
                let name = by_id(ctx.ctx, id);
                if name.is_null() {
                    None
                } else {
                    let u = String::from_utf8_lossy(string_bytes(name)).into_owned();
                    raw::RedisModule_FreeString.unwrap()(ctx.ctx, name);
                    Some(u)
                }
            }
            None => None,
        }
    };
    match user {
        Some(u) => Identity::new(Some(u), db),
        None => CALLING_AS.with(|c| c.borrow().clone()).map_or_else(
            // Lua, FUNCTION or another module's call: the user behind it is
            // unknown, so fail closed (no user can have this name).
            || Identity::new(Some(UNKNOWN_CALLER.into()), db),
            |who| Identity::new(who.user, db),
        ),
    }
}

/// The identity of a caller whose user can not be known: every permission
/// check fails for it (user names can not hold spaces).
pub const UNKNOWN_CALLER: &str = "<unknown caller: Lua, FUNCTION or another module>";
