//! The rules for the values a request carries — e-mail address, password, name, verification
//! token — each written once: the check a handler runs and the JSON Schema `/openapi.json`
//! publishes for that value come from the same [`StringRule`].
//!
//! A rule is a length range, counted in characters (Unicode scalar values, as JSON Schema's
//! `minLength`/`maxLength` count them), and a `pattern`. Patterns keep to the part of the
//! ECMA-262 syntax that Rust's regex crates and Python's `re` read the same way — explicit
//! character classes with `\xHH`/`\uHHHH` escapes, no `\s`, `\w`, `\p{..}`, `.` or look-around —
//! so the handler, a client generating from the document, and a fuzzer agree on every string.
//!
//! Surrounding whitespace is what [`str::trim`] removes (Unicode `White_Space`), spelt out in
//! [`WHITESPACE`]; e-mail addresses and names are stored trimmed.

use std::sync::LazyLock;

use regex_lite::Regex;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::error::ApiError;

/// Unicode `White_Space`, what [`str::trim`] removes, as a character-class body.
pub const WHITESPACE: &str =
    r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// Control characters (general category Cc, what [`char::is_control`] answers true for).
pub const CONTROL: &str = r"\x00-\x1F\x7F-\x9F";
/// ASCII digits and symbols (every printable ASCII character that is not a letter).
pub const DIGIT_OR_SYMBOL: &str = r"\x21-\x40\x5B-\x60\x7B-\x7E";

/// A string value's rule: its length range and its pattern.
pub struct StringRule {
    pub min_length: usize,
    pub max_length: usize,
    /// What the pattern asks for, in words: the 400's reason after the field's name.
    pub meaning: &'static str,
    pattern: LazyLock<(String, Regex)>,
    example: &'static str,
}

/// Compiles a pattern at first use; the patterns are constants, tested below.
fn compile(pattern: String) -> (String, Regex) {
    let regex = Regex::new(&pattern).expect("the field patterns are valid");
    (pattern, regex)
}

impl StringRule {
    pub fn pattern(&self) -> &str {
        &self.pattern.0
    }

    /// Ok when `value` has the length and matches the pattern; else a 400 naming `field`.
    pub fn check(&self, field: &str, value: &str) -> Result<(), ApiError> {
        let n = value.chars().count();
        if n < self.min_length {
            return Err(ApiError::field(
                field,
                format!("{field} must have at least {} characters", self.min_length),
            ));
        }
        if n > self.max_length {
            return Err(ApiError::field(
                field,
                format!("{field} must have at most {} characters", self.max_length),
            ));
        }
        if !self.pattern.1.is_match(value) {
            return Err(ApiError::field(field, format!("{field} {}", self.meaning)));
        }
        Ok(())
    }

    /// The JSON Schema of a string under this rule.
    pub fn schema(&self, description: &str) -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(self.min_length))
            .max_length(Some(self.max_length))
            .pattern(Some(self.pattern()))
            .description(Some(format!("{description} It {}.", self.meaning)))
            .examples([self.example])
            .into()
    }
}

/// An e-mail address: at most 254 characters, one `@` after a local part of 1–64 characters,
/// a domain of two or more dot-separated labels none of which is empty or begins or ends with
/// `-`; no whitespace or control character inside. Surrounding whitespace is allowed and
/// trimmed.
pub static EMAIL: StringRule = StringRule {
    min_length: 1,
    max_length: 254,
    meaning: "must look like name@example.com: one @, a dotted domain, no spaces inside",
    example: "ada@example.com",
    pattern: LazyLock::new(|| {
        // One character of an address: not @, whitespace or a control character.
        let c = format!("[^@{WHITESPACE}{CONTROL}]");
        // One character of a domain label's edge: neither that, nor `.` or `-`.
        let edge = format!("[^@.\\-{WHITESPACE}{CONTROL}]");
        let inner = format!("[^@.{WHITESPACE}{CONTROL}]");
        let label = format!("{edge}(?:{inner}*{edge})?");
        compile(format!(
            "^[{WHITESPACE}]*{c}{{1,64}}@{label}(?:\\.{label})+[{WHITESPACE}]*$"
        ))
    }),
};

/// A password: 8–128 characters, among them an ASCII digit or symbol and a letter (any
/// character that is not an ASCII digit, symbol, whitespace or control character).
pub static PASSWORD: StringRule = StringRule {
    min_length: 8,
    max_length: 128,
    meaning: "is too weak: use letters and at least one digit or symbol",
    example: "correct-horse-7",
    pattern: LazyLock::new(|| {
        let symbol = format!("[{DIGIT_OR_SYMBOL}]");
        let letter = format!("[^{DIGIT_OR_SYMBOL}{WHITESPACE}{CONTROL}]");
        compile(format!(
            "{symbol}[\\s\\S]*{letter}|{letter}[\\s\\S]*{symbol}"
        ))
    }),
};

/// A first or last name: 1–100 characters, not blank, no control character once the
/// surrounding whitespace is trimmed.
pub static NAME: StringRule = StringRule {
    min_length: 1,
    max_length: 100,
    meaning: "must not be blank or contain control characters",
    example: "Ada",
    pattern: LazyLock::new(|| {
        let edge = format!("[^{WHITESPACE}{CONTROL}]");
        let inner = format!("[^{CONTROL}]");
        compile(format!(
            "^[{WHITESPACE}]*{edge}(?:{inner}*{edge})?[{WHITESPACE}]*$"
        ))
    }),
};

