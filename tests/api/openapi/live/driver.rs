//! The driver of the live contract test: requests sent to the server under
//! test, every answer checked against openapi.yaml and remembered.

use std::collections::BTreeSet;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use tillsync_testkit::TestApp;
use uuid::Uuid;

use crate::support::contract::{Contract, Seen};

/// Sends requests to the server under test and checks every answer
/// against the document, remembering which answers it has seen.
pub struct Driver<'a> {
    pub app: &'a TestApp,
    pub contract: Contract,
    /// (METHOD, path template, status) of every answer checked.
    pub seen: BTreeSet<(String, String, String)>,
}

impl Driver<'_> {
    /// Sends `method url` (with `template` the documented path) and checks
    /// the answer, whatever its status, against the document.
    pub async fn send(
        &mut self,
        method: &str,
        template: &str,
        url: &str,
        token: Option<&str>,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Seen {
        let mut request = self.app.client.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{url}", self.app.address),
        );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let seen = Seen::from(build(request).send().await.unwrap()).await;
        self.contract.check(method, template, &seen);
        self.seen
            .insert((method.into(), template.into(), seen.status.to_string()));
        seen
    }

    /// As `send`, and the answer must have this status.
    pub async fn call(
        &mut self,
        method: &str,
        template: &str,
        url: &str,
        token: Option<&str>,
        status: u16,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Seen {
        let seen = self.send(method, template, url, token, build).await;
        assert_eq!(
            seen.status,
            status,
            "{method} {url}: {}",
            String::from_utf8_lossy(&seen.body)
        );
        seen
    }

    pub async fn get(&mut self, url: &str, token: Option<&str>, status: u16) -> Seen {
        let template = url.split('?').next().unwrap().to_owned();
        self.call("GET", &template, url, token, status, |r| r).await
    }

    /// As `get`, and the answer must be a problem with this code (a 400 or
    /// 404, as the code says).
    pub async fn refused(&mut self, url: &str, token: Option<&str>, code: &str) {
        let status = if code.ends_with("_not_found") {
            404
        } else {
            400
        };
        let problem = self.get(url, token, status).await.json();
        assert_eq!(problem["code"], code, "{url}");
    }

    pub async fn post(
        &mut self,
        url: &str,
        token: Option<&str>,
        body: &Value,
        status: u16,
    ) -> Seen {
        self.call("POST", url, url, token, status, |r| r.json(body))
            .await
    }

    pub async fn push(&mut self, token: &str, key: Option<&str>, body: &[u8], status: u16) -> Seen {
        let body = body.to_vec();
        let key = key.map(str::to_owned);
        let path = "/v1/sales/batches";
        self.call("POST", path, path, Some(token), status, move |r| {
            let r = r.body(body);
            match key {
                Some(key) => r.header("Idempotency-Key", key),
                None => r,
            }
        })
        .await
    }
}

pub fn new_key() -> String {
    Uuid::new_v4().to_string()
}

pub fn batch(sales: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "sales": sales })).unwrap()
}

/// A body just over the limit every route puts on bodies.
pub fn too_large() -> Vec<u8> {
    vec![b' '; tillsync::http::MAX_BODY_BYTES + 16]
}
