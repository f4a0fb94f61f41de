//! The templates generated from both examples, as insta snapshots (JSON, the primary format,
//! for the main and the bootstrap stack; YAML for the main stack of `examples/stack.toml`).
//! A change to the generator shows up here as a reviewable diff. Pure rendering, no services.
//!
//! `scripts/check-templates` lints the bootstrap templates from these snapshots, so keep them
//! plain JSON (`assert_snapshot!` of the rendered text).

use std::path::Path;

use provision::spec::StackSpec;
use provision::template::{render, render_bootstrap};

fn example(name: &str) -> StackSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    StackSpec::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn stack_example_main_template() {
    let json = render(&example("stack.toml")).to_json().expect("json");
    insta::assert_snapshot!("stack_main", json);
}

#[test]
fn stack_example_main_template_yaml() {
    let yaml = render(&example("stack.toml")).to_yaml().expect("yaml");
    insta::assert_snapshot!("stack_main_yaml", yaml);
}

#[test]
fn stack_example_bootstrap_template() {
    let json = render_bootstrap(&example("stack.toml"))
        .to_json()
        .expect("json");
    insta::assert_snapshot!("stack_bootstrap", json);
}

#[test]
fn lean_example_main_template() {
    let json = render(&example("lean.toml")).to_json().expect("json");
    insta::assert_snapshot!("lean_main", json);
}

#[test]
fn lean_example_bootstrap_template() {
    let json = render_bootstrap(&example("lean.toml"))
        .to_json()
        .expect("json");
    insta::assert_snapshot!("lean_bootstrap", json);
}
