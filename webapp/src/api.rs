//! The HTTP interface: health, version, signup, the signed-in user, e-mail verification, the
//! OpenAPI document, and the answers for methods a path does not support (405) and for
//! everything else that goes wrong (JSON catchers).
//!
//! Request bodies are read as JSON objects and checked field by field, so every 400 names the
//! field at fault: missing, unknown, wrongly typed or invalid.

use std::sync::LazyLock;

use base64::Engine;
use rocket::data::{Data, ToByteUnit};
use rocket::http::{Header, Method, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder};
use rocket::route::{Handler, Route};
use rocket::serde::json::Json;
use rocket::{Catcher, State, get, post, put, routes};
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{RefOr, Required};
use utoipa::{IntoParams, OpenApi, PartialSchema, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ErrorBody, json_error};
use crate::fields::{Email, Name, Password, Token, object_schema};

/// Request bodies larger than this are refused (413).
pub const BODY_LIMIT: u64 = 16 * 1024;
pub use crate::health::HEALTH_TIMEOUT;

pub fn routes() -> Vec<Route> {
    let mut all = routes![
        healthz,
        version,
        openapi_json,
        signup,
        get_self,
        put_self,
        verify
    ];
    all.extend(method_not_allowed_routes());
    all
}

pub fn catchers() -> Vec<Catcher> {
    vec![Catcher::new(None, default_catcher)]
}

/// Every error Rocket answers by itself, as JSON. A request whose method Rocket does not know
/// (such as `QUERY`) reaches here as a 400 that no route saw, with its path kept (a malformed
/// URI has its path replaced by `/`): on one of the API's paths that is a method the path does
/// not have, so it gets the 405 with `Allow` that every other such method gets.
fn default_catcher<'r>(status: Status, req: &'r Request<'_>) -> rocket::catcher::BoxFuture<'r> {
    let unknown_method = status == Status::BadRequest && req.route().is_none();
    let answer: response::Result<'r> = match allow_for(req.uri().path().as_str()) {
        Some(allow) if unknown_method => ApiError::MethodNotAllowed { allow }.respond_to(req),
        _ => Ok(json_error(status, status.reason_lossy(), None)),
    };
    Box::pin(async move { answer })
}

// ---------------------------------------------------------------------------------------------
// The methods a path does not declare: HEAD, OPTIONS, and 405 for the rest.

/// Each path and the methods its operations declare. Besides these, every path answers
/// `HEAD` where it has `GET` (the `GET` answer without its body), `OPTIONS` (204 with `Allow`),
/// and 405 with `Allow` to every other method Rocket can route (TRACE included). CONNECT is
/// refused by the HTTP layer (400) before routing.
pub const PATHS: &[(&str, &[Method])] = &[
    ("/healthz", &[Method::Get]),
    ("/version", &[Method::Get]),
    ("/openapi.json", &[Method::Get]),
    ("/v1/user", &[Method::Post]),
    ("/v1/user/self", &[Method::Get, Method::Put]),
    ("/v1/user/verify", &[Method::Get]),
];

/// The methods that get a 405 where a path does not declare them.
const ROUTABLE: [Method; 7] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Delete,
    Method::Patch,
    Method::Trace,
];

/// The `Allow` header of a path that declares `declared`: those, HEAD with GET, and OPTIONS.
pub fn allow(declared: &[Method]) -> String {
    let mut allow: Vec<&str> = declared.iter().map(|m| m.as_str()).collect();
    if declared.contains(&Method::Get) {
        allow.push("HEAD");
    }
    allow.push("OPTIONS");
    allow.join(", ")
}

/// Each path of [`PATHS`] with its `Allow` header.
static ALLOW: LazyLock<Vec<(&str, String)>> = LazyLock::new(|| {
    PATHS
        .iter()
        .map(|(path, declared)| (*path, allow(declared)))
        .collect()
});

/// The `Allow` header of one of the API's paths.
fn allow_for(path: &str) -> Option<&'static str> {
    let table: &'static [(&str, String)] = &ALLOW;
    table
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, allow)| allow.as_str())
}

