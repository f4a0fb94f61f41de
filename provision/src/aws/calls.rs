//! Counting the API calls a backend makes: [`ApiCalls`] is an SDK interceptor on every client
//! of an [`AwsCloud`](super::AwsCloud), counting each operation once when its request is
//! built (retries of the same operation are not counted again) under `service:Operation`. Tests and benchmarks read it
//! to check that a watch tick costs the same number of calls whatever the fleet size.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Calls made so far, by `service:Operation` (e.g. `ec2:DescribeSubnets`). Clones share the
/// same counts.
#[derive(Debug, Clone, Default)]
pub struct ApiCalls {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl ApiCalls {
    /// Every call so far, by `service:Operation`.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    /// How many calls so far, all operations together.
    pub fn total(&self) -> u64 {
        self.lock().values().sum()
    }

    /// Forgets every count (the start of a measurement).
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Intercept for ApiCalls {
    fn name(&self) -> &'static str {
        "triad::ApiCalls"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let key = match cfg.load::<Metadata>() {
            Some(meta) => format!("{}:{}", service_key(meta.service()), meta.name()),
            None => "unknown:unknown".to_owned(),
        };
        *self.lock().entry(key).or_default() += 1;
        Ok(())
    }
}

/// The SDK's service name (`EC2`, `Auto Scaling`, `Elastic Load Balancing v2`) as the IAM
/// prefix the rest of triad uses (`ec2`, `autoscaling`, `elasticloadbalancing`).
fn service_key(service: &str) -> String {
    let lower = service.to_ascii_lowercase().replace(' ', "");
    match lower.as_str() {
        "elasticloadbalancingv2" => "elasticloadbalancing".to_owned(),
        "arczonalshift" => "arc-zonal-shift".to_owned(),
        _ => lower,
    }
}
