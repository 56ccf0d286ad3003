//! Binding of module function implementations to the registry's function ids, so the
//! host dispatches `ScriptHost::call` by index, and so a script calling a declared but
//! unimplemented function is refused at start, never at call time.
//!
//! Invariant: `FnTable::fns` has one slot per registry function, indexed by `FnId`.

use super::decls::{FnDecl, FnId, FnImpl, Registry};
use super::interp::{Arg, MsgState};
use super::ir::Script;

/// A synchronous module function implementation for host type `H`.
pub type ImplFn<H> = fn(&mut H, &[Arg<'_>], &mut MsgState) -> i32;

/// Implementations by `FnId`.
pub struct FnTable<H> {
    fns: Vec<Option<ImplFn<H>>>,
}

impl<H> FnTable<H> {
    /// Asks `find(module, decl)` for every host-implemented function of the registry.
    pub fn bind(
        registry: &Registry,
        mut find: impl FnMut(&str, &'static FnDecl) -> Option<ImplFn<H>>,
    ) -> FnTable<H> {
        let fns = registry
            .functions()
            .map(|(_, module, decl)| match decl.imp {
                FnImpl::Host => find(module, decl),
                FnImpl::Core(_) => None,
            })
            .collect();
        FnTable { fns }
    }

    pub fn get(&self, f: FnId) -> Option<ImplFn<H>> {
        self.fns.get(f.0 as usize).copied().flatten()
    }

    /// `module:function` of every host function the script calls (synchronously or under
    /// `async()`/`launch()`) that has no implementation here; the proxy refuses to start
    /// when this is not empty.
    pub fn missing(&self, script: &Script) -> Vec<String> {
        script
            .host_calls
            .iter()
            .filter(|f| self.get(**f).is_none())
            .map(|f| {
                let m = script.registry.module_of(*f).unwrap_or("?");
                let n = script.registry.decl(*f).map_or("?", |d| d.name);
                format!("{m}:{n}")
            })
            .collect()
    }
}
