//! Secrets in config: `{ env = "NAME" }`, `{ file = "PATH" }` or
//! `{ credential = "NAME" }` (a systemd credential: the file `NAME` in
//! `$CREDENTIALS_DIRECTORY`, which `LoadCredential=` fills), never a literal
//! value. Resolved once at start; `Debug` prints `**REDACTED**` and there is
//! deliberately no `Serialize` of a value.
//!
//! Check secrets resolve on the probe only: the controller validates their
//! shape ([`RawSecret::check_shape`], through
//! [`super::Problems::secrets_by_reference`]) and ships the reference.

use std::fmt;

use serde::Deserialize;

/// The variable systemd sets to the directory of a unit's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Where a secret comes from, as written in config.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    /// Name of an environment variable holding the secret.
    pub env: Option<String>,
    /// Path of a file holding the secret (surrounding whitespace is trimmed).
    pub file: Option<std::path::PathBuf>,
    /// Name of a systemd credential (`LoadCredential=NAME:/path` in the
    /// unit): read from `$CREDENTIALS_DIRECTORY/NAME`.
    #[serde(default)]
    pub credential: Option<String>,
}

// Exactly one source: the derive would allow `{}` and several keys at once.
impl schemars::JsonSchema for RawSecret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "A secret, never a literal value: exactly one of { env = \"NAME\" }, { file = \"/path\" } or { credential = \"NAME\" } (a systemd credential). Read once at start.",
            "properties": {
                "env": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Name of an environment variable holding the secret.",
                },
                "file": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Path of a file holding the secret (surrounding whitespace is trimmed).",
                },
                "credential": {
                    "type": "string",
                    "minLength": 1,
                    "pattern": "^[^/]+$",
                    "description": "Name of a systemd credential (LoadCredential=NAME:/path in the unit): read from $CREDENTIALS_DIRECTORY/NAME.",
                },
            },
            "additionalProperties": false,
            "minProperties": 1,
            "maxProperties": 1,
            "examples": [{ "env": "OUTPOST_PROBE_TOKEN" }, { "file": "/etc/outpost/token" }],
        })
    }
}

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.env, &self.file, &self.credential) {
            (Some(e), _, _) => write!(f, "{{ env = {e:?} }}"),
            (_, Some(p), _) => write!(f, "{{ file = {p:?} }}"),
            (_, _, Some(c)) => write!(f, "{{ credential = {c:?} }}"),
            _ => f.write_str("{}"),
        }
    }
}

impl RawSecret {
    /// Exactly one source, well formed; nothing is read.
    pub fn check_shape(&self) -> Result<(), String> {
        let sources = [
            self.env.is_some(),
            self.file.is_some(),
            self.credential.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => {
                return Err("a secret needs a source: { env = \"NAME\" }, { file = \"/path\" } or { credential = \"NAME\" }".into());
            }
            1 => {}
            _ => return Err("set one of `env`, `file` or `credential`, not several".into()),
        }
        if let Some(name) = &self.env
            && (name.is_empty() || name.contains('='))
        {
            return Err(format!("invalid environment variable name {name:?}"));
        }
        if let Some(name) = &self.credential
            && (name.is_empty() || name.contains('/') || name == "." || name == "..")
        {
            return Err(format!(
                "invalid credential name {name:?}: the name given to LoadCredential=, without '/'"
            ));
        }
        if let Some(path) = &self.file
            && !path.is_absolute()
            && path.as_os_str().is_empty()
        {
            return Err("the secret file path is empty".into());
        }
        Ok(())
    }

    /// Reads the secret. The error names the source, never the value.
    pub fn resolve(&self) -> Result<Secret, String> {
        self.check_shape()?;
        if let Some(name) = &self.env {
            return match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
                Ok(_) => Err(format!("environment variable {name} is empty")),
                Err(_) => Err(format!("environment variable {name} is not set")),
            };
        }
        if let Some(name) = &self.credential {
            let Some(dir) = std::env::var_os(CREDENTIALS_DIRECTORY) else {
                return Err(format!(
                    "credential {name:?}: ${CREDENTIALS_DIRECTORY} is not set; systemd sets it for a unit with LoadCredential={name}:/path"
                ));
            };
            let path = std::path::Path::new(&dir).join(name);
            return read_file(&path, &format!("credential {name:?}"));
        }
        match &self.file {
            Some(path) => read_file(path, "secret file"),
            None => Err("a secret needs a source".into()),
        }
    }
}

fn read_file(path: &std::path::Path, what: &str) -> Result<Secret, String> {
    match std::fs::read_to_string(path) {
        Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
        Ok(_) => Err(format!("{what} {} is empty", path.display())),
        Err(e) => Err(format!("cannot read {what} {}: {e}", path.display())),
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(env: Option<&str>, file: Option<&str>, credential: Option<&str>) -> RawSecret {
        RawSecret {
            env: env.map(Into::into),
            file: file.map(Into::into),
            credential: credential.map(Into::into),
        }
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "**REDACTED**");
    }

    #[test]
    fn exactly_one_source_is_accepted() {
        assert!(raw(Some("A"), Some("/x"), None).resolve().is_err());
        assert!(raw(Some("A"), None, Some("c")).check_shape().is_err());
        assert!(raw(None, None, None).resolve().is_err());
        assert!(raw(None, None, Some("../etc")).check_shape().is_err());
        assert!(raw(None, None, Some("probe.token")).check_shape().is_ok());
        // Shape only: an unset variable is fine until it is resolved.
        let unset = raw(Some("OUTPOST_TEST_SURELY_UNSET_VAR"), None, None);
        assert!(unset.check_shape().is_ok());
        assert!(unset.resolve().unwrap_err().contains("is not set"));
    }
}