#[derive(Clone)]
struct MethodNotAllowed(&'static str);

#[rocket::async_trait]
impl Handler for MethodNotAllowed {
    async fn handle<'r>(&self, req: &'r Request<'_>, _: Data<'r>) -> rocket::route::Outcome<'r> {
        rocket::route::Outcome::from(req, ApiError::MethodNotAllowed { allow: self.0 })
    }
}

/// `OPTIONS`: 204 with the path's `Allow`.
#[derive(Clone)]
struct Options(&'static str);

struct AllowOnly(&'static str);

impl<'r> Responder<'r, 'static> for AllowOnly {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        rocket::Response::build()
            .status(Status::NoContent)
            .header(Header::new("Allow", self.0))
            .ok()
    }
}

#[rocket::async_trait]
impl Handler for Options {
    async fn handle<'r>(&self, req: &'r Request<'_>, _: Data<'r>) -> rocket::route::Outcome<'r> {
        rocket::route::Outcome::from(req, AllowOnly(self.0))
    }
}

fn method_not_allowed_routes() -> Vec<Route> {
    let mut out = Vec::new();
    for (path, declared) in PATHS {
        let Some(allow) = allow_for(path) else {
            continue;
        };
        out.push(Route::new(Method::Options, path, Options(allow)));
        for method in ROUTABLE {
            let served = declared.contains(&method)
                || (method == Method::Head && declared.contains(&Method::Get));
            if !served {
                out.push(Route::new(method, path, MethodNotAllowed(allow)));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Health and version.

/// What a request brought besides its path: used by endpoints that take neither.
struct Shape {
    has_query: bool,
    has_body: bool,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Shape {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let headers = req.headers();
        let has_body = headers.contains("Transfer-Encoding")
            || headers
                .get_one("Content-Length")
                .is_some_and(|n| n.trim() != "0");
        Outcome::Success(Shape {
            has_query: req.uri().query().is_some(),
            has_body,
        })
    }
}

/// An answer that must never be cached.
struct NoStore<R>(R);

impl<'r, R: Responder<'r, 'static>> Responder<'r, 'static> for NoStore<R> {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let mut response = self.0.respond_to(req)?;
        response.set_header(Header::new(
            "Cache-Control",
            "no-cache, no-store, must-revalidate",
        ));
        Ok(response)
    }
}

/// What routes that need the database answer while its schema is not in place yet.
const SCHEMA_NOT_READY: &str =
    "database not ready: the schema migrations have not been applied yet";

/// 503 with a JSON reason until the migrations are applied.
fn schema_ready(state: &AppState) -> Result<(), ApiError> {
    if state.schema.is_ready() {
        Ok(())
    } else {
        Err(ApiError::NotReady(SCHEMA_NOT_READY))
    }
}

/// Load balancer health check: 200 when the schema is in place and the database answered a
/// `SELECT 1` sent after the request arrived, within [`HEALTH_TIMEOUT`] of its arrival, else
/// 503. Concurrent checks share that query ([`crate::health`]).
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses(
        (status = 200, description = "The database answers and the schema is in place"),
        (status = 400, description = "A query string or a body was sent", body = ErrorBody),
        (status = 503, description = "The database does not answer in time, or its migrations are not applied yet", body = ErrorBody),
    ))]
#[get("/healthz")]
async fn healthz(state: &State<AppState>, shape: Shape) -> NoStore<Result<(), ApiError>> {
    if shape.has_query {
        return NoStore(Err(ApiError::bad_request("/healthz takes no query string")));
    }
    if shape.has_body {
        return NoStore(Err(ApiError::bad_request("/healthz takes no body")));
    }
    if let Err(e) = schema_ready(state) {
        return NoStore(Err(e));
    }
    NoStore(
        state
            .health
            .check()
            .await
            .map_err(|cause| ApiError::Unavailable {
                what: "database",
                cause: cause.into(),
            }),
    )
}

/// Which release, instance and AZ served this request.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: String,
    pub instance: String,
    pub az: String,
}

#[utoipa::path(get, path = "/version", tag = "health",
    responses((status = 200, description = "Who served this request", body = VersionInfo)))]
