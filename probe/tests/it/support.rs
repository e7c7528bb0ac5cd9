//! Helpers every check test uses: a check from TOML, validated as the probe
//! would; one run of it; its failure code.

use outpost_probe::{
    check::{self, CheckSpec, FailureCode, Outcome, RawCheck, RunContext},
    config::Problems,
};

/// A check from one `[[checks]]` entry, which must be valid.
pub fn spec(toml_text: &str) -> CheckSpec {
    let raw: RawCheck = toml::from_str(toml_text).expect("check toml parses");
    let mut p = Problems::default();
    let spec = raw.validate("checks[0]", &mut p);
    assert!(p.is_empty(), "{p:?}");
    spec.expect("valid")
}

/// One run of the check in `toml_text`, as probe `test-probe` in `test-region`.
pub async fn run(toml_text: &str) -> Outcome {
    let ctx = RunContext {
        probe_name: "test-probe".into(),
        region: "test-region".into(),
        ..RunContext::default()
    };
    check::run(&spec(toml_text), &ctx).await
}

/// The failure code, `None` when the check passed.
pub fn code(o: &Outcome) -> Option<FailureCode> {
    o.result.as_ref().err().map(|f| f.code())
}
