//! Subnet arithmetic: carving one public and one private subnet per AZ out of the VPC CIDR, and
//! checking subnets given explicitly.

use ipnet::Ipv4Net;

use super::{AzSubnets, SpecError};

/// The longest prefix a subnet may have: a load balancer needs at least a /27 in each of its
/// subnets.
pub const MAX_SUBNET_PREFIX: u8 = 27;

/// Splits `vpc` into equal subnets, public ones from the bottom half and private ones from the
/// top half, one of each per AZ, so that they never overlap. A /16 across 3 AZs gives /19s:
/// public `10.0.0.0/19`, `10.0.32.0/19`, `10.0.64.0/19`, private `10.0.128.0/19`, ….
pub fn carve_subnets(vpc: Ipv4Net, azs: &[String]) -> Result<Vec<AzSubnets>, SpecError> {
    let slots = (2 * azs.len()).max(2);
    let bits = slots.next_power_of_two().trailing_zeros() as u8;
    let prefix = vpc.prefix_len() + bits;
    if prefix > MAX_SUBNET_PREFIX {
        let needed = MAX_SUBNET_PREFIX.saturating_sub(bits);
        return Err(invalid(
            "network.vpc_cidr",
            format!(
                "VPC CIDR {vpc} is too small for {n} AZs: its {slots} subnets would be /{prefix}, \
                 and a load balancer needs at least a /{MAX_SUBNET_PREFIX} per subnet; use a /{needed} \
                 or larger (e.g. 10.0.0.0/16)",
                n = azs.len(),
                slots = 2 * azs.len(),
            ),
        ));
    }
    let all: Vec<Ipv4Net> = vpc
        .subnets(prefix)
        .map_err(|e| invalid("network.vpc_cidr", format!("cannot split {vpc}: {e}")))?
        .collect();
    let half = all.len() / 2;
    azs.iter()
        .enumerate()
        .map(|(k, az)| match (all.get(k), all.get(half + k)) {
            (Some(public), Some(private)) => Ok(AzSubnets {
                az: az.clone(),
                public: *public,
                private: *private,
            }),
            _ => Err(invalid(
                "network.vpc_cidr",
                format!("VPC CIDR {vpc} has no room for the subnets of {az}"),
            )),
        })
        .collect()
}

/// Checks subnets given explicitly: one of each kind per AZ, inside the VPC, large enough, and
/// no two overlapping.
pub(super) fn check_given(
    vpc: Ipv4Net,
    azs: &[String],
    public: &[String],
    private: &[String],
) -> Result<Vec<AzSubnets>, SpecError> {
    let public = parse_list(vpc, azs, "network.public_subnets", public)?;
    let private = parse_list(vpc, azs, "network.private_subnets", private)?;
    let named: Vec<(String, Ipv4Net)> = public
        .iter()
        .enumerate()
        .map(|(k, net)| (format!("network.public_subnets[{k}]"), *net))
        .chain(
            private
                .iter()
                .enumerate()
                .map(|(k, net)| (format!("network.private_subnets[{k}]"), *net)),
        )
        .collect();
    for (i, (field_a, a)) in named.iter().enumerate() {
        for (field_b, b) in &named[i + 1..] {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                return Err(invalid(
                    field_b,
                    format!(
                        "subnet {b} overlaps {a} ({field_a}); every subnet needs its own \
                         range, e.g. leave both subnet lists out to have them derived from \
                         network.vpc_cidr"
                    ),
                ));
            }
        }
    }
    Ok(azs
        .iter()
        .zip(public.iter().zip(private.iter()))
        .map(|(az, (public, private))| AzSubnets {
            az: az.clone(),
            public: *public,
            private: *private,
        })
        .collect())
}

fn parse_list(
    vpc: Ipv4Net,
    azs: &[String],
    field: &str,
    given: &[String],
) -> Result<Vec<Ipv4Net>, SpecError> {
    if given.len() != azs.len() {
        return Err(invalid(
            field,
            format!(
                "{} subnets given for {} AZs; give exactly one per AZ, in the order of azs",
                given.len(),
                azs.len()
            ),
        ));
    }
    given
        .iter()
        .enumerate()
        .map(|(k, text)| {
            let field = format!("{field}[{k}]");
            let net = parse_cidr(&field, text)?;
            if !vpc.contains(&net) {
                return Err(invalid(
                    &field,
                    format!("subnet {net} is outside the VPC CIDR {vpc}; pick a range inside it"),
                ));
            }
            if net.prefix_len() > MAX_SUBNET_PREFIX {
                return Err(invalid(
                    &field,
                    format!(
                        "subnet {net} is too small: a load balancer needs at least a \
                         /{MAX_SUBNET_PREFIX}; use a /{MAX_SUBNET_PREFIX} or larger"
                    ),
                ));
            }
            Ok(net)
        })
        .collect()
}

/// Parses an IPv4 CIDR, refusing host bits (`10.0.0.1/16`) with the network it meant.
pub(super) fn parse_cidr(field: &str, text: &str) -> Result<Ipv4Net, SpecError> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        invalid(
            field,
            format!("{text:?} is not an IPv4 CIDR block; write it like 10.0.0.0/16"),
        )
    })?;
    if net.trunc() != net {
        return Err(invalid(
            field,
            format!(
                "{text} has host bits set; write the network address, {}",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

pub(super) fn invalid(field: &str, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        line: None,
        field: field.to_string(),
        message: message.into(),
    }
}
