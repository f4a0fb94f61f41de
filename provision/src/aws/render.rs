//! A [`Plan`] as text for the terminal, the way Terraform users read plans: one line per
//! resource with its marker (`+` add, `~` change, `-/+` replace, `-` delete), the reasons
//! under it, and a one-line summary; an unchanged stack says "No changes.", and a change set
//! that changes no resource (only parameters, outputs or other template settings) says so. It
//! works on any backend's plan; it lives here because CloudFormation change sets are what it
//! was made for.

use std::fmt::Write as _;

use crate::port::{ChangeAction, Plan};

/// The plan as text, ending with a newline.
pub fn render_plan(plan: &Plan) -> String {
    let mut out = String::new();
    if !plan.prepare.is_empty() {
        let _ = writeln!(out, "First:");
        for line in &plan.prepare {
            let _ = writeln!(out, "  + {line}");
        }
        let _ = writeln!(out);
    }
    out.push_str(&render_stack_changes(plan));
    if !plan.blockers.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Cannot apply yet:");
        for line in &plan.blockers {
            let _ = writeln!(out, "  ! {line}");
        }
    }
    out
}

/// The stack's own changes.
fn render_stack_changes(plan: &Plan) -> String {
    let stack = plan.stack();
    if !plan.changes_stack() {
        return format!("No changes. Stack {stack} already matches the spec.\n");
    }
    let mut out = String::new();
    let verb = if plan.creates_stack {
        "create"
    } else {
        "update"
    };
    let _ = writeln!(out, "Plan to {verb} stack {stack}:");
    let _ = writeln!(out);
    if plan.changes.is_empty() {
        let _ = writeln!(
            out,
            "  No resource changes: only the stack's parameters, outputs or other template \
             settings change."
        );
    }
    let id_width = plan
        .changes
        .iter()
        .map(|c| c.logical_id.len())
        .max()
        .unwrap_or(0);
    let type_width = plan
        .changes
        .iter()
        .map(|c| c.resource_type.len())
        .max()
        .unwrap_or(0);
    for change in &plan.changes {
        let mut line = format!(
            "  {:<3} {:<id_width$}  {:<type_width$}",
            change.action.marker(),
            change.logical_id,
            change.resource_type,
        );
        if let Some(physical) = &change.physical_id {
            let _ = write!(line, "  {physical}");
        }
        if change.action == ChangeAction::Replace {
            line.push_str("  (replacement)");
        }
        let _ = writeln!(out, "{}", line.trim_end());
        for reason in &change.reasons {
            let _ = writeln!(out, "        {reason}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Plan: {}.", plan.summary());
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::macros::datetime;

    use super::*;
    use crate::port::{DesiredStack, ResourceChange, StackRef};

    fn plan(creates_stack: bool, changes: Vec<ResourceChange>) -> Plan {
        Plan {
            desired: DesiredStack {
                stack: StackRef::new("shop-prod").expect("valid name"),
                template_body: "{}".into(),
                parameters: BTreeMap::new(),
                tags: BTreeMap::new(),
                spec: serde_json::Value::Null,
            },
            creates_stack,
            change_set: Some("arn:cs".into()),
            changes,
            prepare: Vec::new(),
            blockers: Vec::new(),
            planned_at: datetime!(2026-01-01 00:00 UTC),
        }
    }

    fn change(id: &str, kind: &str, action: ChangeAction, reasons: &[&str]) -> ResourceChange {
        ResourceChange {
            logical_id: id.into(),
            resource_type: kind.into(),
            physical_id: (action != ChangeAction::Add).then(|| format!("{id}-phys")),
            action,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn every_marker_reason_and_the_summary() {
        let text = render_plan(&plan(
            false,
            vec![
                change("Topic", "AWS::SNS::Topic", ChangeAction::Add, &[]),
                change(
                    "LaunchTemplate",
                    "AWS::EC2::LaunchTemplate",
                    ChangeAction::Modify,
                    &["Properties.LaunchTemplateData changes"],
                ),
                change(
                    "Database",
                    "AWS::RDS::DBInstance",
                    ChangeAction::Replace,
                    &[
                        "will be replaced",
                        "Properties.Engine changes; forces replacement",
                    ],
                ),
                change("OldQueue", "AWS::SQS::Queue", ChangeAction::Delete, &[]),
            ],
        ));
        assert_eq!(
            text,
            "Plan to update stack shop-prod:\n\
             \n  \
             +   Topic           AWS::SNS::Topic\n  \
             ~   LaunchTemplate  AWS::EC2::LaunchTemplate  LaunchTemplate-phys\n        \
             Properties.LaunchTemplateData changes\n  \
             -/+ Database        AWS::RDS::DBInstance      Database-phys  (replacement)\n        \
             will be replaced\n        \
             Properties.Engine changes; forces replacement\n  \
             -   OldQueue        AWS::SQS::Queue           OldQueue-phys\n\
             \n\
             Plan: 1 to add, 1 to change, 1 to replace, 1 to delete.\n"
        );
    }

    #[test]
    fn a_new_stack_says_create() {
        let text = render_plan(&plan(
            true,
            vec![change("Vpc", "AWS::EC2::VPC", ChangeAction::Add, &[])],
        ));
        assert!(
            text.starts_with("Plan to create stack shop-prod:\n"),
            "{text}"
        );
        assert!(text.ends_with("Plan: 1 to add, 0 to change, 0 to replace, 0 to delete.\n"));
    }

    #[test]
    fn a_change_set_without_resource_changes_is_not_no_changes() {
        let text = render_plan(&plan(false, Vec::new()));
        assert_eq!(
            text,
            "Plan to update stack shop-prod:\n\
             \n  \
             No resource changes: only the stack's parameters, outputs or other template \
             settings change.\n\
             \n\
             Plan: 0 to add, 0 to change, 0 to replace, 0 to delete.\n"
        );
    }

    #[test]
    fn an_unchanged_stack_says_no_changes() {
        let mut unchanged = plan(false, Vec::new());
        unchanged.change_set = None;
        assert_eq!(
            render_plan(&unchanged),
            "No changes. Stack shop-prod already matches the spec.\n"
        );
    }

    #[test]
    fn work_before_the_stack_and_blockers_frame_the_changes() {
        let mut unchanged = plan(false, Vec::new());
        unchanged.change_set = None;
        unchanged.prepare = vec!["upload webapp 2.0.0 from ./webapp".into()];
        unchanged.blockers = vec!["mailer 2.0.0 is not in the bucket".into()];
        assert!(!unchanged.is_empty());
        assert_eq!(
            render_plan(&unchanged),
            "First:\n  \
             + upload webapp 2.0.0 from ./webapp\n\
             \n\
             No changes. Stack shop-prod already matches the spec.\n\
             \n\
             Cannot apply yet:\n  \
             ! mailer 2.0.0 is not in the bucket\n"
        );
    }
}
