//! [`ModuleHost`]: what the Python runtime gets from Redis.

use crate::errors::Error;
use crate::keys::KeysReader;
use crate::redis;
use crate::registry;
use crate::state::Gears;
use crate::streams::StreamRunReader;
use crate::timeevents;
use gears_core::registration::{ReaderArgs, Registration};
use gears_core::{Identity, Reader, Reply};
use gears_python::{KeysReaderSpec, LogLevel, PendingRegistration, RedisHost, ScriptScope};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct ModuleHost(pub &'static Gears);

impl RedisHost for ModuleHost {
    fn call(&self, who: &Identity, argv: &[Vec<u8>]) -> Reply {
        redis::call_as(who, argv)
    }

    fn log(&self, level: LogLevel, message: &str) {
        redis::log(level.name(), message);
    }

    fn config_get(&self, key: &str) -> Option<gears_config::Value> {
        self.0.config().get(key)
    }

    fn hashtag(&self) -> String {
        self.0.topology().hashtag().to_owned()
    }

    fn is_cluster(&self) -> bool {
        self.0.cluster_net().is_some()
    }

    fn shard_id(&self) -> Option<String> {
        (!self.0.topology().is_cluster()).then(|| "1".to_owned())
    }

    fn keys_reader(&self, who: Identity, spec: KeysReaderSpec) -> Box<dyn Reader> {
        Box::new(KeysReader::new(spec, who))
    }

    fn stream_reader(&self, who: Identity, key: Vec<u8>, from: Vec<u8>) -> Box<dyn Reader> {
        Box::new(StreamRunReader::new(who, key, from))
    }

    fn check_registration(
        &self,
        args: &ReaderArgs,
        scope: &ScriptScope,
    ) -> Result<(), gears_python::Error> {
        registry::check(self.0, args, scope).map_err(|e| gears_python::Error::Host(e.to_string()))
    }

    fn lock(&self) {
        redis::lock();
    }

    fn unlock(&self) {
        redis::unlock();
    }

    fn create_time_event(
        &self,
        who: &Identity,
        key: &[u8],
        period_ms: u64,
        payload: Vec<u8>,
    ) -> Result<(), gears_python::Error> {
        timeevents::create(self.0, who, key, period_ms, payload, true)
            .map_err(|e| gears_python::Error::Host(e.to_string()))
    }

    fn apply_registration(
        &self,
        reg: Arc<Registration>,
        scope: &ScriptScope,
    ) -> Result<(), gears_python::Error> {
        let pending = PendingRegistration::plain(reg);
        redis::with_lock(|_| -> Result<(), Error> {
            registry::check(self.0, &pending.reg.args, scope)?;
            // The session keeps the requirements it has.
            let requirements = self
                .0
                .engine
                .registrations
                .session(&scope.session)
                .map(|s| s.requirements)
                .unwrap_or_default();
            // Applied on this shard only: in a cluster the step that
            // registers runs on every shard.
            registry::apply(
                self.0,
                scope.identity.db,
                &scope.session,
                None,
                requirements,
                None,
                vec![pending],
            );
            Ok(())
        })
        .map_err(|e| gears_python::Error::Host(e.to_string()))
    }

    fn yield_to_clients(&self) -> bool {
        redis::yield_to_clients();
        self.0.kill_requested.swap(false, Ordering::SeqCst)
    }
}
