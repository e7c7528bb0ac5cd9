//! Secrets in config: `{ env = "NAME" }` or `{ file = "PATH" }`, never a
//! literal value. Resolved once at start; `Debug` prints `**REDACTED**` and
//! there is deliberately no `Serialize`.

use std::fmt;

use serde::Deserialize;

/// Where a secret comes from, as written in config.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    /// Name of an environment variable holding the secret.
    pub env: Option<String>,
    /// Path of a file holding the secret (surrounding whitespace is trimmed).
    pub file: Option<std::path::PathBuf>,
}

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.env, &self.file) {
            (Some(e), _) => write!(f, "{{ env = {e:?} }}"),
            (_, Some(p)) => write!(f, "{{ file = {p:?} }}"),
            _ => f.write_str("{}"),
        }
    }
}

impl RawSecret {
    /// Reads the secret. The error names the source, never the value.
    pub fn resolve(&self) -> Result<Secret, String> {
        match (&self.env, &self.file) {
            (Some(_), Some(_)) => Err("set either `env` or `file`, not both".into()),
            (None, None) => {
                Err("a secret needs a source: { env = \"NAME\" } or { file = \"/path\" }".into())
            }
            (Some(name), None) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
                Ok(_) => Err(format!("environment variable {name} is empty")),
                Err(_) => Err(format!("environment variable {name} is not set")),
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
                Ok(_) => Err(format!("secret file {} is empty", path.display())),
                Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
            },
        }
    }
}

/// A resolved secret. Only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value obtained at run time (tests, the demo).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call sites are the places a secret leaves the process.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "**REDACTED**");
    }

    #[test]
    fn both_or_neither_source_is_rejected() {
        let both = RawSecret {
            env: Some("A".into()),
            file: Some("/x".into()),
        };
        assert!(both.resolve().is_err());
        let neither = RawSecret {
            env: None,
            file: None,
        };
        assert!(neither.resolve().is_err());
    }
}
