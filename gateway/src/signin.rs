//! Private apps: Sign-In with Ethereum (EIP-4361) at the gateway. On every app hostname the
//! gateway answers `/.well-known/berth/{nonce,verify,signout}` itself. A verified message
//! (domain = this host, the lease's chain, a nonce this gateway issued for this host and
//! never accepted before, within its validity) signed by an address the route admits (the
//! lease's tenant or the manifest's `allow` list; an EOA recovered here, a contract wallet
//! asked through the keeper, ERC-1271) gets a sealed session cookie, `__Host-` and scoped to
//! that host and lease. Requests to a private app then need the cookie: a browser without
//! one gets a sign-in page, an API client a 401; the app receives the address in
//! `X-Berth-Address`, which only the gateway sets.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy_primitives::{Address, hex};
use berth_protocol::{
    routing::{Access, Erc1271Answer, Erc1271Request, admin, signin},
    siwe::{SiweMessage, message_hash, signed_by},
};
use berth_runtime::session::{Session, SessionKey, api_scope, cookie};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use crate::{proxy::Body, routes::Target};

/// How long a nonce may wait for its signed message.
const NONCE_TTL_S: u64 = 300;
/// Most nonces waiting at once (each ~100 bytes): more sign-ins in progress get a 503.
const MAX_NONCES: usize = 10_000;
/// Largest verify request.
const MAX_VERIFY_BODY: usize = 16 * 1024;

/// Why sign-in could not be set up.
pub type SignInError = berth_runtime::session::SessionKeyError;

/// Who may sign in where: an app's admitted addresses, or anyone on the provider's API host
/// (the keeper decides per lease: only its tenant).
#[derive(Debug, Clone, Copy)]
enum Admits<'a> {
    App(&'a Access),
    Api,
}

