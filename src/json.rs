//! Reading JSON objects field by field: each field asked for by name and
//! type, every error naming its field (`tools.github.rules[0].level`), and
//! any field nobody asked for refused as unknown. A leaf: the policy and
//! the control plane's request bodies are read with it.

use serde_json::{Map, Value};

use crate::level::Level;

/// A field that is missing, of the wrong type, unknown or invalid: its
/// path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

pub(crate) fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// An object being read: its fields, its path for errors, and the names
/// asked for, so that a field nobody asked for is refused as unknown.
pub(crate) struct Obj<'a> {
    pub(crate) map: &'a Map<String, Value>,
    pub(crate) path: String,
    asked: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    pub(crate) fn of(value: &'a Value, path: String) -> Result<Obj<'a>, FieldError> {
        match value {
            Value::Object(map) => Ok(Obj { map, path, asked: Vec::new() }),
            _ => Err(err(path, "must be an object")),
        }
    }

    pub(crate) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.asked.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn wrong(&self, key: &str, what: &str) -> FieldError {
        err(self.field(key), format!("must be {what}"))
    }

    pub(crate) fn str(&mut self, key: &'static str) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }

    pub(crate) fn required_str(&mut self, key: &'static str) -> Result<&'a str, FieldError> {
        self.str(key)?.ok_or_else(|| err(self.field(key), "is required"))
    }

    pub(crate) fn bool(&mut self, key: &'static str) -> Result<Option<bool>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(key, "true or false")),
        }
    }

    pub(crate) fn flag(&mut self, key: &'static str) -> Result<bool, FieldError> {
        Ok(self.bool(key)?.unwrap_or(false))
    }

    pub(crate) fn u64(&mut self, key: &'static str) -> Result<Option<u64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.wrong(key, "a whole number of 0 or more")),
        }
    }

    pub(crate) fn f64(&mut self, key: &'static str) -> Result<Option<f64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.wrong(key, "a number")),
        }
    }

    pub(crate) fn obj(&mut self, key: &'static str) -> Result<Option<Obj<'a>>, FieldError> {
        self.get(key).map(|v| Obj::of(v, self.field(key))).transpose()
    }

    /// A list; missing means empty.
    pub(crate) fn list(&mut self, key: &'static str) -> Result<&'a [Value], FieldError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(self.wrong(key, "a list")),
        }
    }

    /// A list of strings; missing means empty.
    pub(crate) fn strings(&mut self, key: &'static str) -> Result<Vec<String>, FieldError> {
        let items = self.list(key)?;
        let field = self.field(key);
        items.iter().enumerate().map(|(i, v)| v.as_str().map(str::to_string).ok_or_else(|| err(format!("{field}[{i}]"), "must be a string"))).collect()
    }

    /// Every field was asked for: anything else is unknown.
    pub(crate) fn done(self) -> Result<(), FieldError> {
        match self.map.keys().find(|k| !self.asked.contains(&k.as_str())) {
            Some(key) => Err(err(self.field(key), "unknown field")),
            None => Ok(()),
        }
    }
}

pub(crate) fn level(value: &Value, field: String) -> Result<Level, FieldError> {
    match value.as_str() {
        Some("read") => Ok(Level::Read),
        Some("write") => Ok(Level::Write),
        Some("admin") => Ok(Level::Admin),
        _ => Err(err(field, "must be \"read\", \"write\" or \"admin\"")),
    }
}
