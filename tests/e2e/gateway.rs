//! The gateway as a real process with real TLS: hostnames routed to their apps over HTTP/2
//! and HTTP/1.1, bodies streamed, WebSocket spliced, `X-Forwarded-*` set by the gateway alone,
//! certificates chosen by SNI and reloaded from disk, routes replaced whole (a removed one
//! 404s at once) and kept across a restart, bad clients answered without harm, and SIGTERM
//! closing idle keep-alive connections at once.

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};

use alloy::primitives::U256;
use berth_e2e::gateway::{GatewayProcess, TestCa, get, raw, scratch_dir, tls};
use berth_protocol::routing::{Route, RouteTable};
use eyre::{Result, ensure};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{
    Request, Response,
    body::{Bytes, Frame, Incoming},
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;

/// An app answering `/` with its name and the headers it received, and `/stream` with three
/// chunks 400 ms apart.
async fn app(name: &'static str) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(move |req: Request<Incoming>| async move {
                if req.uri().path() == "/stream" {
                    let chunks = futures_util::stream::unfold(0u8, |i| async move {
                        if i == 3 {
                            return None;
                        }
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(400)).await;
                        }
                        Some((
                            Ok::<_, Infallible>(Frame::data(Bytes::from(format!("chunk {i}\n")))),
                            i + 1,
                        ))
                    });
                    return Ok::<_, Infallible>(Response::new(BodyExt::boxed(StreamBody::new(
                        chunks,
                    ))));
                }
                let header = |n: &str| {
                    req.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                let text = format!(
                    "app {name}\nhost {}\nxff {}\nproto {}\nxhost {}\nberth {}\n",
                    header("host"),
                    header("x-forwarded-for"),
                    header("x-forwarded-proto"),
                    header("x-forwarded-host"),
                    header("x-berth-address")
                );
                Ok(Response::new(
                    Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed(),
                ))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

/// A WebSocket server echoing every message.
async fn echo() -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn route(host: &str, lease: u64, upstream: SocketAddr) -> Route {
    Route {
        host: host.into(),
        lease: U256::from(lease),
        service: "web".into(),
        upstream: upstream.to_string(),
        asleep: None,
        access: None,
    }
}

#[tokio::test]
async fn hostnames_reach_their_apps_over_tls_and_bad_clients_change_nothing() -> Result<()> {
    let dir = scratch_dir("gateway")?;
    let ca = TestCa::new(&dir)?;
    let apps = ca.issue("apps", &["*.apps.test"])?;
    let other = ca.issue("other", &["*.other.test"])?;
    let (a, b, ws) = (app("A").await?, app("B").await?, echo().await?);
    let routes_file = dir.join("routes.json");
    // The provider API by its own hostname (here app B stands in for the keeper's API).
    let api_upstream = b.to_string();
    let metrics_addr = format!("127.0.0.1:{}", berth_e2e::keeper::free_port()?);
    let env = [
        ("BERTH_METRICS_ADDR", metrics_addr.as_str()),
        ("BERTH_API_HOST", "api.other.test"),
        ("BERTH_API_UPSTREAM", api_upstream.as_str()),
        ("BERTH_HEADER_TIMEOUT_MS", "1000"),
        ("BERTH_CERT_RELOAD_S", "1"),
        ("BERTH_MAX_HEADER_BYTES", "16384"),
        (
            "BERTH_ROUTES_FILE",
            routes_file.to_str().unwrap_or_default(),
        ),
    ];
    let mut gw =
        GatewayProcess::start(&dir, "apps.test", &[apps.clone(), other.clone()], &env).await?;
    let table = RouteTable {
        routes: vec![
            route("a.apps.test", 1, a),
            route("b.apps.test", 2, b),
            route("ws.apps.test", 3, ws),
            route("x.other.test", 4, a),
        ],
    };
    gw.push(&table).await?;
    ensure!(
        gw.routes().await?.routes.len() == 4,
        "the table is served as pushed"
    );
    let h2 = ca.client_config(&[b"h2", b"http/1.1"])?;
    let h1 = ca.client_config(&[b"http/1.1"])?;

    // Routing by hostname, HTTP/2 and HTTP/1.1; headers set by the gateway, not the client.
    let answer = get(gw.addr, "a.apps.test", "/", h2.clone()).await?;
    ensure!(
        answer.status == 200 && answer.version == hyper::Version::HTTP_2,
        "{answer:?}"
    );
    let text = answer.text();
    for line in [
        "app A",
        "host a.apps.test",
        "xff 127.0.0.1",
        "proto https",
        "xhost a.apps.test",
        "berth -",
    ] {
        ensure!(
            text.lines().any(|l| l == line),
            "`{line}` missing from:\n{text}"
        );
    }
    let answer = get(gw.addr, "b.apps.test", "/", h1.clone()).await?;
    ensure!(
        answer.status == 200 && answer.version == hyper::Version::HTTP_11,
        "{answer:?}"
    );
    ensure!(answer.text().starts_with("app B\n"), "{}", answer.text());
    let api = get(gw.addr, "api.other.test", "/v1/x", h2.clone()).await?;
    ensure!(
        api.status == 200 && api.text().starts_with("app B\n"),
        "api_host: {api:?}"
    );
    // SNI picks the certificate whose names cover the host (the client checks them).
    ensure!(
        get(gw.addr, "x.other.test", "/", h2.clone())
            .await?
            .text()
            .starts_with("app A\n")
    );

    // Streamed, not buffered: the first chunk arrives long before the last is written.
    let stream = tls(gw.addr, "a.apps.test", h1.clone()).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let started = Instant::now();
    let resp = sender
        .send_request(
            Request::get("/stream")
                .header("host", "a.apps.test")
                .body(Full::new(Bytes::new()))?,
        )
        .await?;
    let mut body = resp.into_body();
    let first = body
        .frame()
        .await
        .ok_or_else(|| eyre::eyre!("no first chunk"))??;
    let first_at = started.elapsed();
    ensure!(
        first.data_ref().is_some_and(|d| d.as_ref() == b"chunk 0\n"),
        "first chunk {first:?}"
    );
    let rest = body.collect().await?.to_bytes();
    ensure!(rest.as_ref() == b"chunk 1\nchunk 2\n", "rest {rest:?}");
    ensure!(
        first_at < Duration::from_millis(300) && started.elapsed() >= Duration::from_millis(800),
        "first chunk after {first_at:?}, all after {:?}",
        started.elapsed()
    );

    // WebSocket through the gateway.
    let stream = tls(gw.addr, "ws.apps.test", h1.clone()).await?;
    let (mut socket, _) = tokio_tungstenite::client_async("wss://ws.apps.test/", stream).await?;
    for i in 0..3 {
        socket.send(Message::text(format!("ping {i}"))).await?;
        let back = tokio::time::timeout(Duration::from_secs(5), socket.next()).await?;
        ensure!(
            matches!(&back, Some(Ok(Message::Text(t))) if t.as_str() == format!("ping {i}")),
            "{back:?}"
        );
    }
    socket.close(None).await?;

    // Bad input: each gets a clear answer and the gateway goes on.
    let unknown = get(gw.addr, "nobody.apps.test", "/", h2.clone()).await?;
    ensure!(
        unknown.status == 404 && unknown.text().contains("No app here"),
        "{unknown:?}"
    );
    let bad_host = raw(
        gw.addr,
        "a.apps.test",
        h1.clone(),
        b"GET / HTTP/1.1\r\nHost: bad_host!\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await?;
    ensure!(bad_host.starts_with("HTTP/1.1 400"), "{bad_host}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a.apps.test\r\nX-Big: {}\r\n\r\n",
        "x".repeat(64 * 1024)
    );
    let answer = raw(
        gw.addr,
        "a.apps.test",
        h1.clone(),
        huge.as_bytes(),
        Duration::from_secs(5),
    )
    .await?;
    ensure!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "oversized head answered: {answer}"
    );
    let slow_started = Instant::now();
    let slow = raw(
        gw.addr,
        "a.apps.test",
        h1.clone(),
        b"GET / HTTP/1.1\r\nHost: a.apps.t",
        Duration::from_secs(10),
    )
    .await?;
    let held = slow_started.elapsed();
    ensure!(
        held < Duration::from_secs(5),
        "a slow client held its connection {held:?}: {slow}"
    );
    let handshake_only = tokio::net::TcpStream::connect(gw.addr).await?;
    ensure!(
        get(gw.addr, "a.apps.test", "/", h2.clone()).await?.status == 200,
        "served during bad clients"
    );
    drop(handshake_only);

    // Metering at the door: answers and bytes per lease, refusals by reason.
    let metrics = berth_e2e::keeper::wait_for("the metrics", Duration::from_secs(10), || async {
        let text = alloy::transports::http::reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await?
            .text()
            .await?;
        let ws_bytes = value(
            &text,
            "berth_gateway_response_bytes_total{lease=\"3\",service=\"web\"}",
        );
        Ok((ws_bytes > 0.0).then_some(text))
    })
    .await?;
    for (series, at_least) in [
        (
            "berth_gateway_requests_total{lease=\"1\",service=\"web\",class=\"2xx\"}",
            3.0,
        ),
        (
            "berth_gateway_requests_total{lease=\"2\",service=\"web\",class=\"2xx\"}",
            1.0,
        ),
        (
            "berth_gateway_response_bytes_total{lease=\"2\",service=\"web\"}",
            60.0,
        ),
        (
            "berth_gateway_request_bytes_total{lease=\"3\",service=\"web\"}",
            18.0,
        ),
        ("berth_gateway_refusals_total{reason=\"no_route\"}", 1.0),
        ("berth_gateway_refusals_total{reason=\"bad_host\"}", 1.0),
        ("berth_gateway_routes", 4.0),
    ] {
        let v = value(&metrics, series);
        ensure!(
            v >= at_least,
            "{series} = {v}, expected at least {at_least}:\n{metrics}"
        );
    }

    // A route removed is gone at once.
    let mut fewer = table.clone();
    fewer.routes.retain(|r| r.host != "b.apps.test");
    gw.push(&fewer).await?;
    ensure!(
        get(gw.addr, "b.apps.test", "/", h2.clone()).await?.status == 404,
        "removed route still served"
    );
    // The admin socket answers bad requests with a reason and keeps the table.
    for (method, path, body, status, says) in [
        (
            hyper::Method::PUT,
            "/v1/routes",
            b"nonsense".to_vec(),
            400,
            "not a route table",
        ),
        (
            hyper::Method::PUT,
            "/v1/routes",
            vec![b' '; 17 << 20],
            413,
            "body",
        ),
        (
            hyper::Method::DELETE,
            "/v1/routes",
            Vec::new(),
            405,
            "GET or PUT",
        ),
        (
            hyper::Method::GET,
            "/v1/nothing",
            Vec::new(),
            404,
            "no /v1/nothing",
        ),
    ] {
        let (got, answer) = match gw.admin_request(method.clone(), path, body).await {
            Ok(answer) => answer,
            // The gateway answers 413 and closes as soon as the limit is passed; the client
            // may still be writing and see the closed connection instead of the answer.
            Err(e) if status == 413 && e.to_string().contains("error writing a body") => continue,
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&answer);
        ensure!(
            got.as_u16() == status && text.contains(says),
            "{method} {path}: {got} {text}"
        );
    }
    ensure!(
        gw.routes().await?.routes.len() == 3,
        "bad admin requests changed the table"
    );

    // A table with an invalid route is refused whole; the served one stays.
    let mut bad = fewer.clone();
    bad.routes.push(route("Bad_Host", 9, a));
    ensure!(gw.push(&bad).await.is_err(), "an invalid table was taken");
    ensure!(get(gw.addr, "a.apps.test", "/", h2.clone()).await?.status == 200);

    // A new certificate on disk is served to new connections.
    let before = peer_certificate(gw.addr, "a.apps.test", h1.clone()).await?;
    ca.issue("apps", &["*.apps.test"])?;
    let reloaded =
        berth_e2e::keeper::wait_for("the new certificate", Duration::from_secs(10), || async {
            let now = peer_certificate(gw.addr, "a.apps.test", h1.clone()).await?;
            Ok((now != before).then_some(()))
        })
        .await;
    ensure!(
        reloaded.is_ok(),
        "certificate not reloaded:\n{}",
        gw.log_text()
    );

    // A restarted gateway serves the last table before any push.
    ensure!(gw.alive(), "the gateway died:\n{}", gw.log_text());
    drop(gw);
    let gw = GatewayProcess::start(&dir, "apps.test", &[apps, other], &env).await?;
    ensure!(
        get(gw.addr, "a.apps.test", "/", h2.clone())
            .await?
            .text()
            .starts_with("app A\n"),
        "routes lost on restart"
    );
    ensure!(get(gw.addr, "b.apps.test", "/", h2).await?.status == 404);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

async fn peer_certificate(
    addr: SocketAddr,
    host: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<Vec<u8>> {
    let stream = tls(addr, host, config).await?;
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .ok_or_else(|| eyre::eyre!("no certificate"))?;
    Ok(certs[0].to_vec())
}

/// The keeper and the gateway together: a lease's HTTP port is confirmed as its `https://`
/// hostname, served through the gateway, and 404s as soon as the lease is closed.
#[sqlx::test(migrations = false)]
async fn a_lease_is_served_at_its_https_hostname_until_it_closes(pool: sqlx::PgPool) -> Result<()> {
    use crate::{
        gated::Gated,
        keeper::{HELLO_BODY, WAIT},
    };
    use berth_e2e::{
        keeper::{hello_manifest, wait_for},
        mined,
    };

    let g = Gated::start(&pool, "gateway-keeper", &[]).await?;
    let (gw, w, keeper, ca) = (&g.gw, &g.w, &g.keeper, &g.ca);
    let port = gw.addr.port().to_string();
    let lease = g.lease(&hello_manifest()).await?;
    let host = g.host("web", lease);
    let endpoint = w.endpoint(lease).await?;
    ensure!(
        endpoint == format!("https://{host}:{port}"),
        "endpoint {endpoint}"
    );
    let config = ca.client_config(&[b"h2", b"http/1.1"])?;
    let answer = wait_for("the app through the gateway", WAIT, || async {
        let a = get(gw.addr, &host, "/", config.clone()).await?;
        Ok((a.status == 200).then_some(a))
    })
    .await
    .map_err(|e| {
        eyre::eyre!(
            "{e}\ngateway:\n{}\nkeeper:\n{}",
            gw.log_text(),
            keeper.log_text()
        )
    })?;
    ensure!(answer.text() == HELLO_BODY, "{}", answer.text());

    // Metering at the door reaches the keeper: the lease's egress is stored with the samples.
    let egress: i64 = wait_for("the lease's traffic in the keeper's samples", WAIT, || async {
        let bytes: Option<i64> = sqlx::query_scalar(
            "SELECT max(response_bytes) FROM berth_keeper.traffic_samples WHERE lease_id = $1::numeric",
        )
        .bind(lease.to_string())
        .fetch_one(&pool)
        .await?;
        Ok(bytes.filter(|b| *b >= HELLO_BODY.len() as i64))
    })
    .await?;
    eprintln!("egress of lease {lease} in the keeper's samples: {egress} bytes");

    // No way around the gateway: the HTTP port is published on loopback only.
    let workload = w
        .workload(lease)
        .await?
        .ok_or_else(|| eyre::eyre!("no workload"))?;
    let published = *workload
        .ports
        .get(&("web".to_string(), 8080))
        .ok_or_else(|| eyre::eyre!("port 8080 not published: {workload:?}"))?;
    ensure!(
        tokio::net::TcpStream::connect(("127.0.0.1", published))
            .await
            .is_ok(),
        "not on loopback"
    );
    match outward_address() {
        Some(ip) => ensure!(
            tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect((ip, published))
            )
            .await
            .map_or(true, |c| c.is_err()),
            "the app answers on {ip}:{published}, around the gateway"
        ),
        None => eprintln!("no non-loopback address here: only loopback publishing checked"),
    }

    mined(w.escrow()?.closeLease(lease), "closeLease").await?;
    let closed_at = Instant::now();
    // The keeper polls every 100 ms here and drops routes before tearing down.
    wait_for("the hostname to 404", Duration::from_secs(2), || async {
        Ok((get(gw.addr, &host, "/", config.clone()).await?.status == 404).then_some(()))
    })
    .await?;
    let gone_after = closed_at.elapsed();
    ensure!(
        gw.routes().await?.routes.is_empty(),
        "a route outlived its lease"
    );
    eprintln!(
        "hostname 404 {} ms after closeLease was mined",
        gone_after.as_millis()
    );
    Ok(())
}

/// The value of one series in Prometheus text (0 when absent).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// This machine's address on its default route (no packet is sent), if it has one.
fn outward_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.254:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// SIGTERM: idle kept-alive connections (HTTP/1.1 and HTTP/2) are closed by the gateway at
/// once and it exits cleanly, long before the drain timeout.
#[tokio::test]
async fn sigterm_closes_idle_connections_and_exits_at_once() -> Result<()> {
    let dir = scratch_dir("gateway-drain")?;
    let ca = TestCa::new(&dir)?;
    let apps = ca.issue("apps", &["*.apps.test"])?;
    let a = app("A").await?;
    let env = [("BERTH_DRAIN_TIMEOUT_S", "30")];
    let mut gw = GatewayProcess::start(&dir, "apps.test", &[apps], &env).await?;
    gw.push(&RouteTable {
        routes: vec![route("a.apps.test", 1, a)],
    })
    .await?;
    let request = || {
        Request::get("https://a.apps.test/")
            .header(hyper::header::HOST, "a.apps.test")
            .body(Full::new(Bytes::new()))
    };
    // One connection of each protocol, each having answered a request, then left idle.
    let stream = tls(gw.addr, "a.apps.test", ca.client_config(&[b"http/1.1"])?).await?;
    let (mut h1, h1_conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let h1_conn = tokio::spawn(h1_conn);
    let (mut parts, body) = request()?.into_parts();
    parts.uri = "/".parse()?;
    let resp = h1.send_request(Request::from_parts(parts, body)).await?;
    ensure!(resp.status() == 200, "HTTP/1.1: {}", resp.status());
    resp.into_body().collect().await?;
    let stream = tls(gw.addr, "a.apps.test", ca.client_config(&[b"h2"])?).await?;
    ensure!(
        stream.get_ref().1.alpn_protocol() == Some(b"h2"),
        "h2 agreed"
    );
    let (mut h2, h2_conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await?;
    let h2_conn = tokio::spawn(h2_conn);
    let mut req = request()?;
    req.headers_mut().remove(hyper::header::HOST);
    let resp = h2.send_request(req).await?;
    ensure!(resp.status() == 200, "HTTP/2: {}", resp.status());
    resp.into_body().collect().await?;

    let started = Instant::now();
    let status = gw.terminate(Duration::from_secs(10)).await?;
    ensure!(status.success(), "exit status {status}:\n{}", gw.log_text());
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "exit took {:?} with idle connections open (drain timeout 30 s)",
        started.elapsed()
    );
    for (name, conn) in [("HTTP/1.1", h1_conn), ("HTTP/2", h2_conn)] {
        let ended = tokio::time::timeout(Duration::from_secs(2), conn).await;
        ensure!(
            ended.is_ok(),
            "{name} connection still open after the gateway exited"
        );
    }
    ensure!(
        !gw.log_text().contains("still open after the drain timeout"),
        "the drain timed out:\n{}",
        gw.log_text()
    );
    Ok(())
}