/// Sessions and nonces of the private apps and the API host.
pub struct SignIn {
    key: SessionKey,
    rng: SystemRandom,
    /// nonce → (expiry, unix s; the host it was issued for).
    nonces: Mutex<HashMap<String, (u64, String)>>,
    session_ttl: Duration,
    keeper_socket: Option<PathBuf>,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("session_ttl", &self.session_ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Verify {
    message: String,
    signature: String,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SignIn {
    /// Sessions sealed with the key in `key_file` (64 hex digits; they survive restarts), or
    /// with a random key (sessions end when the gateway restarts).
    pub fn new(
        key_file: Option<&Path>,
        session_ttl: Duration,
        keeper_socket: Option<PathBuf>,
    ) -> Result<Self, SignInError> {
        Ok(Self {
            key: SessionKey::load(key_file)?,
            rng: SystemRandom::new(),
            nonces: Mutex::new(HashMap::new()),
            session_ttl,
            keeper_socket,
        })
    }

    /// Answers a request under the reserved prefix on `host`.
    pub async fn endpoint(
        &self,
        req: Request<Incoming>,
        host: &str,
        target: &Target,
    ) -> Response<Body> {
        let admits = match &target.access {
            Some(access) => Admits::App(access),
            None if target.is_api() => Admits::Api,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "this app is public: there is nothing to sign in to",
                );
            }
        };
        match (req.method(), req.uri().path()) {
            (&Method::POST, signin::NONCE) => self.nonce(host),
            (&Method::POST, signin::VERIFY) => self.verify(req, host, target, admits).await,
            (&Method::POST, signin::SIGN_OUT) => {
                let mut resp = json(StatusCode::OK, &serde_json::json!({ "signed_out": true }));
                resp.headers_mut().insert(
                    header::SET_COOKIE,
                    HeaderValue::from_static(
                        "__Host-berth-session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
                    ),
                );
                resp
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "unknown sign-in path or method (POST nonce, verify, signout)",
            ),
        }
    }

    fn nonce(&self, host: &str) -> Response<Body> {
        let mut raw = [0u8; 16];
        if self.rng.fill(&mut raw).is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "no randomness for a nonce");
        }
        let nonce = hex::encode(raw);
        let now = now_s();
        {
            let mut nonces = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
            if nonces.len() >= MAX_NONCES {
                nonces.retain(|_, (expires, _)| *expires > now);
            }
            if nonces.len() >= MAX_NONCES {
                let mut resp = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many sign-ins in progress; try again shortly",
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return resp;
            }
            nonces.insert(nonce.clone(), (now + NONCE_TTL_S, host.to_owned()));
        }
        json(
            StatusCode::OK,
            &serde_json::json!({ "nonce": nonce, "expires_in_s": NONCE_TTL_S }),
        )
    }

    async fn verify(
        &self,
        req: Request<Incoming>,
        host: &str,
        target: &Target,
        admits: Admits<'_>,
    ) -> Response<Body> {
        let body = match Limited::new(req.into_body(), MAX_VERIFY_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the sign-in request is larger than 16 KiB",
                );
            }
        };
        let Ok(v) = serde_json::from_slice::<Verify>(&body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "expected {\"message\": \"…\", \"signature\": \"0x…\"}",
            );
        };
        let message = match SiweMessage::parse(&v.message) {
            Ok(m) => m,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let now = now_s();
        // The API host serves whichever chain the keeper behind it is on: the keeper checks
        // the chain the session names.
        let chain_id = match admits {
            Admits::App(access) => access.chain_id,
            Admits::Api => message.chain_id,
        };
        if let Err(e) = message.check(host, chain_id, now) {
            return error(StatusCode::UNAUTHORIZED, &e.to_string());
        }
        let issued = self
            .nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&message.nonce);
        match issued {
            Some((expires, for_host)) if expires > now && for_host == host => {}
            _ => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "the nonce was not issued here, has expired or was used already: ask for a new one",
                );
            }
        }
        let Some(signature) = hex::decode(v.signature.trim())
            .ok()
            .filter(|s| s.len() <= 4096)
        else {
            return error(StatusCode::BAD_REQUEST, "the signature is not hex");
        };
        let signer = message.address;
        let valid = signed_by(&v.message, &signature, signer)
            || self
                .contract_wallet_accepts(signer, &v.message, signature)
                .await;
        if !valid {
            return error(
                StatusCode::UNAUTHORIZED,
                &format!("the signature is not {signer}'s"),
            );
        }
        if let Admits::App(access) = admits
            && !access.admits(signer)
        {
            return error(
                StatusCode::FORBIDDEN,
                &format!(
                    "{signer} may not use this app: only the lease's tenant and the addresses its manifest allows"
                ),
            );
        }
        let expires = message
            .expiration_time
            .unwrap_or(u64::MAX)
            .min(now + self.session_ttl.as_secs());
        let scope = match admits {
            Admits::App(_) => target.app.lease.clone(),
            Admits::Api => api_scope(chain_id),
        };
        let session = Session {
            host: host.to_owned(),
            scope,
            address: signer,
            expires,
        };
        let Some(cookie) = self.key.seal(&session) else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no randomness for the session",
            );
        };
        tracing::info!(lease = %target.app.lease, service = %target.app.service, address = %signer, "signed in");
        let mut resp = json(
            StatusCode::OK,
            &serde_json::json!({ "address": signer, "expires_at": expires }),
        );
        let set = format!(
            "{}={cookie}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
            signin::COOKIE,
            expires - now
        );
        if let Ok(v) = HeaderValue::from_str(&set) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        resp
    }

    /// ERC-1271 through the keeper, which has the chain; false when there is no keeper or it
    /// cannot answer.
    async fn contract_wallet_accepts(
        &self,
        account: Address,
        text: &str,
        signature: Vec<u8>,
    ) -> bool {
        let Some(socket) = &self.keeper_socket else {
            return false;
        };
        let body = serde_json::to_vec(&Erc1271Request {
            account,
            hash: message_hash(text),
            signature: signature.into(),
        })
        .unwrap_or_default();
        let Ok(req) = Request::builder()
            .method(Method::POST)
            .uri(format!("http://keeper{}", admin::ERC1271))
            .header(header::HOST, "keeper")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
        else {
            return false;
        };
        match berth_runtime::http::unix_call(socket, req, Duration::from_secs(10)).await {
            Ok((status, body)) if status.is_success() => {
                serde_json::from_slice::<Erc1271Answer>(&body).is_ok_and(|a| a.valid)
            }
            Ok((status, _)) => {
                tracing::warn!(%status, "the keeper did not check a contract wallet's signature");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "the keeper did not check a contract wallet's signature");
                false
            }
        }
    }

    /// The address of a valid session cookie of `host` and `scope` in `headers`.
    fn session(&self, headers: &HeaderMap, host: &str, scope: &str) -> Option<Address> {
        let s = self.key.open(cookie(headers, signin::COOKIE)?)?;
        (s.host == host && s.scope == scope && s.expires > now_s()).then_some(s.address)
    }

    /// Whether a request to the private app `target` may pass: its signed-in address, or the
    /// answer to send instead (a sign-in page or 401 without a session, 403 for an address
    /// the app no longer admits).
    pub fn admit(
        &self,
        headers: &HeaderMap,
        host: &str,
        target: &Target,
        access: &Access,
    ) -> Result<Address, Box<Response<Body>>> {
        match self.session(headers, host, &target.app.lease) {
            Some(a) if access.admits(a) => Ok(a),
            Some(a) => Err(Box::new(error(
                StatusCode::FORBIDDEN,
                &format!("{a} may no longer use this app: sign in with another wallet"),
            ))),
            None if wants_html(headers) => Err(Box::new(sign_in_page(host, access.chain_id))),
            None => {
                let mut resp = error(
                    StatusCode::UNAUTHORIZED,
                    "this app is private: sign in with Ethereum (POST /.well-known/berth/nonce, then /.well-known/berth/verify)",
                );
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("SIWE realm=\"berth\""),
                );
                Err(Box::new(resp))
            }
        }
    }
}

