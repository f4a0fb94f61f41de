//! Password hashing: argon2id with a random per-user salt, in PHC string format (so a hash
//! keeps verifying after the configured parameters change). Hashing runs on the blocking pool,
//! never on the async workers, at most one hash per CPU at a time: the rest wait their turn in
//! arrival order (a fair semaphore). Argon2 is CPU-bound, so running more at once would not
//! finish any sooner; it would share the CPUs among all of them, stretching every signup under
//! load into the tail and starving the async workers that answer `/healthz`. Each slot keeps
//! its working memory between hashes. A login for an unknown e-mail still verifies against a
//! dummy hash, so the answer takes as long as for a wrong password.

use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result, anyhow};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

/// Which compression code the argon2 crate runs on this CPU: it picks its AVX2 build at run
/// time when the CPU has AVX2 (the same CPUID test as here), else its portable one. Logged at
/// start-up.
pub fn implementation() -> &'static str {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            return "argon2 (RustCrypto), AVX2";
        }
    }
    "argon2 (RustCrypto), portable"
}

#[derive(Clone)]
pub struct Passwords {
    params: Params,
    dummy: Arc<OnceLock<String>>,
    /// One permit per CPU: how many hashes may run at once.
    slots: Arc<Semaphore>,
    memory: Arc<Memory>,
}

/// Argon2's working memory (`m_cost` KiB per hash), kept between hashes: one buffer per slot,
/// taken by a hash and given back after it. Allocating and zeroing it for every hash (what
/// the crate's `hash_password_into` does) costs a fifth of a hash at the default parameters
/// (README, "Signup throughput"); every block is written before it is read, so a buffer needs
/// no clearing between uses.
#[derive(Default)]
struct Memory(Mutex<Vec<Vec<Block>>>);

impl Memory {
    fn with<T>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let taken = self.0.lock().map(|mut pool| pool.pop()).unwrap_or(None);
        let mut buffer = taken.unwrap_or_default();
        if buffer.len() < blocks {
            buffer.resize(blocks, Block::default());
        }
        let answer = f(&mut buffer[..blocks]);
        if let Ok(mut pool) = self.0.lock() {
            pool.push(buffer);
        }
        answer
    }
}

impl Passwords {
    pub fn new(params: Params) -> Passwords {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Passwords {
            params,
            dummy: Arc::new(OnceLock::new()),
            slots: Arc::new(Semaphore::new(cpus)),
            memory: Arc::default(),
        }
    }

    /// The raw argon2id output for `password` and `salt` under `params`, `len` bytes.
    fn raw(
        memory: &Memory,
        algorithm: Algorithm,
        version: Version,
        params: Params,
        password: &[u8],
        salt: &[u8],
        len: usize,
    ) -> Result<Output> {
        let blocks = params.block_count();
        let argon2 = Argon2::new(algorithm, version, params);
        Output::init_with(len, |out| {
            memory
                .with(blocks, |memory| {
                    argon2.hash_password_into_with_memory(password, salt, out, memory)
                })
                .map_err(argon2::password_hash::Error::from)
        })
        .map_err(|e| anyhow!("hashing a password: {e}"))
    }

    /// The PHC string of `password` under `params` and `salt`.
    fn phc(memory: &Memory, params: Params, password: &str, salt: &SaltString) -> Result<String> {
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| anyhow!("a generated salt: {e}"))?;
        let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let settings =
            ParamsString::try_from(&params).map_err(|e| anyhow!("the argon2 parameters: {e}"))?;
        let hash = Self::raw(
            memory,
            Algorithm::Argon2id,
            Version::V0x13,
            params,
            password.as_bytes(),
            salt_bytes,
            len,
        )?;
        Ok(PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: settings,
            salt: Some(salt.as_salt()),
            hash: Some(hash),
        }
        .to_string())
    }

    /// Whether `password` hashes to `stored` (a PHC string) under the algorithm, version,
    /// parameters and salt `stored` names. The comparison is constant-time ([`Output`]'s).
    fn matches(memory: &Memory, password: &str, stored: &str) -> Result<bool> {
        let parsed =
            PasswordHash::new(stored).map_err(|e| anyhow!("a stored hash is invalid: {e}"))?;
        let invalid = |e: &dyn std::fmt::Display| anyhow!("a stored hash is invalid: {e}");
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| invalid(&e))?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|e| invalid(&e))?
            .unwrap_or_default();
        let params = Params::try_from(&parsed).map_err(|e| invalid(&e))?;
        let expected = parsed.hash.ok_or_else(|| invalid(&"no hash"))?;
        let salt = parsed.salt.ok_or_else(|| invalid(&"no salt"))?;
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| invalid(&e))?;
        let computed = Self::raw(
            memory,
            algorithm,
            version,
            params,
            password.as_bytes(),
            salt_bytes,
            expected.len(),
        )?;
        Ok(computed == expected)
    }

    /// The PHC string of `password` under the configured parameters and a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String> {
        let params = self.params.clone();
        let memory = self.memory.clone();
        let _slot = self.slots.acquire().await.context("the hashing slots")?;
        tokio::task::spawn_blocking(move || {
            Self::phc(
                &memory,
                params,
                &password,
                &SaltString::generate(&mut OsRng),
            )
        })
        .await
        .context("the password hashing task")?
    }

    /// Whether `password` matches `stored` (a PHC string). `None` (no such user) verifies
    /// against a dummy hash and answers false, taking the same time.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        let params = self.params.clone();
        let dummy = self.dummy.clone();
        let memory = self.memory.clone();
        let _slot = self.slots.acquire().await.context("the hashing slots")?;
        tokio::task::spawn_blocking(move || {
            let known = stored.is_some();
            let stored = match stored {
                Some(s) => s,
                None => match dummy.get() {
                    Some(d) => d.clone(),
                    None => {
                        let salt = SaltString::generate(&mut OsRng);
                        let d = Self::phc(&memory, params, "not a real password", &salt)?;
                        dummy.get_or_init(|| d).clone()
                    }
                },
            };
            let matches = Self::matches(&memory, &password, &stored)?;
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

    /// The reference implementation's known answer (phc-winner-argon2, `src/test.c`):
    /// argon2id, v=19, m=65536, t=2, p=1, "password", salt "somesalt".
    const KNOWN: &str =
        "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";

    #[test]
    fn known_answer_of_the_reference_implementation() {
        let memory = Memory::default();
        let params = Params::new(65536, 2, 1, None).expect("params");
        let salt = SaltString::from_b64("c29tZXNhbHQ").expect("salt");
        assert_eq!(
            Passwords::phc(&memory, params.clone(), "password", &salt).expect("hash"),
            KNOWN
        );
        // Again with the buffer the first hash left behind: reuse changes nothing.
        assert_eq!(
            Passwords::phc(&memory, params, "password", &salt).expect("hash"),
            KNOWN
        );
        assert!(Passwords::matches(&memory, "password", KNOWN).expect("verify"));
        assert!(!Passwords::matches(&memory, "Password", KNOWN).expect("verify"));
        assert!(Passwords::matches(&memory, "password", "$argon2id$v=19$m=65536").is_err());
    }
}
