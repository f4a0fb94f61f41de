//! Verification tokens: `contract::tokens::TOKEN_BYTES` random bytes from the operating
//! system's generator (through rand's thread-local CSPRNG), base64url without padding, so a
//! token is safe in a URL and never contains the `#` that idempotency keys carry.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::tokens::TOKEN_BYTES;

/// A verification token as it is stored and put in the link. Its `Debug` hides the value so
/// that a token never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A fresh random token.
    pub fn generate() -> Self {
        let bytes: [u8; TOKEN_BYTES] = rand::random();
        Token(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A token read back from the table.
    pub fn from_stored(value: String) -> Self {
        Token(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_random_bytes_in_base64url() {
        let token = Token::generate();
        let decoded = URL_SAFE_NO_PAD.decode(token.as_str()).expect("base64url");
        assert_eq!(decoded.len(), TOKEN_BYTES);
        assert_eq!(
            token.as_str().len(),
            43,
            "32 bytes are 43 characters unpadded"
        );
        assert!(
            token
                .as_str()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{}",
            token.as_str()
        );
        assert_ne!(token, Token::generate(), "two tokens differ");
    }

    #[test]
    fn debug_does_not_reveal_the_value() {
        let token = Token::generate();
        assert!(!format!("{token:?}").contains(token.as_str()));
    }
}
