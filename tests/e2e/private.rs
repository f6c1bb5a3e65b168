//! Private apps with the real keeper, gateway and podman: without a session a browser gets the
//! sign-in page and an API client a 401; the tenant signs in with Ethereum and gets a cookie
//! the app never sees, while the app sees the address in `X-Berth-Address`; a contract wallet
//! the manifest allows signs in through ERC-1271; a stranger is refused, and so are a
//! replayed nonce, a message for another host or chain, an expired one, and one app's cookie
//! on another.

use alloy::{primitives::Address, signers::SignerSync, signers::local::PrivateKeySigner};
use berth_bindings::testing::ContractWallet;
use berth_e2e::{
    gateway::{Answer, GatewayProcess, send},
    keeper::wait_for,
};
use berth_protocol::{routing::signin, siwe::SiweMessage};
use eyre::{Result, ensure};
use hyper::Method;

use crate::{
    gated::Gated,
    keeper::{TENANT, WAIT},
};

/// Two private services of the example app; `web` also admits `allowed`.
fn private_manifest(allowed: Address) -> Vec<u8> {
    format!(
        "version: 1
services:
  web:
    image: localhost/berth-hello:latest
    ports: [{{port: 8080, expose: http}}]
    resources: {{cpu: 250m, memory: 128Mi}}
    private: true
    allow: [\"{allowed}\"]
  docs:
    image: localhost/berth-hello:latest
    ports: [{{port: 8080, expose: http}}]
    resources: {{cpu: 250m, memory: 128Mi}}
    private: true
"
    )
    .into_bytes()
}

struct Site<'a> {
    gw: &'a GatewayProcess,
    config: std::sync::Arc<rustls::ClientConfig>,
    chain_id: u64,
}

impl Site<'_> {
    async fn call(
        &self,
        host: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer> {
        send(
            self.gw.addr,
            host,
            self.config.clone(),
            method,
            path,
            headers,
            body,
        )
        .await
    }

    async fn nonce(&self, host: &str) -> Result<String> {
        let a = self
            .call(host, Method::POST, signin::NONCE, &[], Vec::new())
            .await?;
        ensure!(a.status == 200, "nonce: {} {}", a.status, a.text());
        let v: serde_json::Value = serde_json::from_slice(&a.body)?;
        Ok(v["nonce"].as_str().unwrap_or_default().to_owned())
    }

    /// A message for `host` by `address`, valid for an hour from now.
    fn message(&self, host: &str, address: Address, nonce: &str) -> SiweMessage {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        SiweMessage {
            domain: format!("{host}:{}", self.gw.addr.port()),
            address,
            statement: Some(format!("Sign in to {host}.")),
            uri: format!("https://{host}:{}/", self.gw.addr.port()),
            version: "1".into(),
            chain_id: self.chain_id,
            nonce: nonce.into(),
            issued_at: now,
            expiration_time: Some(now + 3600),
            not_before: None,
            request_id: None,
            resources: Vec::new(),
        }
    }

    /// Posts `message` signed by `key` to the verify endpoint.
    async fn verify(
        &self,
        host: &str,
        message: &SiweMessage,
        key: &PrivateKeySigner,
    ) -> Result<Answer> {
        let text = message.to_text();
        let signature = key.sign_message_sync(text.as_bytes())?;
        let body = serde_json::json!({
            "message": text,
            "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
        });
        self.call(
            host,
            Method::POST,
            signin::VERIFY,
            &[("content-type", "application/json")],
            serde_json::to_vec(&body)?,
        )
        .await
    }

    /// Signs in as `key` (for `address`, itself when None) and returns the cookie pair.
    async fn sign_in(
        &self,
        host: &str,
        key: &PrivateKeySigner,
        address: Option<Address>,
    ) -> Result<String> {
        let nonce = self.nonce(host).await?;
        let m = self.message(host, address.unwrap_or(key.address()), &nonce);
        let a = self.verify(host, &m, key).await?;
        ensure!(a.status == 200, "sign-in: {} {}", a.status, a.text());
        let set = a
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        for attr in [
            "__Host-berth-session=",
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
        ] {
            ensure!(set.contains(attr), "cookie without {attr}: {set}");
        }
        ensure!(
            !set.contains("Domain="),
            "a __Host- cookie names no domain: {set}"
        );
        Ok(set.split(';').next().unwrap_or_default().to_owned())
    }
}

