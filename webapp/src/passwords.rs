//! Password hashing: argon2id with a random per-user salt, in PHC string format (so a hash
//! keeps verifying after the configured parameters change). Hashing runs on the blocking pool,
//! never on the async workers, at most one hash per CPU at a time: the rest wait their turn in
//! arrival order (a fair semaphore). Argon2 is CPU-bound, so running more at once would not
//! finish any sooner; it would share the CPUs among all of them, stretching every signup under
//! load into the tail and starving the async workers that answer `/healthz`. A login for an unknown e-mail still verifies against a dummy
//! hash, so the answer takes as long as for a wrong password.

use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, anyhow};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    dummy: Arc<OnceLock<String>>,
    /// One permit per CPU: how many hashes may run at once.
    slots: Arc<Semaphore>,
}

impl Passwords {
    pub fn new(params: Params) -> Passwords {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Passwords {
            params,
            dummy: Arc::new(OnceLock::new()),
            slots: Arc::new(Semaphore::new(cpus)),
        }
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    fn hash_now(params: Params, password: &str) -> Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        Self::argon2(params)
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow!("hashing a password: {e}"))
    }

    /// The PHC string of `password` under the configured parameters and a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String> {
        let params = self.params.clone();
        let _slot = self.slots.acquire().await.context("the hashing slots")?;
        tokio::task::spawn_blocking(move || Self::hash_now(params, &password))
            .await
            .context("the password hashing task")?
    }

    /// Whether `password` matches `stored` (a PHC string). `None` (no such user) verifies
    /// against a dummy hash and answers false, taking the same time.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        let params = self.params.clone();
        let dummy = self.dummy.clone();
        let _slot = self.slots.acquire().await.context("the hashing slots")?;
        tokio::task::spawn_blocking(move || {
            let known = stored.is_some();
            let stored = match stored {
                Some(s) => s,
                None => match dummy.get() {
                    Some(d) => d.clone(),
                    None => {
                        let d = Self::hash_now(params.clone(), "not a real password")?;
                        dummy.get_or_init(|| d).clone()
                    }
                },
            };
            let parsed =
                PasswordHash::new(&stored).map_err(|e| anyhow!("a stored hash is invalid: {e}"))?;
            // The output comparison inside is constant-time.
            let matches = Self::argon2(params)
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(known && matches)
        })
        .await
        .context("the password verification task")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(Params::new(8, 1, 1, None).expect("params"))
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let p = cheap();
        let a = p.hash("correct horse 1".into()).await.expect("hash");
        let b = p.hash("correct horse 1".into()).await.expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "a fresh salt per hash");
        assert!(
            p.verify("correct horse 1".into(), Some(a.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !p.verify("wrong horse 1".into(), Some(a))
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let p = cheap();
        assert!(
            !p.verify("not a real password".into(), None)
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn old_hashes_verify_after_the_parameters_change() {
        let old = cheap().hash("pa55word!".into()).await.expect("hash");
        let stronger = Passwords::new(Params::new(16, 2, 1, None).expect("params"));
        assert!(
            stronger
                .verify("pa55word!".into(), Some(old))
                .await
                .expect("verify")
        );
    }
}