#[get("/version")]
fn version(state: &State<AppState>) -> NoStore<Json<VersionInfo>> {
    NoStore(Json(VersionInfo {
        version: state.settings.version.clone(),
        instance: state.settings.instance_id.clone(),
        az: state.settings.az.clone(),
    }))
}

#[get("/openapi.json")]
fn openapi_json() -> (rocket::http::ContentType, String) {
    (
        rocket::http::ContentType::JSON,
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------------------------
// Request bodies.

async fn read_object(data: Data<'_>) -> Result<Map<String, Value>, ApiError> {
    let body = data
        .open(BODY_LIMIT.bytes())
        .into_string()
        .await
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    if !body.is_complete() {
        return Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT });
    }
    match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

fn refuse_unknown(object: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(ApiError::field(
            key,
            format!("unknown field {key:?} (allowed: {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// A string field: `Ok(None)` when absent, 400 when present but not a string.
fn string_field(object: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::field(name, format!("{name} must be a string"))),
    }
}

fn required_field(object: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    string_field(object, name)?.ok_or_else(|| ApiError::field(name, format!("{name} is required")))
}

// ---------------------------------------------------------------------------------------------
// Users.

/// Sign-up request: every field required, no others.
#[derive(Debug)]
pub struct SignupRequest {
    pub email: Email,
    pub password: Password,
    pub first_name: Name,
    pub last_name: Name,
}

impl SignupRequest {
    /// Its fields, in the order they are checked.
    pub const FIELDS: [&str; 4] = ["email", "password", "first_name", "last_name"];

    fn from_object(object: &Map<String, Value>) -> Result<SignupRequest, ApiError> {
        refuse_unknown(object, &Self::FIELDS)?;
        let [email, password, first_name, last_name] = Self::FIELDS;
        Ok(SignupRequest {
            email: Email::parse(email, &required_field(object, email)?)?,
            password: Password::parse(password, &required_field(object, password)?)?,
            first_name: Name::parse(first_name, &required_field(object, first_name)?)?,
            last_name: Name::parse(last_name, &required_field(object, last_name)?)?,
        })
    }
}

impl PartialSchema for SignupRequest {
    fn schema() -> RefOr<Schema> {
        let properties = Self::FIELDS.into_iter().zip([
            Email::schema(),
            Password::schema(),
            Name::schema(),
            Name::schema(),
        ]);
        object_schema(
            "Sign-up request: every field required, no others.",
            &properties.collect::<Vec<_>>(),
            &Self::FIELDS,
            0,
        )
        .into()
    }
}

impl ToSchema for SignupRequest {}

/// Profile update: at least one of the three fields, nothing else.
#[derive(Debug)]
pub struct UpdateRequest {
    pub first_name: Option<Name>,
    pub last_name: Option<Name>,
    pub password: Option<Password>,
}

impl UpdateRequest {
    pub const FIELDS: [&str; 3] = ["first_name", "last_name", "password"];

    fn from_object(object: &Map<String, Value>) -> Result<UpdateRequest, ApiError> {
        refuse_unknown(object, &Self::FIELDS)?;
        let [first_name, last_name, password] = Self::FIELDS;
        let update = UpdateRequest {
            first_name: string_field(object, first_name)?
                .map(|v| Name::parse(first_name, &v))
                .transpose()?,
            last_name: string_field(object, last_name)?
                .map(|v| Name::parse(last_name, &v))
                .transpose()?,
            password: string_field(object, password)?
                .map(|v| Password::parse(password, &v))
                .transpose()?,
        };
        if update.first_name.is_none() && update.last_name.is_none() && update.password.is_none() {
            return Err(ApiError::bad_request(format!(
                "give at least one of {}",
                Self::FIELDS.join(", ")
            )));
        }
        Ok(update)
    }
}

impl PartialSchema for UpdateRequest {
    fn schema() -> RefOr<Schema> {
        let properties =
            Self::FIELDS
                .into_iter()
                .zip([Name::schema(), Name::schema(), Password::schema()]);
        object_schema(
            "Profile update: at least one of the fields, no others.",
            &properties.collect::<Vec<_>>(),
            &[],
            1,
        )
        .into()
    }
}

impl ToSchema for UpdateRequest {}

/// A user as the API shows it: never the password or its hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A user from a row of [`USER_COLUMNS`].
impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for User {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(User {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            verified: row.try_get("verified")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const USER_COLUMNS: &str = "id, email, first_name, last_name, verified, created_at, updated_at";

struct Created(User);

impl<'r> Responder<'r, 'static> for Created {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Json(self.0).respond_to(req)?;
        response.set_status(Status::Created);
        response.set_header(Header::new("Location", "/v1/user/self"));
        Ok(response)
    }
}

/// Creates a user and, in the same transaction, the "user created" event the outbox publishes.
#[utoipa::path(post, path = "/v1/user", tag = "user",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 400, description = "The body is not a JSON object, or a field is missing, unknown, of the wrong type or breaks its rule", body = ErrorBody),
        (status = 409, description = "The e-mail address is taken (case-insensitively)", body = ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorBody),
        (status = 500, description = "An unexpected failure, logged with the request id", body = ErrorBody),
        (status = 503, description = "The database is unreachable or not ready yet", body = ErrorBody),
    ))]
#[post("/v1/user", data = "<data>")]
async fn signup(state: &State<AppState>, data: Data<'_>) -> Result<Created, ApiError> {
    schema_ready(state)?;
    let object = read_object(data).await?;
    let SignupRequest {
        email,
        password,
        first_name,
        last_name,
    } = SignupRequest::from_object(&object)?;
    let (email, first_name, last_name) = (
        email.into_inner(),
        first_name.into_inner(),
        last_name.into_inner(),
    );

    let hash = state.passwords.hash(password.into_inner()).await?;
    let pool = state.db.pool();
    let mut tx = pool.begin().await.map_err(ApiError::database)?;
    let user: User = sqlx::query_as(&format!(
        "INSERT INTO users (id, email, password_hash, first_name, last_name) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(&email)
    .bind(&hash)
    .bind(&first_name)
    .bind(&last_name)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            ApiError::Conflict(format!("a user with e-mail {email} already exists"))
        } else {
            ApiError::database(e)
        }
    })?;
    let event = contract::UserCreated::new(
        Uuid::new_v4(),
        user.id,
        &user.email,
        &user.first_name,
        user.created_at,
    );
    crate::outbox::enqueue(
        &mut tx,
        event.event_id,
        contract::message::USER_CREATED,
        &event.to_json(),
    )
    .await
    .map_err(ApiError::database)?;
    tx.commit().await.map_err(ApiError::database)?;
    state.publisher.wake();
    Ok(Created(user))
}

