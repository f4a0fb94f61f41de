//! The published contract: `/openapi.json` carries the rules the handlers enforce (from the
//! same `webapp::fields` rules), every path answers the methods it does not declare with 405
//! and `Allow` (also methods Rocket does not know, on the wire), HEAD and OPTIONS answer as
//! the document's description says.

use std::time::Duration;

use rocket::http::{Method, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webapp::api::{PATHS, allow};
use webapp::fields::{EMAIL, NAME, PASSWORD, TOKEN};

use crate::common::{TestApp, json_of, serve};

async fn document(t: &TestApp) -> serde_json::Value {
    let r = t.client.get("/openapi.json").dispatch().await;
    assert_eq!(r.status(), Status::Ok);
    json_of(r.into_string().await)
}

#[tokio::test]
async fn undeclared_methods_get_405_with_allow_and_options_and_head_answer() {
    let t = TestApp::fresh(|_| {}).await;
    let every = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
        Method::Trace,
    ];
    for (path, declared) in PATHS {
        let expected_allow = allow(declared);
        for method in every {
            let served = declared.contains(&method)
                || (method == Method::Head && declared.contains(&Method::Get));
            if served {
                continue;
            }
            let r = t.client.req(method, *path).dispatch().await;
            assert_eq!(r.status(), Status::MethodNotAllowed, "{method} {path}");
            assert_eq!(
                r.headers().get_one("Allow"),
                Some(expected_allow.as_str()),
                "{method} {path}"
            );
            if method != Method::Head {
                assert_eq!(
                    json_of(r.into_string().await)["error"],
                    "method not allowed",
                    "{method} {path}"
                );
            }
        }
        let r = t.client.req(Method::Options, *path).dispatch().await;
        assert_eq!(r.status(), Status::NoContent, "OPTIONS {path}");
        assert_eq!(r.headers().get_one("Allow"), Some(expected_allow.as_str()));
    }
    assert_eq!(
        allow(&[Method::Get, Method::Put]),
        "GET, PUT, HEAD, OPTIONS"
    );
    assert_eq!(allow(&[Method::Post]), "POST, OPTIONS");

    let get = t.client.get("/version").dispatch().await;
    let head = t.client.head("/version").dispatch().await;
    assert_eq!((get.status(), head.status()), (Status::Ok, Status::Ok));
    assert_eq!(head.content_type(), get.content_type());
    assert_eq!(head.into_string().await.unwrap_or_default(), "");
}

/// Sends one raw HTTP/1.1 request and returns the status line and the headers.
async fn raw(base: &str, method: &str, path: &str) -> String {
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write the request");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read the answer");
    answer
}

/// Rocket parses only the RFC 9110 methods; one it does not know (QUERY, or a made-up one)
/// on an API path still gets 405 with `Allow`, elsewhere a JSON 400.
#[tokio::test]
async fn methods_rocket_does_not_know_get_405_on_api_paths() {
    let t = TestApp::fresh(|_| {}).await;
    let (base, shutdown) = serve(&t.app).await;
    for (method, path) in [("QUERY", "/v1/user/self"), ("BREW", "/healthz")] {
        let answer = raw(&base, method, path).await;
        assert!(
            answer.starts_with("HTTP/1.1 405"),
            "{method} {path}: {answer}"
        );
        let allow = PATHS
            .iter()
            .find(|(p, _)| p == &path)
            .map(|(_, declared)| allow(declared))
            .expect("a known path");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&format!("allow: {}", allow.to_ascii_lowercase())),
            "{answer}"
        );
    }
    let answer = raw(&base, "QUERY", "/elsewhere").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(r#""error":"Bad Request""#), "{answer}");
    let answer = raw(&base, "TRACE", "/v1/user").await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    shutdown.notify();
}

