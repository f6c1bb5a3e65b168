//! Who may read a lease's logs and events or open a shell: the holder of a fresh access token
//! ([`berth_protocol::access`]) signed by the lease's tenant (an EOA, or a contract wallet
//! that accepts the signature by ERC-1271), or, without a token, the tenant signed in with
//! Ethereum at the gateway on the provider's API host (its sealed session cookie, opened with
//! the gateway's `session_key_file`).

use alloy::primitives::{Address, U256};
use axum::{
    Json,
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
};
use berth_protocol::{
    access::{AccessError, Operation, QUERY, Token},
    api::ApiError,
};

use crate::{chain::LeaseView, gateway::Gateway};

/// Why a request is refused: the status and what to tell the client.
pub type Refusal = (StatusCode, String);

/// An error answer: the status and `{"error": message}`.
pub fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

/// The lease `raw` names, when it is this provider's and the request carries its tenant's
/// token for `operation`; with the tenant. Else the answer to send.
pub async fn authorized_lease(
    g: &Gateway,
    raw: &str,
    operation: Operation,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(LeaseView, Address), Response> {
    let Ok(id) = raw.parse::<U256>() else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("`{raw}` is not a lease id"),
        ));
    };
    let lease = crate::gateway::lease_of_provider(g, id)
        .await
        .map_err(|r| *r)?;
    let who = authorize(g, &lease, operation, headers, query)
        .await
        .map_err(|(status, why)| refuse(status, why))?;
    Ok((lease, who))
}

/// The address of the request's API-host session (None: no session key or no cookie). It
/// must be the gateway's, for this chain, unexpired, and used on the host it was issued for,
/// from that host's own pages when a browser names an origin.
fn signed_in(g: &Gateway, headers: &HeaderMap, now: u64) -> Option<Result<Address, Refusal>> {
    use berth_runtime::session::{COOKIE, api_scope, cookie};
    let key = g.sessions.as_ref()?;
    let value = cookie(headers, COOKIE)?;
    let host = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|h| h.split(':').next().unwrap_or_default().to_owned())
    };
    let requested = host("x-forwarded-host").or_else(|| host("host"));
    let invalid = || {
        Some(Err((
            StatusCode::UNAUTHORIZED,
            "the session cookie is not one of this provider's API sessions, or it has expired: sign in again".to_owned(),
        )))
    };
    let Some(s) = key.open(value) else {
        return invalid();
    };
    if s.scope != api_scope(g.chain_id) || s.expires <= now || requested.as_deref() != Some(&s.host)
    {
        return invalid();
    }
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let from_elsewhere = origin.is_some_and(|o| {
        let origin_host = o.split("://").nth(1).unwrap_or_default();
        origin_host.split(':').next() != Some(s.host.as_str())
    });
    if from_elsewhere {
        return Some(Err((
            StatusCode::FORBIDDEN,
            format!(
                "a signed-in session is honoured only from {}'s own pages; other sites send an access token",
                s.host
            ),
        )));
    }
    Some(Ok(s.address))
}

/// The token of a request: the `Authorization` header, else the `access` query parameter.
fn token(headers: &HeaderMap, query: Option<&str>) -> Result<Token, AccessError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| AccessError::Missing("the Authorization header is not text".into()))?;
        return Token::from_header(text);
    }
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == QUERY)
            .map(|(_, v)| v.replace("%2E", ".").replace("%2e", "."))
    });
    match from_query {
        Some(t) => Token::decode(&t),
        None => Err(AccessError::Missing("none was sent".into())),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The tenant, when the request carries a token of theirs for `operation` of `lease`.
pub async fn authorize(
    g: &Gateway,
    lease: &LeaseView,
    operation: Operation,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Address, Refusal> {
    let unauthorized = |e: AccessError| (StatusCode::UNAUTHORIZED, e.to_string());
    let token = match token(headers, query) {
        Ok(t) => t,
        Err(e @ AccessError::Missing(_)) => {
            return match signed_in(g, headers, now()) {
                Some(Ok(address)) if address == lease.tenant => Ok(address),
                Some(Ok(address)) => Err((
                    StatusCode::FORBIDDEN,
                    format!(
                        "signed in as {address}, not as lease {}'s tenant {}",
                        lease.id, lease.tenant
                    ),
                )),
                Some(Err(refusal)) => Err(refusal),
                None => Err(unauthorized(e)),
            };
        }
        Err(e) => return Err(unauthorized(e)),
    };
    let id: U256 = lease.id;
    match token.verify(
        g.chain_id,
        g.chain.escrow(),
        id,
        operation,
        lease.tenant,
        now(),
    ) {
        Ok(tenant) => Ok(tenant),
        Err(AccessError::NotTenant { signer }) => {
            // A contract wallet answers for itself.
            let digest = berth_protocol::access::signing_hash(
                g.chain_id,
                g.chain.escrow(),
                id,
                operation,
                token.expires_at,
            );
            let unavailable =
                |e: crate::chain::ChainError| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            if g.chain.has_code(lease.tenant).await.map_err(unavailable)?
                && g.chain
                    .erc1271_valid(
                        lease.tenant,
                        digest,
                        token.signature.as_bytes().to_vec().into(),
                    )
                    .await
                    .map_err(unavailable)?
            {
                return Ok(lease.tenant);
            }
            Err((
                StatusCode::FORBIDDEN,
                AccessError::NotTenant { signer }.to_string(),
            ))
        }
        Err(e) => Err(unauthorized(e)),
    }
}
