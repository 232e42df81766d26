//! A saved KV cache, opaque to its users: each model keeps its own kind of state (CPU
//! vectors, GPU buffers) and refuses another model's.

use std::any::Any;
use std::rc::Rc;

use crate::error::{Error, Result};

/// Restoring a snapshot puts the model back exactly where it was. Cloning is cheap: the
/// extractor keeps one per schema and restores it for every document.
#[derive(Clone)]
pub struct KvSnapshot {
    len: usize,
    state: Rc<dyn Any>,
}

impl KvSnapshot {
    pub fn new<T: Any>(len: usize, state: T) -> KvSnapshot {
        KvSnapshot::shared(len, Rc::new(state))
    }

    /// A snapshot of state that others hold too.
    pub fn shared<T: Any>(len: usize, state: Rc<T>) -> KvSnapshot {
        KvSnapshot { len, state }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The model's own state, or [`Error::BadSnapshot`] if another kind of model made it.
    pub fn state<T: Any>(&self) -> Result<&T> {
        self.state.downcast_ref().ok_or(Error::BadSnapshot)
    }

    /// As [`Self::state`], shared rather than borrowed: a cache can resume on it without a copy.
    pub fn state_shared<T: Any>(&self) -> Result<Rc<T>> {
        self.state.clone().downcast().map_err(|_| Error::BadSnapshot)
    }
}

impl std::fmt::Debug for KvSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KvSnapshot({} positions)", self.len)
    }
}
