//! A small macro for enums whose values are AWS's own names ("InService", "Target.Timeout",
//! "RollbackInProgress"). The AWS name is the serde name, the `Display` text and what `FromStr`
//! accepts, so the JSON shape of the port speaks AWS's vocabulary and the AWS backend maps SDK
//! strings with one `parse()`.

use std::fmt;

/// A name that is not one of an enum's AWS names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct UnknownName {
    /// What was being parsed, e.g. "lifecycle state".
    pub kind: &'static str,
    /// The text that did not match.
    pub name: String,
}

/// Defines a fieldless enum whose variants each carry an AWS name.
macro_rules! aws_names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($kind:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $aws:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $aws)] $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// AWS's name for this value.
            pub fn as_aws_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $aws),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_aws_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::port::names::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($aws => Ok(Self::$variant),)+
                    other => Err($crate::port::names::UnknownName {
                        kind: $kind,
                        name: other.to_owned(),
                    }),
                }
            }
        }
    };
}

pub(crate) use aws_names;

/// Writes a list as "a, b, c" (used in error and plan text).
pub(crate) fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