/// A verification token: the contract's random bytes in base64url without padding (never
/// `#`, so an idempotency key is not a token).
pub static TOKEN: StringRule = StringRule {
    min_length: TOKEN_LENGTH,
    max_length: TOKEN_LENGTH,
    meaning: "is malformed: it is the base64url text from the verification link",
    example: "q2vVt1xV3bq8mJ0pQyZJm7n2b1mXg1uQxZkz7bT2w0Q",
    pattern: LazyLock::new(|| compile(format!("^[A-Za-z0-9_\\-]{{{TOKEN_LENGTH}}}$"))),
};

/// Characters of a token: base64 of [`contract::tokens::TOKEN_BYTES`] bytes without padding.
pub const TOKEN_LENGTH: usize = (contract::tokens::TOKEN_BYTES * 4).div_ceil(3);

macro_rules! validated {
    ($(#[$doc:meta])* $name:ident, $rule:expr, $description:literal, |$v:ident| $keep:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// The value of `field` checked against the rule, as stored.
            pub fn parse(field: &str, $v: &str) -> Result<$name, ApiError> {
                $rule.check(field, $v)?;
                Ok($name($keep))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $rule.schema($description).into()
            }
        }

        impl ToSchema for $name {}
    };
}

validated!(
    /// A checked e-mail address, trimmed.
    Email, EMAIL, "An e-mail address; surrounding whitespace is trimmed.", |v| v.trim().to_string()
);
validated!(
    /// A checked password (kept exactly as given).
    Password, PASSWORD, "A password.", |v| v.to_string()
);
validated!(
    /// A checked first or last name, trimmed.
    Name, NAME, "A name; surrounding whitespace is trimmed.", |v| v.trim().to_string()
);
validated!(
    /// A well-formed verification token.
    Token, TOKEN, "The token from the verification link.", |v| v.to_string()
);

/// The schema of a JSON object with exactly these `properties` (no others), of which
/// `required` must be present, and at least `min_properties` given.
pub fn object_schema(
    description: &str,
    properties: &[(&str, RefOr<Schema>)],
    required: &[&str],
    min_properties: usize,
) -> Schema {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema) in properties {
        object = object.property(*name, schema.clone());
    }
    for name in required {
        object = object.required(*name);
    }
    if min_properties > 0 {
        object = object.min_properties(Some(min_properties));
    }
    object.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(rule: &StringRule, value: &str) -> bool {
        rule.check("f", value).is_ok()
    }

    #[test]
    fn emails() {
        for good in [
            "ada@example.com",
            " Ada@Example.com ",
            "a.b+c@x-y.example.co",
            "ü@bücher.de",
            "ada@example.com\n",
        ] {
            assert!(ok(&EMAIL, good), "{good:?}");
        }
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a da@example.com",
            "ada@@example.com",
            "ada@-x.com",
            "ada@x-.com",
            "ada@x..com",
            "ada@.x.com",
            "ada@x.com.",
            "a\u{7}@x.com",
            "ada@exa mple.com",
        ] {
            assert!(!ok(&EMAIL, bad), "{bad:?}");
        }
        assert!(ok(&EMAIL, &format!("{}@x.com", "a".repeat(64))));
        assert!(!ok(&EMAIL, &format!("{}@x.com", "a".repeat(65))));
        let long = format!("a@{}.com", "b".repeat(248));
        assert_eq!(long.chars().count(), 254);
        assert!(ok(&EMAIL, &long));
        assert!(!ok(&EMAIL, &format!("a@{}.com", "b".repeat(249))));
        assert_eq!(
            Email::parse("email", " Ada@Example.com ")
                .expect("ok")
                .as_str(),
            "Ada@Example.com"
        );
    }

    #[test]
    fn passwords_need_length_and_variety() {
        for good in ["correct-horse-7", "пароль-1", "1 passwort", "aaaaaaa1"] {
            assert!(ok(&PASSWORD, good), "{good:?}");
        }
        for bad in [
            "short1",
            "onlyletters",
            "1234567890",
            "12345678 \n",
            "!!!!####",
            &"a1".repeat(65),
        ] {
            assert!(!ok(&PASSWORD, bad), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for good in ["Ada", " Ada ", "Ada Lovelace", "Zoë", "Ada\n", "李"] {
            assert!(ok(&NAME, good), "{good:?}");
        }
        for bad in ["", "   ", "\u{3000}", "A\u{0}da", "A\tda", &"x".repeat(101)] {
            assert!(!ok(&NAME, bad), "{bad:?}");
        }
        assert_eq!(Name::parse("n", "  Ada ").expect("ok").as_str(), "Ada");
    }

    #[test]
    fn tokens_must_be_base64url_of_the_contract_length() {
        assert_eq!(TOKEN_LENGTH, 43);
        assert!(ok(&TOKEN, &"A".repeat(43)));
        assert!(ok(&TOKEN, "abc-_DEF0123456789abcdefghijklmnopqrstuvwxy"));
        assert!(!ok(&TOKEN, &"A".repeat(42)));
        assert!(!ok(&TOKEN, &format!("{}=", "A".repeat(42))));
        assert!(!ok(
            &TOKEN,
            &contract::tokens::idempotency_key(uuid::Uuid::nil())
        ));
    }

    #[test]
    fn schemas_carry_the_rule() {
        let schema = serde_json::to_value(Email::schema()).expect("json");
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["maxLength"], 254);
        assert_eq!(schema["pattern"], EMAIL.pattern());
        assert!(schema.get("format").is_none(), "no bare format: email");
    }
}