#[sqlx::test(migrations = false)]
async fn private_apps_answer_only_to_signed_in_wallets_they_admit(
    pool: sqlx::PgPool,
) -> Result<()> {
    let g = Gated::start(&pool, "private-apps", &[]).await?;
    let (gw, w, ca) = (&g.gw, &g.w, &g.ca);
    // A contract wallet owned by a key that is not the tenant, allowed by the manifest.
    let owner_key = w.chain.signer(7)?;
    let deployer = w.chain.wallet(TENANT)?;
    let wallet = ContractWallet::deploy(&deployer, owner_key.address()).await?;
    let contract: Address = *wallet.address();
    let manifest = private_manifest(contract);
    let lease = g.lease(&manifest).await?;
    let (web, docs) = (g.host("web", lease), g.host("docs", lease));
    let site = Site {
        gw,
        config: ca.client_config(&[b"http/1.1"])?,
        chain_id: w.chain.chain_id(),
    };

    // No session: an API client gets 401, a browser the sign-in page (also a 401).
    let api = wait_for("the private app's route", WAIT, || async {
        let a = site.call(&web, Method::GET, "/", &[], Vec::new()).await?;
        Ok((a.status != 404).then_some(a))
    })
    .await
    .map_err(|e| eyre::eyre!("{e}\n{}", g.logs()))?;
    ensure!(
        api.status == 401,
        "no cookie: {} {}",
        api.status,
        api.text()
    );
    ensure!(
        api.headers.contains_key("www-authenticate"),
        "no WWW-Authenticate"
    );
    let page = site
        .call(
            &web,
            Method::GET,
            "/",
            &[("accept", "text/html,*/*")],
            Vec::new(),
        )
        .await?;
    ensure!(
        page.status == 401
            && page.text().contains("Sign in with Ethereum")
            && page.text().contains(&w.chain.chain_id().to_string()),
        "the sign-in page: {} {}",
        page.status,
        page.text()
    );

    // The tenant signs in: the app answers, sees the address, never the session cookie.
    let tenant = w.chain.signer(TENANT)?;
    let cookie = site.sign_in(&web, &tenant, None).await?;
    let cookies = format!("theme=dark; {cookie}");
    let who = site
        .call(
            &web,
            Method::GET,
            "/cgi-bin/whoami",
            &[
                ("cookie", cookies.as_str()),
                ("x-berth-address", "0xforged"),
            ],
            Vec::new(),
        )
        .await?;
    ensure!(
        who.status == 200,
        "signed in: {} {}",
        who.status,
        who.text()
    );
    let text = who.text();
    ensure!(
        text.contains(&format!("address: {}", tenant.address().to_checksum(None))),
        "the app saw: {text}"
    );
    ensure!(
        text.contains("cookies: theme=dark\n"),
        "the session cookie reached the app: {text}"
    );

    // One app's cookie on another app of the same lease: refused.
    let other = site
        .call(
            &docs,
            Method::GET,
            "/",
            &[("cookie", cookie.as_str())],
            Vec::new(),
        )
        .await?;
    ensure!(
        other.status == 401,
        "app A's cookie on app B: {}",
        other.status
    );

    // Bad sign-in requests: each a clear answer, nothing else changes.
    let fresh = site.nonce(&web).await?;
    for (what, method, path, body, want) in [
        (
            "garbage",
            Method::POST,
            signin::VERIFY,
            b"{not json".to_vec(),
            400,
        ),
        (
            "a signature that is not hex",
            Method::POST,
            signin::VERIFY,
            serde_json::to_vec(&serde_json::json!({
                "message": site.message(&web, tenant.address(), &fresh).to_text(),
                "signature": "0xzz",
            }))?,
            400,
        ),
        (
            "an oversized body",
            Method::POST,
            signin::VERIFY,
            vec![b'x'; 20 * 1024],
            413,
        ),
        (
            "a GET of the nonce",
            Method::GET,
            signin::NONCE,
            Vec::new(),
            404,
        ),
    ] {
        let a = site.call(&web, method, path, &[], body).await?;
        ensure!(a.status == want, "{what}: {} {}", a.status, a.text());
        ensure!(
            a.text().contains("\"error\""),
            "{what}: no reason given: {}",
            a.text()
        );
    }
    // The keeper's control socket, asked nonsense: clear refusals, and it keeps answering.
    let control = g.dir.join("keeper.sock");
    for (method, path, body, want) in [
        (Method::POST, "/v1/wake", b"{".to_vec(), 400),
        (Method::GET, "/v1/wake", Vec::new(), 405),
        (Method::POST, "/v1/elsewhere", Vec::new(), 404),
        (Method::POST, "/v1/erc1271", b"[]".to_vec(), 400),
        (Method::POST, "/v1/wake", vec![b'x'; 64 * 1024], 413),
    ] {
        let req = hyper::Request::builder()
            .method(method.clone())
            .uri(format!("http://keeper{path}"))
            .header(hyper::header::HOST, "keeper")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))?;
        let (status, answer) =
            berth_runtime::http::unix_call(&control, req, std::time::Duration::from_secs(10))
                .await?;
        ensure!(
            status.as_u16() == want,
            "control {method} {path}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }

    // A stranger's valid signature: 403. The nonce it used is gone: a replay is a 401.
    let stranger = PrivateKeySigner::random();
    let nonce = site.nonce(&web).await?;
    let m = site.message(&web, stranger.address(), &nonce);
    let a = site.verify(&web, &m, &stranger).await?;
    ensure!(a.status == 403, "a stranger: {} {}", a.status, a.text());
    let nonce = site.nonce(&web).await?;
    let m = site.message(&web, tenant.address(), &nonce);
    ensure!(
        site.verify(&web, &m, &tenant).await?.status == 200,
        "first use"
    );
    let replay = site.verify(&web, &m, &tenant).await?;
    ensure!(
        replay.status == 401 && replay.text().contains("nonce"),
        "replayed nonce: {} {}",
        replay.status,
        replay.text()
    );

    // Wrong host, wrong chain, expired, a nonce issued for another app: 401 each.
    for (what, edit, on) in [
        (
            "another host",
            Box::new(|m: &mut SiweMessage| m.domain = "evil.test".into())
                as Box<dyn Fn(&mut SiweMessage)>,
            web.as_str(),
        ),
        (
            "another chain",
            Box::new(|m: &mut SiweMessage| m.chain_id += 1),
            web.as_str(),
        ),
        (
            "expired",
            Box::new(|m: &mut SiweMessage| {
                m.issued_at -= 7200;
                m.expiration_time = Some(m.issued_at + 60);
            }),
            web.as_str(),
        ),
    ] {
        let nonce = site.nonce(on).await?;
        let mut m = site.message(on, tenant.address(), &nonce);
        edit(&mut m);
        let a = site.verify(on, &m, &tenant).await?;
        ensure!(a.status == 401, "{what}: {} {}", a.status, a.text());
        eprintln!("refused ({what}): {}", a.text());
    }
    let docs_nonce = site.nonce(&docs).await?;
    let m = site.message(&web, tenant.address(), &docs_nonce);
    ensure!(
        site.verify(&web, &m, &tenant).await?.status == 401,
        "a nonce of another app"
    );

    // The contract wallet the manifest allows signs in with its owner's key (ERC-1271).
    let cookie = site.sign_in(&web, &owner_key, Some(contract)).await?;
    let who = site
        .call(
            &web,
            Method::GET,
            "/cgi-bin/whoami",
            &[("cookie", cookie.as_str())],
            Vec::new(),
        )
        .await?;
    ensure!(
        who.text()
            .contains(&format!("address: {}", contract.to_checksum(None))),
        "the contract wallet's session: {}",
        who.text()
    );
    // Its owner key alone is not admitted.
    let nonce = site.nonce(&web).await?;
    let m = site.message(&web, owner_key.address(), &nonce);
    ensure!(
        site.verify(&web, &m, &owner_key).await?.status == 403,
        "the owner key itself"
    );
    // docs does not allow the contract wallet.
    let nonce = site.nonce(&docs).await?;
    let m = site.message(&docs, contract, &nonce);
    ensure!(
        site.verify(&docs, &m, &owner_key).await?.status == 403,
        "docs admits only the tenant"
    );

    // The session ends with the lease.
    berth_e2e::mined(w.escrow()?.closeLease(lease), "closeLease").await?;
    wait_for("the hostname to go", WAIT, || async {
        let a = site
            .call(
                &web,
                Method::GET,
                "/",
                &[("cookie", cookie.as_str())],
                Vec::new(),
            )
            .await?;
        Ok((a.status == 404).then_some(()))
    })
    .await?;
    Ok(())
}

