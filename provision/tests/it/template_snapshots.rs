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

/// The scaling policies of a spec with both metrics and scale-in off (the example has only
/// requests per target): the `AWS::AutoScaling::ScalingPolicy` resources alone.
#[test]
fn scaling_policies_for_each_metric() {
    let spec = StackSpec::parse(
        "name = \"shop\"\nregion = \"eu-west-1\"\n[app]\nversion = \"1.0.0\"\nmax = 6\n\
         [app.scaling]\ncpu_percent = 60\nrequests_per_target = 1000\nscale_in = false\n\
         [mailer]\nsender = \"no-reply@example.com\"\n",
    )
    .expect("a valid spec");
    let template: serde_json::Value =
        serde_json::from_str(&render(&spec).to_json().expect("json")).expect("valid json");
    let policies: serde_json::Map<String, serde_json::Value> = template["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::AutoScaling::ScalingPolicy")
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect();
    let json = serde_json::to_string_pretty(&policies).expect("json");
    insta::assert_snapshot!("scaling_policies", json);
}
