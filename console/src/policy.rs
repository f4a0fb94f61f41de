//! What the command line and the console both decide, decided once: whether a session can hurt
//! production, what must be typed to confirm a change, and where a GameDay's report goes.
//!
//! Both front ends ask here; neither writes its own rule.

use std::path::{Path, PathBuf};

use provision::port::{BackendKind, StackRef};

use crate::backend;
use crate::load::generator::Schedule;

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

/// Where a load's report goes: the directory asked for, else
/// `<working area>/<stack>/reports/load-<unix time the load started>`.
pub fn load_report_dir(
    stack: &StackRef,
    asked: Option<&Path>,
    now: time::OffsetDateTime,
) -> PathBuf {
    match asked {
        Some(dir) => dir.to_path_buf(),
        None => backend::stack_dir(stack).join(format!("reports/load-{}", now.unix_timestamp())),
    }
}

/// What a load's confirmation says: the endpoint and the peak rate it will be sent.
pub fn load_prompt(stack: &StackRef, endpoint: &str, schedule: &Schedule) -> String {
    format!(
        "This sends up to {} req/s to {endpoint} (stack {}) for {} s.",
        schedule.peak(),
        stack.name,
        schedule.duration.as_secs()
    )
}

/// The window AWS WAF counts a rate-based rule's requests over: five minutes by default
/// ("EvaluationWindowSec … Default: 300", AWS WAF API Reference, RateBasedStatement), the
/// window the template's rule leaves in place.
pub const WAF_WINDOW_SECONDS: f64 = 300.0;

/// The warning to show before a load on AWS when the stack's own WAF rate rule (`limit`
/// requests per five minutes per IP) would block this machine, a single source, part-way
/// through: the most requests the schedule sends in any five-minute window, against the limit.
/// `None` when the rule allows the whole load.
pub fn waf_warning(limit: Option<u32>, schedule: &Schedule) -> Option<String> {
    let limit = f64::from(limit?);
    let end = schedule.duration.as_secs_f64();
    let window = WAF_WINDOW_SECONDS.min(end);
    // The rate only rises or only falls (then holds), so the busiest window is at one end.
    let most = schedule
        .due_by(window)
        .max(schedule.due_by(end) - schedule.due_by(end - window));
    if most <= limit {
        return None;
    }
    let blocked_after = (0..)
        .map(f64::from)
        .take_while(|t| *t <= end)
        .find(|t| schedule.due_by(*t) > limit)
        .unwrap_or(end);
    Some(format!(
        "the stack's WAF rate rule blocks an IP after {limit} requests in 5 minutes; this load \
         sends up to {most:.0} in 5 minutes from this one machine, so WAF would answer it 403 \
         from about {blocked_after:.0} s on. Raise or remove [waf] rate_limit in the spec and \
         run `triad up` first, or send the load from several sources."
    ))
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

    #[test]
    fn the_waf_warning_counts_the_busiest_five_minutes_against_the_limit() {
        use std::time::Duration;
        // The example's 2,000 per 5 minutes: 5 req/s for 6 minutes sends at most 1,500 in any
        // five, allowed; 10 req/s sends 2,000 in 200 s, then blocked.
        let slow = Schedule::constant(5.0, Duration::from_secs(360));
        assert_eq!(waf_warning(Some(2000), &slow), None);
        assert_eq!(
            waf_warning(None, &Schedule::constant(500.0, Duration::from_secs(60))),
            None
        );
        let fast = Schedule::constant(10.0, Duration::from_secs(360));
        let warning = waf_warning(Some(2000), &fast).expect("a warning");
        assert!(warning.contains("after 2000 requests"), "{warning}");
        assert!(warning.contains("up to 3000 in 5 minutes"), "{warning}");
        assert!(warning.contains("from about 201 s"), "{warning}");
        assert!(warning.contains("rate_limit"), "{warning}");
        // A ramp's busiest window is its last: 0 → 20 req/s over 10 min sends 1,500 in its
        // first five minutes and 4,500 in its last.
        let ramp = Schedule {
            from: 0.0,
            to: 20.0,
            ramp: Duration::from_secs(600),
            duration: Duration::from_secs(600),
        };
        assert!(waf_warning(Some(4000), &ramp).is_some());
        assert!(waf_warning(Some(4500), &ramp).is_none());
    }

    #[test]
    fn the_load_prompt_names_the_endpoint_and_the_peak_rate() {
        use std::time::Duration;
        let stack = StackRef::new("shop").expect("name");
        let schedule = Schedule {
            from: 10.0,
            to: 200.0,
            ramp: Duration::from_secs(60),
            duration: Duration::from_secs(300),
        };
        assert_eq!(
            load_prompt(&stack, "https://shop.example.com", &schedule),
            "This sends up to 200 req/s to https://shop.example.com (stack shop) for 300 s."
        );
    }
}
