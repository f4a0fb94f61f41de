//! What the command line and the console both decide, decided once: whether a session can hurt
//! production, what must be typed to confirm a change, and where a GameDay's report goes.
//!
//! Both front ends ask here; neither writes its own rule.

use std::path::{Path, PathBuf};

use provision::port::{BackendKind, StackRef};

use crate::backend;

/// Whether changes must be confirmed with a typed name: on AWS, and on any stack its spec tags
/// as production (`StackSpec::is_tagged_production`), whatever the backend.
pub fn is_production(backend: BackendKind, tagged_production: bool) -> bool {
    backend == BackendKind::Aws || tagged_production
}

/// What must be typed to confirm a change that touches `az` (or, without one, the stack): the
/// AZ's name, else the stack's, where production is at stake; `y` elsewhere.
pub fn confirmation_word(production: bool, stack: &StackRef, az: Option<&str>) -> String {
    if production {
        az.map_or_else(|| stack.name.clone(), str::to_string)
    } else {
        "y".into()
    }
}

/// What must be typed to confirm an action on one instance: its id where production is at
/// stake, `y` elsewhere.
pub fn instance_word(production: bool, instance_id: &str) -> String {
    if production {
        instance_id.to_owned()
    } else {
        "y".into()
    }
}

/// What must be typed to delete the stack: its name, on every backend (a deleted database
/// cannot be undone, production or not).
pub fn destroy_word(stack: &StackRef) -> String {
    stack.name.clone()
}

/// Where a GameDay's report goes: the directory asked for, else
/// `<working area>/<stack>/reports/<unix time the drill started>`.
pub fn report_dir(stack: &StackRef, asked: Option<&Path>, now: time::OffsetDateTime) -> PathBuf {
    match asked {
        Some(dir) => dir.to_path_buf(),
        None => backend::stack_dir(stack).join(format!("reports/{}", now.unix_timestamp())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_is_aws_or_a_tagged_stack() {
        assert!(!is_production(BackendKind::Sandbox, false));
        assert!(is_production(BackendKind::Sandbox, true));
        assert!(is_production(BackendKind::Aws, false));
    }

    #[test]
    fn the_word_to_type_is_the_az_then_the_stack_in_production_and_y_elsewhere() {
        let stack = StackRef::new("demo").expect("name");
        assert_eq!(confirmation_word(false, &stack, Some("eu-west-1a")), "y");
        assert_eq!(
            confirmation_word(true, &stack, Some("eu-west-1a")),
            "eu-west-1a"
        );
        assert_eq!(confirmation_word(true, &stack, None), "demo");
        assert_eq!(destroy_word(&stack), "demo");
        assert_eq!(instance_word(true, "i-0abc"), "i-0abc");
        assert_eq!(instance_word(false, "i-0abc"), "y");
    }

    #[test]
    fn a_report_goes_where_asked_else_under_the_stack_by_time() {
        let stack = StackRef::new("demo").expect("name");
        let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(42);
        assert_eq!(
            report_dir(&stack, Some(Path::new("out")), at),
            PathBuf::from("out")
        );
        assert_eq!(
            report_dir(&stack, None, at),
            backend::stack_dir(&stack).join("reports/42")
        );
    }
}