/// HTTP Basic credentials, or why there are none.
struct Credentials {
    email: String,
    password: String,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Credentials {
    type Error = &'static str;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        match parse_basic(req.headers().get_one("Authorization")) {
            Ok(c) => Outcome::Success(c),
            Err(why) => Outcome::Error((Status::Unauthorized, why)),
        }
    }
}

fn parse_basic(header: Option<&str>) -> Result<Credentials, &'static str> {
    let header = header.ok_or("authentication required (HTTP Basic)")?;
    let (scheme, encoded) = header
        .trim()
        .split_once(' ')
        .ok_or("malformed Authorization header")?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("only HTTP Basic authentication is supported");
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| "malformed Basic credentials")?;
    let text = String::from_utf8(decoded).map_err(|_| "malformed Basic credentials")?;
    let (email, password) = text.split_once(':').ok_or("malformed Basic credentials")?;
    if email.is_empty() || password.is_empty() {
        return Err("malformed Basic credentials");
    }
    Ok(Credentials {
        email: email.to_string(),
        password: password.to_string(),
    })
}

/// The signed-in user, or 401 (bad credentials) / 403 (unverified, when that is required).
async fn authenticate(
    state: &AppState,
    credentials: Result<Credentials, &'static str>,
) -> Result<User, ApiError> {
    schema_ready(state)?;
    let credentials = credentials.map_err(|why| ApiError::Unauthorized(why.to_string()))?;
    struct Row {
        user: User,
        password_hash: String,
    }
    impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Row {
        fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
            use sqlx::Row as _;
            Ok(Row {
                user: <User as sqlx::FromRow<_>>::from_row(row)?,
                password_hash: row.try_get("password_hash")?,
            })
        }
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)"
    ))
    .bind(credentials.email.trim())
    .fetch_optional(state.db.pool())
    .await
    .map_err(ApiError::database)?;
    let (user, hash) = match row {
        Some(r) => (Some(r.user), Some(r.password_hash)),
        None => (None, None),
    };
    let ok = state.passwords.verify(credentials.password, hash).await?;
    let user = match user {
        Some(u) if ok => u,
        _ => return Err(ApiError::Unauthorized("wrong e-mail or password".into())),
    };
    if state.settings.require_verification && !user.verified {
        return Err(ApiError::Forbidden(
            "verify your e-mail address first (see the link we sent)".into(),
        ));
    }
    Ok(user)
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/user/self", tag = "user",
    security(("basic" = [])),
    responses(
        (status = 200, description = "The signed-in user", body = User),
        (status = 401, description = "Missing, malformed or wrong credentials (with `WWW-Authenticate`)", body = ErrorBody),
        (status = 403, description = "E-mail not verified (when verification is required)", body = ErrorBody),
        (status = 500, description = "An unexpected failure, logged with the request id", body = ErrorBody),
        (status = 503, description = "The database is unreachable or not ready yet", body = ErrorBody),
    ))]
