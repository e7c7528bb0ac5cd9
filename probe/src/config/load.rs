//! Strict config loading shared by the probe and the controller.
//!
//! A file is parsed as TOML, then overridden by an explicit allow-list of
//! `OUTPOST_*` environment variables, then by `--set key=value` from the
//! command line (file < environment < command line), then deserialized into `Raw*` types that
//! all carry `#[serde(deny_unknown_fields)]`. Any problem becomes a
//! [`ConfigError`] naming the key's path (`sinks[0].pagerduty.routing_kye`)
//! and its source (file or environment variable); the binaries exit 78 on it.
//! An unknown `OUTPOST_*` variable is an error too: a typo there must not
//! silently fall back to a default. A misspelled key gets the nearest known
//! one (at most two edits away) with its full path: `unknown field
//! `regoin` …; did you mean `probe.region`?`.

use std::{collections::BTreeSet, fmt, path::Path};

use serde::de::DeserializeOwned;

/// One problem found in config: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path (`checks[2].http.url`), or the environment variable name.
    pub path: String,
    /// Lowercase message naming the offending value and a fix.
    pub message: String,
}

/// Every problem found in a config source. Exit code 78 (EX_CONFIG).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other source) the problems come from.
    pub source: String,
    /// At least one problem.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// Process exit code for configuration errors (sysexits EX_CONFIG).
    pub const EXIT_CODE: i32 = 78;

    /// A single problem.
    pub fn one(
        source: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            problems: vec![Problem {
                path: path.into(),
                message: message.into(),
            }],
        }
    }

    /// True if some problem is at exactly this path.
    pub fn has_path(&self, path: &str) -> bool {
        self.problems.iter().any(|p| p.path == path)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration in {}:", self.source)?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.path, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems during `validate()`.
///
/// Also carries how check secrets are treated: resolved (the probe, the
/// default) or, after [`Problems::secrets_by_reference`], only checked for
/// their shape (the controller, which ships the references to the probes
/// and never holds check credentials).
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>, bool);

impl Problems {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// From now on check secrets are validated for shape only, not read
    /// (`false` turns resolving back on).
    pub fn secrets_by_reference(&mut self, by_reference: bool) {
        self.1 = by_reference;
    }

    /// Resolves a check's secret — or, by reference, checks its shape and
    /// returns an empty placeholder — recording a problem at `path`.
    pub fn secret(
        &mut self,
        raw: &super::RawSecret,
        path: impl Into<String>,
    ) -> Option<super::Secret> {
        let res = if self.1 {
            raw.check_shape().map(|()| super::Secret::new(""))
        } else {
            raw.resolve()
                .inspect(|s| crate::redact::remember(s.expose()))
        };
        res.map_err(|e| self.push(path, e)).ok()
    }

    /// Number of problems recorded so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ok when empty, else a [`ConfigError`] for `source`.
    pub fn finish(self, source: &str) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                source: source.to_owned(),
                problems: self.0,
            })
        }
    }
}

/// An environment variable the process accepts, and the config key it sets.
#[derive(Debug, Clone, Copy)]
pub struct EnvOverride {
    /// Variable name, e.g. `OUTPOST_CONTROLLER_URL`.
    pub var: &'static str,
    /// Dotted TOML path it overrides, e.g. `controller.url`; empty for
    /// variables read elsewhere (such as `OUTPOST_LOG`).
    pub key: &'static str,
}

/// Reads `path`, applies allowed environment overrides, and deserializes.
pub fn load_file<T: DeserializeOwned>(path: &Path, env: &[EnvOverride]) -> Result<T, ConfigError> {
    load_file_with(path, env, &[])
}

/// Like [`load_file`], then `sets` (`--set key=value`, each `"key=value"`)
/// applied last: file < environment < command line.
pub fn load_file_with<T: DeserializeOwned>(
    path: &Path,
    env: &[EnvOverride],
    sets: &[String],
) -> Result<T, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::one(&source, "(file)", format!("cannot read {source}: {e}")))?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    load_str_with(&text, &source, env, &vars, sets)
}