/// The provider's API host behind a gateway: a tenant signed in there with Ethereum reads its
/// lease's events and logs with the session cookie alone (no access token); another wallet's
/// session is refused, and so are a forged cookie, the cookie from another site's page and
/// the cookie sent around the gateway.
#[sqlx::test(migrations = false)]
async fn a_tenant_signed_in_on_the_api_host_reads_its_leases_day_two_feed(
    pool: sqlx::PgPool,
) -> Result<()> {
    use berth_e2e::gateway::scratch_dir;
    let keys = scratch_dir("api-session")?;
    let key_file = keys.join("session.key");
    std::fs::write(&key_file, alloy::hex::encode([0x5au8; 32]))?;
    let key_setting = key_file.display().to_string();
    let g = Gated::start_with(
        &pool,
        "api-session",
        &[],
        &[("BERTH_SESSION_KEY_FILE", key_setting.as_str())],
    )
    .await?;
    let w = &g.w;
    let lease = g.lease(&berth_e2e::keeper::hello_manifest()).await?;

    // A gateway serving the keeper's API at api.custom.test, sealing sessions with the key
    // the keeper opens them with.
    let api_host = "api.custom.test";
    let cert = g.ca.issue("api", &[api_host])?;
    let upstream = format!("127.0.0.1:{}", w.setup.gateway_port);
    let api_gw = GatewayProcess::start(
        &keys,
        "apps.test",
        &[cert],
        &[
            ("BERTH_API_HOST", api_host),
            ("BERTH_API_UPSTREAM", upstream.as_str()),
            ("BERTH_SESSION_KEY_FILE", key_setting.as_str()),
        ],
    )
    .await?;
    let site = Site {
        gw: &api_gw,
        config: g.ca.client_config(&[b"http/1.1"])?,
        chain_id: w.chain.chain_id(),
    };
    let events = format!("/v1/leases/{lease}/events");
    let get = |path: String, headers: Vec<(&'static str, String)>| {
        let site = &site;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            site.call(api_host, Method::GET, &path, &h, Vec::new())
                .await
        }
    };

    let none = get(events.clone(), vec![]).await?;
    ensure!(
        none.status == 401,
        "no token, no session: {} {}",
        none.status,
        none.text()
    );
    let tenant = site
        .sign_in(api_host, &w.chain.signer(TENANT)?, None)
        .await?;
    let feed = get(events.clone(), vec![("cookie", tenant.clone())]).await?;
    ensure!(
        feed.status == 200 && feed.text().contains("\"deployed\""),
        "the tenant's session: {} {}",
        feed.status,
        feed.text()
    );
    let logs = get(
        format!("/v1/leases/{lease}/logs?tail=1"),
        vec![("cookie", tenant.clone())],
    )
    .await?;
    ensure!(
        logs.status == 200,
        "logs with the session: {} {}",
        logs.status,
        logs.text()
    );

    let stranger = site.sign_in(api_host, &w.chain.signer(6)?, None).await?;
    let refused = get(events.clone(), vec![("cookie", stranger)]).await?;
    ensure!(
        refused.status == 403 && refused.text().contains("not as lease"),
        "another wallet's session: {} {}",
        refused.status,
        refused.text()
    );
    let elsewhere = get(
        events.clone(),
        vec![
            ("cookie", tenant.clone()),
            ("origin", "https://evil.test".into()),
        ],
    )
    .await?;
    ensure!(
        elsewhere.status == 403,
        "the session from another site's page: {} {}",
        elsewhere.status,
        elsewhere.text()
    );
    let mut forged = tenant.clone();
    let last = forged.pop().unwrap_or('0');
    forged.push(if last == '0' { '1' } else { '0' });
    let forged = get(events.clone(), vec![("cookie", forged)]).await?;
    ensure!(
        forged.status == 401,
        "a forged cookie: {} {}",
        forged.status,
        forged.text()
    );
    // Around the gateway (the keeper's own address): the session names another host.
    let direct = alloy::transports::http::reqwest::Client::new()
        .get(format!("{}{events}", w.setup.gateway()))
        .header("cookie", &tenant)
        .send()
        .await?
        .status();
    ensure!(
        direct == 401,
        "the session sent around the gateway: {direct}"
    );
    let _ = std::fs::remove_dir_all(&keys);
    Ok(())
}