#[get("/v1/user/self")]
async fn get_self(
    state: &State<AppState>,
    credentials: Result<Credentials, &'static str>,
) -> Result<Json<User>, ApiError> {
    authenticate(state, credentials).await.map(Json)
}

/// Changes the signed-in user's names and/or password.
#[utoipa::path(put, path = "/v1/user/self", tag = "user",
    security(("basic" = [])),
    request_body = UpdateRequest,
    responses(
        (status = 204, description = "Updated"),
        (status = 400, description = "The body is not a JSON object, or a field is unknown, of the wrong type or breaks its rule, or none is given", body = ErrorBody),
        (status = 401, description = "Missing, malformed or wrong credentials (with `WWW-Authenticate`)", body = ErrorBody),
        (status = 403, description = "E-mail not verified (when verification is required)", body = ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorBody),
        (status = 500, description = "An unexpected failure, logged with the request id", body = ErrorBody),
        (status = 503, description = "The database is unreachable or not ready yet", body = ErrorBody),
    ))]
#[put("/v1/user/self", data = "<data>")]
async fn put_self(
    state: &State<AppState>,
    credentials: Result<Credentials, &'static str>,
    data: Data<'_>,
) -> Result<Status, ApiError> {
    let user = authenticate(state, credentials).await?;
    let object = read_object(data).await?;
    let update = UpdateRequest::from_object(&object)?;
    let hash = match update.password {
        Some(p) => Some(state.passwords.hash(p.into_inner()).await?),
        None => None,
    };
    sqlx::query(
        "UPDATE users SET first_name = COALESCE($2, first_name), \
         last_name = COALESCE($3, last_name), password_hash = COALESCE($4, password_hash), \
         updated_at = now() WHERE id = $1",
    )
    .bind(user.id)
    .bind(update.first_name.map(Name::into_inner))
    .bind(update.last_name.map(Name::into_inner))
    .bind(hash)
    .execute(state.db.pool())
    .await
    .map_err(ApiError::database)?;
    Ok(Status::NoContent)
}

// ---------------------------------------------------------------------------------------------
// Verification.

/// The query of `GET /v1/user/verify`.
pub struct VerifyQuery;

impl IntoParams for VerifyQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("token")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .description(Some("The token from the verification e-mail."))
                .schema(Some(Token::schema()))
                .build(),
        ]
    }
}

/// The outcome of a verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verified {
    pub id: Uuid,
    pub email: String,
    pub verified: bool,
}