/// Like [`load_file`] with the text and environment given (tests).
pub fn load_str<T: DeserializeOwned>(
    text: &str,
    source: &str,
    env: &[EnvOverride],
    vars: &[(String, String)],
) -> Result<T, ConfigError> {
    load_str_with(text, source, env, vars, &[])
}

/// One `--set key=value`: a dotted key into tables (`server.grpc_listen`;
/// entries of arrays such as `[[checks]]` are not addressable) and a TOML value (`30`, `true`, `"30s"`, `["a"]`, `{ env = "T" }`); a
/// value that is not TOML is taken as a string, so `--set probe.region=eu-west` works.
fn parse_set(set: &str) -> Result<(String, toml::Value), String> {
    let Some((key, raw)) = set.split_once('=') else {
        return Err(format!(
            "--set {set:?} has no '=': use --set key=value, e.g. --set server.grpc_listen=0.0.0.0:7443"
        ));
    };
    let key = key.trim();
    let valid = !key.is_empty()
        && key.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !valid {
        return Err(format!(
            "--set key {key:?} is not a dotted path of lowercase keys, e.g. server.grpc_listen"
        ));
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    Ok((key.to_owned(), value))
}

/// [`load_str`] with `--set` overrides applied after the environment.
pub fn load_str_with<T: DeserializeOwned>(
    text: &str,
    source: &str,
    env: &[EnvOverride],
    vars: &[(String, String)],
    sets: &[String],
) -> Result<T, ConfigError> {
    let mut value: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError::one(source, "(syntax)", e.to_string().trim().replace('\n', " "))
    })?;

    // Variables referenced by `{ env = "NAME" }` secrets are known, whatever
    // their prefix. Read from the tree in place (owned names: the overrides
    // below change the tree) rather than from a copy of the whole tree.
    let mut secret_vars = BTreeSet::new();
    for v in value.values() {
        collect_secret_env_names(v, &mut secret_vars);
    }
    let secret_vars: BTreeSet<String> = secret_vars.into_iter().map(str::to_owned).collect();

    let mut problems = Problems::default();
    for (name, val) in vars {
        if !name.starts_with("OUTPOST_") {
            continue;
        }
        match env.iter().find(|e| e.var == name) {
            Some(o) if o.key.is_empty() => {}
            Some(o) => set_path(&mut value, o.key, parse_env_value(val)),
            None if secret_vars.contains(name) => {}
            None => {
                let known: Vec<&str> = env.iter().map(|e| e.var).collect();
                problems.push(
                    name.clone(),
                    format!(
                        "unknown environment variable {name}; known OUTPOST_* variables: {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }
    let mut set_keys = Vec::new();
    for set in sets {
        match parse_set(set) {
            Ok((key, v)) => {
                set_path(&mut value, &key, v);
                set_keys.push(key);
            }
            Err(e) => problems.push("--set", e),
        }
    }
    problems.finish(source)?;

    let de = toml::Value::Table(value);
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path.is_empty() || path == "." {
            "(root)".to_owned()
        } else {
            path
        };
        let from_env = env
            .iter()
            .find(|o| !o.key.is_empty() && path.starts_with(o.key));
        // toml appends "in `a.b`" on a second line; the path above says it better.
        let full = e.into_inner().to_string();
        let mut message = full.lines().next().unwrap_or_default().trim().to_owned();
        if let Some(hint) = did_you_mean(&path, &message) {
            message = format!("{message}; did you mean {hint}?");
        }
        let from_set = set_keys
            .iter()
            .rev()
            .find(|k| path == **k || path.starts_with(&format!("{k}.")));
        if let Some(k) = from_set {
            message = format!("{message} (set by --set {k})");
        } else if let Some(o) = from_env
            && vars.iter().any(|(n, _)| n == o.var)
        {
            message = format!("{message} (set by environment variable {})", o.var);
        }
        ConfigError::one(source, path, message)
    })
}

/// The known key (or variant) closest to a misspelled one, from serde's
/// `unknown field `x`, expected one of `a`, `b`` message, as the full key
/// path (`checks[0].http.url`) or the variant (`"http2"`). Only within two
/// edits, and closer than the word's own length, so `x` suggests nothing.
fn did_you_mean(path: &str, message: &str) -> Option<String> {
    let (what, rest) = if let Some(r) = message.strip_prefix("unknown field `") {
        ("field", r)
    } else if let Some(r) = message.strip_prefix("unknown variant `") {
        ("variant", r)
    } else {
        return None;
    };
    let (typed, expected) = rest.split_once('`')?;
    let known = expected.split('`').skip(1).step_by(2);
    let (best, distance) = known
        .map(|k| (k, edit_distance(typed, k)))
        .min_by_key(|(_, d)| *d)?;
    if distance == 0 || distance > 2 || distance >= typed.chars().count() {
        return None;
    }
    Some(match what {
        "field" => {
            let parent = path.strip_suffix(typed).unwrap_or("");
            format!("`{parent}{best}`")
        }
        _ => format!("\"{best}\""),
    })
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn collect_secret_env_names<'a>(v: &'a toml::Value, out: &mut BTreeSet<&'a str>) {
    match v {
        toml::Value::Table(t) => {
            if t.len() == 1
                && let Some(toml::Value::String(name)) = t.get("env")
            {
                out.insert(name.as_str());
            }
            for v in t.values() {
                collect_secret_env_names(v, out);
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| collect_secret_env_names(v, out)),
        _ => {}
    }
}

fn set_path(root: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut table = root;
    for p in parts {
        let entry = table
            .entry(p.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(t) = entry else { return };
        table = t;
    }
    table.insert(last.to_owned(), value);
}

fn parse_env_value(raw: &str) -> toml::Value {
    // Numbers and booleans keep their type; everything else is a string.
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    toml::Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        server: Server,
        #[serde(default)]
        sinks: Vec<Sink>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Server {
        listen: String,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sink {
        #[allow(dead_code)]
        name: String,
        #[allow(dead_code)]
        pagerduty: Option<Pd>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pd {
        #[allow(dead_code)]
        routing_key: String,
    }

    const ENV: &[EnvOverride] = &[
        EnvOverride {
            var: "OUTPOST_LISTEN",
            key: "server.listen",
        },
        EnvOverride {
            var: "OUTPOST_LOG",
            key: "",
        },
    ];

    #[test]
    fn misspelled_nested_key_names_its_path() {
        let text = "[server]\nlisten = \"x\"\n[[sinks]]\nname = \"pd\"\npagerduty = { routing_kye = \"k\" }\n";
        let err = load_str::<Outer>(text, "c.toml", ENV, &[]).unwrap_err();
        assert!(err.has_path("sinks[0].pagerduty.routing_kye"), "{err}");
    }

    #[test]
    fn misspelled_key_suggests_the_nearest_with_its_full_path() {
        let text = "[server]\nlisten = \"x\"\n[[sinks]]\nname = \"pd\"\npagerduty = { routing_kye = \"k\" }\n";
        let err = load_str::<Outer>(text, "c.toml", ENV, &[]).unwrap_err();
        let msg = &err.problems[0].message;
        assert!(
            msg.ends_with("did you mean `sinks[0].pagerduty.routing_key`?"),
            "{msg}"
        );
        // Top level, and nothing close enough: no suggestion.
        let err = load_str::<Outer>("[servr]\nlisten = \"x\"\n", "c.toml", ENV, &[]).unwrap_err();
        assert!(
            err.problems[0].message.ends_with("did you mean `server`?"),
            "{err}"
        );
        let err = load_str::<Outer>("[server]\nlisten = \"x\"\ncolour = 1\n", "c.toml", ENV, &[])
            .unwrap_err();
        assert!(!err.problems[0].message.contains("did you mean"), "{err}");
    }

    #[test]
    fn suggestions_stay_within_two_edits() {
        assert_eq!(edit_distance("regoin", "region"), 2);
        assert_eq!(edit_distance("url", "urls"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        let m = "unknown variant `http3`, expected one of `auto`, `http1`, `http2`";
        assert_eq!(
            did_you_mean("checks[0].http.http_version", m).as_deref(),
            Some("\"http1\"")
        );
        let m = "unknown field `x`, expected `y`";
        assert_eq!(did_you_mean("a.x", m), None);
        let m = "unknown field `intervall`, expected one of `id`, `interval`, `timeout`";
        assert_eq!(
            did_you_mean("checks[2].intervall", m).as_deref(),
            Some("`checks[2].interval`")
        );
    }

    #[test]
    fn set_overrides_the_environment_and_names_itself_in_errors() {
        let vars = vec![("OUTPOST_LISTEN".to_owned(), "env".to_owned())];
        let sets = vec!["server.listen=0.0.0.0:9".to_owned()];
        let c = load_str_with::<Outer>("[server]\nlisten = \"a\"\n", "c.toml", ENV, &vars, &sets)
            .unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9");
        // A TOML value keeps its type: an integer is not a string here.
        let sets = vec!["server.listen=5".to_owned()];
        let err = load_str_with::<Outer>("[server]\nlisten = \"a\"\n", "c.toml", ENV, &[], &sets)
            .unwrap_err();
        assert!(err.has_path("server.listen"), "{err}");
        assert!(
            err.problems[0]
                .message
                .ends_with("(set by --set server.listen)"),
            "{err}"
        );
        // A misspelled key is refused like one in the file, with a suggestion.
        let sets = vec!["server.listn=x".to_owned()];
        let err = load_str_with::<Outer>("[server]\nlisten = \"a\"\n", "c.toml", ENV, &[], &sets)
            .unwrap_err();
        assert!(err.has_path("server.listn"), "{err}");
        assert!(
            err.problems[0]
                .message
                .contains("did you mean `server.listen`?"),
            "{err}"
        );
        for bad in ["server.listen", "=x", "Server.listen=x", "a..b=1"] {
            let err =
                load_str_with::<Outer>("", "c.toml", ENV, &[], &[bad.to_owned()]).unwrap_err();
            assert!(err.has_path("--set"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_outpost_variable_is_an_error() {
        let vars = vec![("OUTPOST_LISTN".to_owned(), "x".to_owned())];
        let err =
            load_str::<Outer>("[server]\nlisten = \"a\"\n", "c.toml", ENV, &vars).unwrap_err();
        assert!(err.has_path("OUTPOST_LISTN"), "{err}");
    }

    #[test]
    fn allowed_variable_overrides_the_file() {
        let vars = vec![
            ("OUTPOST_LISTEN".to_owned(), "0.0.0.0:1".to_owned()),
            ("OUTPOST_LOG".to_owned(), "debug".to_owned()),
        ];
        let c = load_str::<Outer>("[server]\nlisten = \"a\"\n", "c.toml", ENV, &vars).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:1");
        assert!(c.sinks.is_empty());
    }

    #[test]
    fn variables_named_by_secrets_are_known() {
        let vars = vec![("OUTPOST_PD_KEY".to_owned(), "x".to_owned())];
        let text = "[server]\nlisten = \"a\"\n[[sinks]]\nname = \"pd\"\n[sinks.x]\nenv = \"OUTPOST_PD_KEY\"\n";
        // The unknown key `x` fails deserialization, but the variable itself is accepted.
        let err = load_str::<Outer>(text, "c.toml", ENV, &vars).unwrap_err();
        assert!(!err.has_path("OUTPOST_PD_KEY"));
    }
}