/// Drops the gateway's session cookie from a request's `Cookie` headers (the app never sees
/// it); other cookies stay.
pub fn strip_session_cookie(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with(&format!("{}=", signin::COOKIE)))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn error(status: StatusCode, text: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": text }))
}

/// The page a browser without a session gets: it asks the wallet (EIP-1193) to sign a
/// Sign-In with Ethereum message for this host and chain, then reloads.
fn sign_in_page(host: &str, chain_id: u64) -> Response<Body> {
    let html = include_str!("signin.html")
        .replace("{{HOST}}", host)
        .replace("{{CHAIN_ID}}", &chain_id.to_string());
    crate::proxy::html_answer(StatusCode::UNAUTHORIZED, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signin() -> SignIn {
        SignIn::new(None, Duration::from_secs(3600), None).expect("sign-in")
    }

    fn session_of(host: &str, scope: &str, address: Address, expires: u64) -> Session {
        Session {
            host: host.into(),
            scope: scope.into(),
            address,
            expires,
        }
    }

    #[test]
    fn a_sealed_session_opens_only_for_its_host_and_lease_and_before_it_expires() {
        let s = signin();
        let who = Address::repeat_byte(7);
        let cookie = s
            .key
            .seal(&session_of("a.apps.test", "5", who, now_s() + 60))
            .expect("sealed");
        let headers = |v: String| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(&v).expect("value"));
            h
        };
        let ok = headers(format!("x=1; {}={cookie}; y=2", signin::COOKIE));
        assert_eq!(s.session(&ok, "a.apps.test", "5"), Some(who));
        assert_eq!(s.session(&ok, "b.apps.test", "5"), None, "another app");
        assert_eq!(s.session(&ok, "a.apps.test", "6"), None, "another lease");
        let mut tampered = cookie.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).expect("hex");
        assert_eq!(
            s.session(
                &headers(format!("{}={tampered}", signin::COOKIE)),
                "a.apps.test",
                "5"
            ),
            None
        );
        let old = s
            .key
            .seal(&session_of("a.apps.test", "5", who, now_s() - 1))
            .expect("sealed");
        assert_eq!(
            s.session(
                &headers(format!("{}={old}", signin::COOKIE)),
                "a.apps.test",
                "5"
            ),
            None
        );
        // Another gateway's key (or a restart without a key file) opens nothing.
        assert_eq!(signin().session(&ok, "a.apps.test", "5"), None);
    }

    #[test]
    fn the_session_cookie_never_reaches_the_app() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-berth-session=abc; b=2"),
        );
        strip_session_cookie(&mut h);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        let mut only = HeaderMap::new();
        only.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-berth-session=abc"),
        );
        strip_session_cookie(&mut only);
        assert!(only.get(header::COOKIE).is_none());
    }

    #[test]
    fn nonces_are_bounded() {
        let s = signin();
        for _ in 0..MAX_NONCES {
            assert_eq!(s.nonce("a.apps.test").status(), StatusCode::OK);
        }
        let full = s.nonce("a.apps.test");
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(full.headers().contains_key(header::RETRY_AFTER));
    }
}