#[tokio::test]
async fn the_document_states_the_rules_the_handlers_enforce() {
    let t = TestApp::fresh(|_| {}).await;
    let doc = document(&t).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = &doc["components"]["schemas"];

    let signup = &schemas["SignupRequest"];
    assert_eq!(signup["additionalProperties"], false);
    let props = &signup["properties"];
    for (field, rule) in [
        ("email", &EMAIL),
        ("password", &PASSWORD),
        ("first_name", &NAME),
        ("last_name", &NAME),
    ] {
        let p = &props[field];
        assert_eq!(p["type"], "string", "{field}");
        assert_eq!(p["pattern"], rule.pattern(), "{field}");
        assert_eq!(p["minLength"], rule.min_length, "{field}");
        assert_eq!(p["maxLength"], rule.max_length, "{field}");
        assert!(
            p.get("format").is_none(),
            "{field}: no format the code does not apply"
        );
    }

    let update = &schemas["UpdateRequest"];
    assert_eq!(update["additionalProperties"], false);
    assert_eq!(update["minProperties"], 1);
    assert!(update.get("required").is_none());
    assert_eq!(
        update["properties"]["password"]["pattern"],
        PASSWORD.pattern()
    );
    assert_eq!(
        update["properties"]["first_name"]["pattern"],
        NAME.pattern()
    );

    let verify = &doc["paths"]["/v1/user/verify"]["get"];
    let token = verify["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "token")
        .expect("the token parameter");
    assert_eq!(token["in"], "query");
    assert_eq!(token["required"], true);
    assert_eq!(token["schema"]["pattern"], TOKEN.pattern());
    assert_eq!(token["schema"]["minLength"], 43);
    assert_eq!(token["schema"]["maxLength"], 43);

    assert_eq!(
        doc["components"]["securitySchemes"]["basic"],
        serde_json::json!({"type": "http", "scheme": "basic"})
    );
    for method in ["get", "put"] {
        assert_eq!(
            doc["paths"]["/v1/user/self"][method]["security"],
            serde_json::json!([{"basic": []}]),
            "{method} /v1/user/self"
        );
    }

    // Every status each operation can answer, errors with the JSON error body.
    for (path, method, statuses) in [
        ("/healthz", "get", &["200", "400", "503"][..]),
        ("/version", "get", &["200"][..]),
        (
            "/v1/user",
            "post",
            &["201", "400", "409", "413", "500", "503"][..],
        ),
        (
            "/v1/user/self",
            "get",
            &["200", "401", "403", "500", "503"][..],
        ),
        (
            "/v1/user/self",
            "put",
            &["204", "400", "401", "403", "413", "500", "503"][..],
        ),
        (
            "/v1/user/verify",
            "get",
            &["200", "400", "404", "410", "500", "503"][..],
        ),
    ] {
        let responses = doc["paths"][path][method]["responses"]
            .as_object()
            .expect("responses");
        let mut documented: Vec<&str> = responses.keys().map(String::as_str).collect();
        documented.sort();
        assert_eq!(documented, statuses, "{method} {path}");
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
}

/// The rules the document publishes are the ones the handlers apply: a value at each edge of
/// a rule is accepted or refused by the API exactly as the rule says.
#[tokio::test]
async fn the_handlers_apply_the_published_edges() {
    let t = TestApp::fresh(|_| {}).await;
    let body = |email: &str, password: &str, first: &str| {
        serde_json::json!({
            "email": email, "password": password, "first_name": first, "last_name": "L"
        })
        .to_string()
    };
    let local64 = format!("{}@example.com", "a".repeat(64));
    let local65 = format!("{}@example.com", "a".repeat(65));
    let name100 = "n".repeat(100);
    let name101 = "n".repeat(101);
    let cases = [
        (body(&local64, "correct-horse-7", "F"), Status::Created),
        (body(&local65, "correct-horse-7", "F"), Status::BadRequest),
        (body("b@example.com", "пароль-1", "F"), Status::Created),
        (body("c@example.com", "12345678", "F"), Status::BadRequest),
        (
            body("d@example.com", "correct-horse-7", &name100),
            Status::Created,
        ),
        (
            body("e@example.com", "correct-horse-7", &name101),
            Status::BadRequest,
        ),
        (
            body("f@example.com", "correct-horse-7", ""),
            Status::BadRequest,
        ),
        (
            body("g@example.com\n", "correct-horse-7", "G\n"),
            Status::Created,
        ),
    ];
    for (request, expected) in cases {
        let (status, answer) = t.post_json("/v1/user", &request).await;
        assert_eq!(status, expected, "{request} → {answer}");
    }
    let (status, answer) = t
        .post_json(
            "/v1/user",
            &body(" h@example.com ", "correct-horse-7", " Hal "),
        )
        .await;
    assert_eq!(status, Status::Created, "{answer}");
    assert_eq!(
        (answer["email"].as_str(), answer["first_name"].as_str()),
        (Some("h@example.com"), Some("Hal"))
    );
}
