//! The network: VPC, internet gateway, one public and one private subnet per AZ, route tables,
//! and the private subnets' way out — NAT gateways (per AZ or single) or VPC endpoints.

use serde_json::json;

use super::{Stack, get_att, per_az, ref_, refs};
use crate::spec::{INTERFACE_ENDPOINT_SERVICES, Nat};

pub(super) const VPC: &str = "Vpc";
const GATEWAY: &str = "InternetGateway";
const GATEWAY_ATTACHMENT: &str = "InternetGatewayAttachment";
const PUBLIC_ROUTE_TABLE: &str = "PublicRouteTable";
pub(super) const PUBLIC_SUBNET: &str = "PublicSubnet";
pub(super) const PRIVATE_SUBNET: &str = "PrivateSubnet";
const PRIVATE_ROUTE_TABLE: &str = "PrivateRouteTable";
/// Why subnets name their AZ: the spec lists AZs by name and drills address them by name.
const NAMED_AZS: &str =
    "The AZs are named in stack.toml on purpose: per-AZ views and drills address them by name";
pub(super) const ENDPOINT_SECURITY_GROUP: &str = "EndpointSecurityGroup";

pub(super) fn add(stack: &mut Stack) {
    let spec = stack.spec;
    let tags = stack.tags("vpc", None);
    stack.add(
        VPC,
        "AWS::EC2::VPC",
        json!({
            "CidrBlock": spec.network.vpc_cidr.to_string(),
            "EnableDnsHostnames": true,
            "EnableDnsSupport": true,
            "Tags": tags,
        }),
    );
    let tags = stack.tags("igw", None);
    stack.add(
        GATEWAY,
        "AWS::EC2::InternetGateway",
        json!({ "Tags": tags }),
    );
    stack.add(
        GATEWAY_ATTACHMENT,
        "AWS::EC2::VPCGatewayAttachment",
        json!({ "VpcId": ref_(VPC), "InternetGatewayId": ref_(GATEWAY) }),
    );
    let tags = stack.tags("public-rt", None);
    stack.add(
        PUBLIC_ROUTE_TABLE,
        "AWS::EC2::RouteTable",
        json!({ "VpcId": ref_(VPC), "Tags": tags }),
    );
    stack
        .add(
            "PublicDefaultRoute",
            "AWS::EC2::Route",
            json!({
                "RouteTableId": ref_(PUBLIC_ROUTE_TABLE),
                "DestinationCidrBlock": "0.0.0.0/0",
                "GatewayId": ref_(GATEWAY),
            }),
        )
        .depends_on([GATEWAY_ATTACHMENT]);

    for subnets in &spec.network.subnets {
        let az = subnets.az.as_str();
        let public = per_az(PUBLIC_SUBNET, az);
        let private = per_az(PRIVATE_SUBNET, az);
        let private_table = per_az(PRIVATE_ROUTE_TABLE, az);
        let tags = stack.tags("public", Some(az));
        stack
            .add(
                &public,
                "AWS::EC2::Subnet",
                json!({
                    "VpcId": ref_(VPC),
                    "AvailabilityZone": az,
                    "CidrBlock": subnets.public.to_string(),
                    "MapPublicIpOnLaunch": false,
                    "Tags": tags,
                }),
            )
            .ignore_lint("W3010", NAMED_AZS);
        stack.add(
            format!("{public}RouteTableAssociation"),
            "AWS::EC2::SubnetRouteTableAssociation",
            json!({ "SubnetId": ref_(&public), "RouteTableId": ref_(PUBLIC_ROUTE_TABLE) }),
        );
        let tags = stack.tags("private", Some(az));
        stack
            .add(
                &private,
                "AWS::EC2::Subnet",
                json!({
                    "VpcId": ref_(VPC),
                    "AvailabilityZone": az,
                    "CidrBlock": subnets.private.to_string(),
                    "MapPublicIpOnLaunch": false,
                    "Tags": tags,
                }),
            )
            .ignore_lint("W3010", NAMED_AZS);
        let tags = stack.tags("private-rt", Some(az));
        stack.add(
            &private_table,
            "AWS::EC2::RouteTable",
            json!({ "VpcId": ref_(VPC), "Tags": tags }),
        );
        stack.add(
            format!("{private}RouteTableAssociation"),
            "AWS::EC2::SubnetRouteTableAssociation",
            json!({ "SubnetId": ref_(&private), "RouteTableId": ref_(&private_table) }),
        );
    }

    match spec.network.nat {
        Nat::PerAz => {
            for az in &spec.azs {
                add_nat(stack, az);
                add_nat_route(stack, az, az);
            }
        }
        Nat::Single => {
            let first = spec.azs.first().cloned().unwrap_or_default();
            add_nat(stack, &first);
            for az in &spec.azs {
                add_nat_route(stack, az, &first);
            }
        }
        Nat::None => add_endpoints(stack),
    }
}

