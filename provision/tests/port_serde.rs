//! Serde round-trips of the port's types: every type survives JSON unchanged, and the JSON
//! uses AWS's names where AWS has them.

use provision::port::*;
use time::macros::datetime;

fn round_trip<T>(value: &T) -> serde_json::Value
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_value(value).expect("serialises");
    let back: T = serde_json::from_value(json.clone()).expect("deserialises");
    assert_eq!(&back, value, "round trip changed the value; json: {json}");
    json
}

#[test]
fn fault_changes_round_trip_with_backend_and_change_tags() {
    let change = FaultChange::Aws(AwsChange::NetworkAclAssociationReplaced {
        subnet_id: "subnet-1".into(),
        association_id: "aclassoc-2".into(),
        original_network_acl_id: "acl-0".into(),
    });
    let json = round_trip(&change);
    assert_eq!(json["backend"], "aws");
    assert_eq!(json["change"], "network_acl_association_replaced");
    let change = FaultChange::Sandbox(SandboxChange::DbFailedOver {
        from_az: "a".into(),
        to_az: "b".into(),
    });
    round_trip(&change);
}

#[test]
fn provision_events_round_trip() {
    let event = ProvisionEvent::Resource(ResourceEvent {
        at: datetime!(2026-01-02 03:04:05 UTC),
        logical_id: "Vpc".into(),
        resource_type: "AWS::EC2::VPC".into(),
        physical_id: None,
        status: ResourceStatus::CreateComplete,
        reason: None,
        done: 1,
        total: 30,
    });
    let json = round_trip(&event);
    assert_eq!(json["event"], "resource");
    assert_eq!(json["status"], "CREATE_COMPLETE");
    assert_eq!(json["at"], "2026-01-02T03:04:05Z");
}
