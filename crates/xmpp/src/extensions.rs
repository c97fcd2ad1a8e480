//! Per-session state that belongs to modules: one value per type, created on first use.
//!
//! The core keeps no module's state in [`crate::sessions::Session`]; a module declares its own
//! type (`presence::State`, `roster::Interest`, …) and reaches it through
//! [`Extensions::with`]. Only the module that owns a type names it, so no other code can
//! depend on its fields by accident.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// A typed map, one value per type, behind one lock per session.
#[derive(Default)]
pub struct Extensions(Mutex<HashMap<TypeId, Box<dyn Any + Send>>>);

impl Extensions {
    /// Runs `f` on this session's `T`, created with `T::default()` the first time.
    ///
    /// The lock is held while `f` runs: `f` must not reach for another extension of the same
    /// session (it would wait for itself). Keep it to reading and updating plain data.
    pub fn with<T: Default + Send + 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut map = self.lock();
        let value = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        match value.downcast_mut::<T>() {
            Some(t) => f(t),
            // The key is T's own TypeId: the value is always a T.
            None => unreachable!("extension stored under another type's id"),
        }
    }

    /// A copy of this session's `T`, without creating it.
    pub fn get<T: Clone + Send + 'static>(&self) -> Option<T> {
        self.lock()
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TypeId, Box<dyn Any + Send>>> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({} values)", self.lock().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Clone, PartialEq, Debug)]
    struct Counter(u32);

    #[derive(Default)]
    struct Flag(bool);

    #[test]
    fn each_type_has_its_own_value_created_on_first_use() {
        let ext = Extensions::default();
        assert_eq!(ext.get::<Counter>(), None);
        ext.with(|c: &mut Counter| c.0 += 2);
        ext.with(|f: &mut Flag| f.0 = true);
        ext.with(|c: &mut Counter| c.0 += 1);
        assert_eq!(ext.get::<Counter>(), Some(Counter(3)));
        assert!(ext.with(|f: &mut Flag| f.0));
    }
}
