//! `triad template` as a user runs it: the real binary (`TRIAD_BIN`, built and exported by
//! `scripts/test`) prints the same document the library renders, in JSON or YAML, and refuses
//! a bad spec with the spec error and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use provision::spec::StackSpec;
use provision::template::render;
use serde_json::Value;

fn triad(args: &[&str]) -> Output {
    let bin = std::env::var("TRIAD_BIN")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!("TRIAD_BIN is not set: the triad binary is built by `scripts/test`; run the tests through it")
        });
    Command::new(bin).args(args).output().expect("run triad")
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

#[test]
fn prints_the_rendered_template_as_json_and_yaml() {
    let path = example("lean.toml");
    let expected = render(&StackSpec::load(&path).expect("valid example"))
        .to_sorted_value()
        .expect("value");
    let stack = path.to_str().expect("utf-8 path");

    let json = triad(&["template", "--stack", stack]);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let printed: Value = serde_json::from_slice(&json.stdout).expect("json on stdout");
    assert_eq!(printed, expected);

    let yaml = triad(&["--stack", stack, "template", "--format", "yaml"]);
    assert!(
        yaml.status.success(),
        "{}",
        String::from_utf8_lossy(&yaml.stderr)
    );
    let printed: Value = serde_norway::from_slice(&yaml.stdout).expect("yaml on stdout");
    assert_eq!(printed, expected);
}

#[test]
fn refuses_a_bad_spec_with_its_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stack.toml");
    let text = std::fs::read_to_string(example("lean.toml"))
        .expect("lean example")
        .replace("[app]", "[app]\nmin = 4\ndesired = 3");
    std::fs::write(&path, text).expect("write spec");
    let out = triad(&["template", "--stack", path.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing printed on stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "field app.min: min (4) is greater than desired (3); lower min or raise desired"
        ),
        "{err}"
    );
    assert!(err.contains("is not a valid stack spec"), "{err}");
}
