//! Environment variable names: the deploy interface of the webapp and the mailer. The stack
//! template, the sandbox and the programs themselves all use these constants.

/// Webapp: the listen address and port (Rocket's own variables).
pub const ROCKET_ADDRESS: &str = "ROCKET_ADDRESS";
pub const ROCKET_PORT: &str = "ROCKET_PORT";
/// Webapp: a full PostgreSQL URL. Either this, or the three `DB_*` settings below.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Webapp: database host (the RDS endpoint), name, and the ARN of the RDS-managed master
/// secret in Secrets Manager (JSON with `username` and `password`).
pub const DB_HOST: &str = "TRIAD_DB_HOST";
pub const DB_PORT: &str = "TRIAD_DB_PORT";
pub const DB_NAME: &str = "TRIAD_DB_NAME";
pub const DB_SECRET_ARN: &str = "TRIAD_DB_SECRET_ARN";
/// Webapp: the SNS topic "user created" events are published to.
pub const TOPIC_ARN: &str = "TRIAD_TOPIC_ARN";
/// Webapp and mailer: the DynamoDB table holding verification tokens.
pub const TOKEN_TABLE: &str = "TRIAD_TOKEN_TABLE";
/// Webapp: `true` makes `GET /v1/user/self` answer 403 until the e-mail is verified.
pub const REQUIRE_VERIFICATION: &str = "TRIAD_REQUIRE_VERIFICATION";
/// Webapp: what `/version` reports, so probes see which version and AZ served them.
pub const VERSION: &str = "TRIAD_VERSION";
pub const INSTANCE_ID: &str = "TRIAD_INSTANCE_ID";
pub const AZ: &str = "TRIAD_AZ";
/// Webapp: argon2id parameters for password hashes — memory in KiB, iterations, lanes.
/// Optional; the defaults are OWASP's (19456 KiB, 2, 1). Tests and benches set cheap ones.
pub const ARGON2_M_COST: &str = "TRIAD_ARGON2_M_COST";
pub const ARGON2_T_COST: &str = "TRIAD_ARGON2_T_COST";
pub const ARGON2_P_COST: &str = "TRIAD_ARGON2_P_COST";
/// Webapp: seconds in-flight requests get to finish after SIGTERM (optional, default 5).
pub const SHUTDOWN_GRACE_SECONDS: &str = "TRIAD_SHUTDOWN_GRACE_SECONDS";

/// Mailer: the verified sender address e-mails go out from.
pub const MAIL_SENDER: &str = "TRIAD_MAIL_SENDER";
/// Mailer: the public base URL the verification link starts with (e.g. `https://app.example.com`).
pub const VERIFY_BASE_URL: &str = "TRIAD_VERIFY_BASE_URL";
/// Mailer: how long a token stays valid, in seconds.
pub const TOKEN_TTL_SECONDS: &str = "TRIAD_TOKEN_TTL_SECONDS";

/// AWS's own: the region and an endpoint override (moto in tests and in the sandbox).
pub const AWS_REGION: &str = "AWS_REGION";
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

/// Every variable the webapp reads.
pub const WEBAPP: &[&str] = &[
    ROCKET_ADDRESS,
    ROCKET_PORT,
    DATABASE_URL,
    DB_HOST,
    DB_PORT,
    DB_NAME,
    DB_SECRET_ARN,
    TOPIC_ARN,
    TOKEN_TABLE,
    REQUIRE_VERIFICATION,
    VERSION,
    INSTANCE_ID,
    AZ,
    ARGON2_M_COST,
    ARGON2_T_COST,
    ARGON2_P_COST,
    SHUTDOWN_GRACE_SECONDS,
    AWS_REGION,
    AWS_ENDPOINT_URL,
];

/// Every variable the mailer reads.
pub const MAILER: &[&str] = &[
    TOKEN_TABLE,
    MAIL_SENDER,
    VERIFY_BASE_URL,
    TOKEN_TTL_SECONDS,
    AWS_REGION,
    AWS_ENDPOINT_URL,
];