/// Marks the user a verification token belongs to as verified. Repeating it is harmless.
#[utoipa::path(get, path = "/v1/user/verify", tag = "user",
    params(VerifyQuery),
    responses(
        (status = 200, description = "Verified (also when it already was)", body = Verified),
        (status = 400, description = "No token, or a malformed one", body = ErrorBody),
        (status = 404, description = "Unknown token", body = ErrorBody),
        (status = 410, description = "The token expired", body = ErrorBody),
        (status = 500, description = "An unexpected failure (such as a token item without its attributes), logged with the request id", body = ErrorBody),
        (status = 503, description = "The token store or the database is unreachable", body = ErrorBody),
    ))]
#[get("/v1/user/verify?<token>")]
async fn verify(state: &State<AppState>, token: Option<&str>) -> Result<Json<Verified>, ApiError> {
    use aws_sdk_dynamodb::types::AttributeValue;
    use contract::tokens;

    schema_ready(state)?;
    let token = token.ok_or_else(|| ApiError::field("token", "token is required"))?;
    let token = Token::parse("token", token)?.into_inner();
    let item = state
        .dynamodb
        .get_item()
        .table_name(&state.settings.token_table)
        .key(tokens::PARTITION_KEY, AttributeValue::S(token))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| ApiError::Unavailable {
            what: "token store",
            cause: anyhow::Error::new(aws_sdk_dynamodb::Error::from(e))
                .context("reading a verification token"),
        })?;
    let item = item
        .item
        .ok_or_else(|| ApiError::NotFound("unknown verification token".into()))?;
    let corrupt = |what: &str| {
        ApiError::Internal(anyhow::anyhow!("token item has no valid {what} attribute"))
    };
    let expires_at: i64 = match item.get(tokens::ATTR_EXPIRES_AT) {
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| corrupt(tokens::ATTR_EXPIRES_AT))?,
        _ => return Err(corrupt(tokens::ATTR_EXPIRES_AT)),
    };
    let user_id: Uuid = match item.get(tokens::ATTR_USER_ID) {
        Some(AttributeValue::S(s)) => s.parse().map_err(|_| corrupt(tokens::ATTR_USER_ID))?,
        _ => return Err(corrupt(tokens::ATTR_USER_ID)),
    };
    // DynamoDB's TTL deletes lazily (and moto never does): the attribute is the truth.
    if expires_at <= OffsetDateTime::now_utc().unix_timestamp() {
        return Err(ApiError::Gone("the verification token has expired".into()));
    }
    let verified: Option<Verified> = sqlx::query_as::<_, (Uuid, String, bool)>(
        "UPDATE users SET verified = true, \
         updated_at = CASE WHEN verified THEN updated_at ELSE now() END \
         WHERE id = $1 RETURNING id, email, verified",
    )
    .bind(user_id)
    .fetch_optional(state.db.pool())
    .await
    .map_err(ApiError::database)?
    .map(|(id, email, verified)| Verified {
        id,
        email,
        verified,
    });
    verified
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("the token's user no longer exists".into()))
}

// ---------------------------------------------------------------------------------------------
// OpenAPI.

struct BasicAuth;

impl utoipa::Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// The OpenAPI 3 document served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "triad webapp", description = "Sign-up, profile and e-mail verification. \
Every path also answers HEAD where it has GET (the GET answer without its body) and OPTIONS \
(204 with `Allow`); any other method it does not list gets 405 with `Allow`. Every error \
answer is a JSON `ErrorBody`."),
    paths(healthz, version, signup, get_self, put_self, verify),
    components(schemas(User, SignupRequest, UpdateRequest, Verified, VersionInfo, ErrorBody)),
    modifiers(&BasicAuth),
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_headers_are_parsed_strictly() {
        let ok = base64::engine::general_purpose::STANDARD.encode("ada@example.com:pa:ss");
        let c = parse_basic(Some(&format!("Basic {ok}"))).expect("valid");
        assert_eq!(
            (c.email.as_str(), c.password.as_str()),
            ("ada@example.com", "pa:ss")
        );
        for bad in ["", "Basic", "Basic !!!", "Bearer abc", "Basic bm9jb2xvbg=="] {
            assert!(parse_basic(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(parse_basic(None).is_err());
    }
}
