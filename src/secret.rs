//! Secret values: upstream credentials, signing keys, the admin key.
//!
//! Invariant: a [`Secret`] can only be read through [`Secret::expose`], one
//! greppable accessor. It has no `Debug`, `Display`, `Serialize` or `Clone`,
//! so it cannot end up in a log line, an error body or a panic message by
//! accident: code that wants to print one has to call `expose` on purpose.

/// A secret byte string.
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into().into_boxed_slice())
    }

    pub fn from_string(value: String) -> Self {
        Secret(value.into_bytes().into_boxed_slice())
    }

    /// The only way to read a secret. Every call site is a place where the
    /// value leaves Airlock's keeping (a MAC key, an injected header).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: do not leave key material in freed linear memory,
        // where a later allocation could hand it to unrelated code.
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}
