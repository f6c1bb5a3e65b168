//! CORS for the tenant API (`/v1/leases/…`), so that a web console served from another origin
//! can upload a signed manifest and read a lease's status, reports and logs. Nothing wider: no
//! credentials (every call is authorized by a signature it carries, never by a cookie), only
//! the methods and headers those calls use, and never on `/metrics` or `/healthz`.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The path prefix CORS applies to.
const API_PREFIX: &str = "/v1/leases/";
/// What a console's calls need.
const METHODS: &str = "GET, PUT";
const HEADERS: &str = "berth-signature, authorization, content-type, last-event-id";
/// How long a browser may cache a preflight, in seconds.
const MAX_AGE: &str = "600";

/// The origins whose pages may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Any page (`*`): safe here because nothing rides on ambient credentials.
    Any,
    /// Only these (`https://console.example.org`), compared exactly.
    List(Vec<String>),
    /// None: browsers on other origins are refused (an empty setting).
    None,
}

impl Origins {
    /// `*`, an empty string, or comma-separated origins (`scheme://host[:port]`, no path).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t == "*" {
            return Ok(Self::Any);
        }
        if t.is_empty() {
            return Ok(Self::None);
        }
        let mut list = Vec::new();
        for o in t.split(',').map(str::trim) {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"));
            let ok = rest.is_some_and(|r| {
                !r.is_empty()
                    && !r.contains('/')
                    && r.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            });
            if !ok {
                return Err(format!(
                    "`{o}` is not an origin (scheme://host[:port], no path), nor `*`"
                ));
            }
            list.push(o.to_ascii_lowercase());
        }
        Ok(Self::List(list))
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match self {
            Self::Any => Some(HeaderValue::from_static("*")),
            Self::List(list) => {
                let o = origin.to_str().ok()?.to_ascii_lowercase();
                list.contains(&o).then(|| origin.clone())
            }
            Self::None => None,
        }
    }
}

/// The middleware: answers preflights of API paths and marks API answers for allowed origins.
pub async fn layer(State(origins): State<Arc<Origins>>, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with(API_PREFIX);
    let allowed = req
        .headers()
        .get(header::ORIGIN)
        .filter(|_| api)
        .and_then(|o| origins.allow(o));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if api && preflight {
        let Some(allow) = allowed else {
            return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
        };
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        mark(h, allow, &origins);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE),
        );
        return resp;
    }
    let mut resp = next.run(req).await;
    if let Some(allow) = allowed {
        mark(resp.headers_mut(), allow, &origins);
    }
    resp
}

fn mark(h: &mut HeaderMap, allow: HeaderValue, origins: &Origins) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    if matches!(origins, Origins::List(_)) {
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::get};
    use tower::ServiceExt;

    use super::*;

    fn app(origins: Origins) -> Router {
        Router::new()
            .route("/v1/leases/{id}", get(|| async { "lease" }))
            .route("/metrics", get(|| async { "m" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(origins),
                layer,
            ))
    }

    async fn call(app: Router, method: Method, path: &str, origin: Option<&str>) -> Response {
        let mut req = Request::builder().method(method.clone()).uri(path);
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        if method == Method::OPTIONS {
            req = req.header(header::ACCESS_CONTROL_REQUEST_METHOD, "PUT");
        }
        app.oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("answer")
    }

    fn acao(r: &Response) -> Option<&str> {
        r.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn api_paths_answer_allowed_origins_and_nothing_else_is_widened() {
        let list =
            Origins::parse("http://127.0.0.1:5173, https://console.example.org").expect("parses");
        let r = call(
            app(list.clone()),
            Method::OPTIONS,
            "/v1/leases/1",
            Some("https://console.example.org"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(acao(&r), Some("https://console.example.org"));
        assert_eq!(
            r.headers()
                .get(header::ACCESS_CONTROL_ALLOW_METHODS)
                .map(|v| v.as_bytes()),
            Some(&b"GET, PUT"[..])
        );
        assert!(
            r.headers()
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none()
        );
        let r = call(
            app(list.clone()),
            Method::OPTIONS,
            "/v1/leases/1",
            Some("https://evil.example"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = call(
            app(list.clone()),
            Method::GET,
            "/v1/leases/1",
            Some("http://127.0.0.1:5173"),
        )
        .await;
        assert_eq!(
            (r.status(), acao(&r)),
            (StatusCode::OK, Some("http://127.0.0.1:5173"))
        );
        let r = call(
            app(list),
            Method::GET,
            "/v1/leases/1",
            Some("https://evil.example"),
        )
        .await;
        assert_eq!((r.status(), acao(&r)), (StatusCode::OK, None));
        let r = call(
            app(Origins::Any),
            Method::GET,
            "/metrics",
            Some("https://a.example"),
        )
        .await;
        assert_eq!(acao(&r), None);
        let r = call(
            app(Origins::Any),
            Method::GET,
            "/v1/leases/1",
            Some("https://a.example"),
        )
        .await;
        assert_eq!(acao(&r), Some("*"));
        let r = call(
            app(Origins::None),
            Method::GET,
            "/v1/leases/1",
            Some("https://a.example"),
        )
        .await;
        assert_eq!(acao(&r), None);
    }

    #[test]
    fn settings_name_what_is_wrong() {
        assert_eq!(Origins::parse(" * "), Ok(Origins::Any));
        assert_eq!(Origins::parse(""), Ok(Origins::None));
        for bad in [
            "console.example.org",
            "https://a.example/path",
            "ftp://a",
            "https://",
        ] {
            assert!(
                Origins::parse(bad).expect_err(bad).contains(bad.trim()),
                "{bad}"
            );
        }
    }
}