/// The resources the instances need before they boot: the private routes out (NAT) or the
/// endpoints. The Auto Scaling group depends on them.
pub(super) fn egress_ids(stack: &Stack) -> Vec<String> {
    match stack.spec.network.nat {
        Nat::PerAz | Nat::Single => stack.per_az_ids("PrivateDefaultRoute"),
        Nat::None => {
            let mut ids: Vec<String> = INTERFACE_ENDPOINT_SERVICES
                .iter()
                .map(|service| endpoint_id(service))
                .collect();
            ids.extend([
                "S3GatewayEndpoint".to_string(),
                "DynamoDbGatewayEndpoint".into(),
            ]);
            ids
        }
    }
}

fn add_nat(stack: &mut Stack, az: &str) {
    let eip = per_az("NatEip", az);
    let tags = stack.tags("nat-eip", Some(az));
    stack
        .add(
            &eip,
            "AWS::EC2::EIP",
            json!({ "Domain": "vpc", "Tags": tags }),
        )
        .depends_on([GATEWAY_ATTACHMENT]);
    let tags = stack.tags("nat", Some(az));
    stack.add(
        per_az("NatGateway", az),
        "AWS::EC2::NatGateway",
        json!({
            "AllocationId": get_att(&eip, "AllocationId"),
            "SubnetId": ref_(&per_az(PUBLIC_SUBNET, az)),
            "Tags": tags,
        }),
    );
}

/// The default route of `az`'s private subnet, through the NAT gateway in `nat_az`.
fn add_nat_route(stack: &mut Stack, az: &str, nat_az: &str) {
    stack.add(
        per_az("PrivateDefaultRoute", az),
        "AWS::EC2::Route",
        json!({
            "RouteTableId": ref_(&per_az(PRIVATE_ROUTE_TABLE, az)),
            "DestinationCidrBlock": "0.0.0.0/0",
            "NatGatewayId": ref_(&per_az("NatGateway", nat_az)),
        }),
    );
}

fn endpoint_id(service: &str) -> String {
    let mut chars = service.chars();
    let capitalised: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars)
        .collect();
    format!("{capitalised}Endpoint")
}

/// S3 and DynamoDB gateway endpoints on the private route tables, and an interface endpoint
/// per service the instances call, reachable on 443 from the application security group only.
fn add_endpoints(stack: &mut Stack) {
    let private_tables = stack.per_az_ids(PRIVATE_ROUTE_TABLE);
    let private_subnets = stack.per_az_ids(PRIVATE_SUBNET);
    for (id, service) in [
        ("S3GatewayEndpoint", "s3"),
        ("DynamoDbGatewayEndpoint", "dynamodb"),
    ] {
        stack.add(
            id,
            "AWS::EC2::VPCEndpoint",
            json!({
                "VpcId": ref_(VPC),
                "VpcEndpointType": "Gateway",
                "ServiceName": super::sub(&format!("com.amazonaws.${{AWS::Region}}.{service}")),
                "RouteTableIds": refs(&private_tables),
            }),
        );
    }
    let tags = stack.tags("endpoints-sg", None);
    stack.add(
        ENDPOINT_SECURITY_GROUP,
        "AWS::EC2::SecurityGroup",
        json!({
            "GroupDescription": "Interface endpoints: HTTPS from the application instances only",
            "VpcId": ref_(VPC),
            "SecurityGroupIngress": [{
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "SourceSecurityGroupId": ref_(super::app::APP_SECURITY_GROUP),
                "Description": "HTTPS from the application instances",
            }],
            "SecurityGroupEgress": [super::app::no_egress()],
            "Tags": tags,
        }),
    );
    for service in INTERFACE_ENDPOINT_SERVICES {
        stack.add(
            endpoint_id(service),
            "AWS::EC2::VPCEndpoint",
            json!({
                "VpcId": ref_(VPC),
                "VpcEndpointType": "Interface",
                "ServiceName": super::sub(&format!("com.amazonaws.${{AWS::Region}}.{service}")),
                "SubnetIds": refs(&private_subnets),
                "SecurityGroupIds": [ref_(ENDPOINT_SECURITY_GROUP)],
                "PrivateDnsEnabled": true,
            }),
        );
    }
}
