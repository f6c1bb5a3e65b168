use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use tokio::sync::mpsc;

use super::*;

type Out = Empty<Bytes>;

/// An app on loopback that counts the connections it accepts. `/stream` answers with a
/// body whose data the test sends through the returned channel's receiver; `/bye` answers
/// and then closes the connection without saying so.
struct App {
    addr: String,
    connections: Arc<AtomicUsize>,
    bodies: mpsc::Receiver<mpsc::Sender<Bytes>>,
}

/// A body whose chunks arrive on a channel; it ends when the sender is dropped.
struct Chunks(mpsc::Receiver<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

async fn app() -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let (to_test, bodies) = mpsc::channel(4);
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let to_test = to_test.clone();
            let (closing, mut close) = mpsc::channel::<()>(1);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (to_test, closing) = (to_test.clone(), closing.clone());
                async move {
                    let body: BoxBody<Bytes, std::convert::Infallible> = match req.uri().path() {
                        "/stream" => {
                            let (tx, rx) = mpsc::channel(1);
                            let _ = to_test.send(tx).await;
                            Chunks(rx).boxed()
                        }
                        "/bye" => {
                            let _ = closing.try_send(());
                            Full::new(Bytes::from_static(b"bye")).boxed()
                        }
                        _ => Full::new(Bytes::from_static(b"ok")).boxed(),
                    };
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                }
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = close.recv() => {
                        // Let the answer go out, then drop the socket.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
        }
    });
    App {
        addr,
        connections,
        bodies,
    }
}

fn get(app: &App, path: &str) -> Request<Out> {
    Request::get(path)
        .header(http::header::HOST, &app.addr)
        .body(Empty::new())
        .expect("request")
}

fn upstreams() -> Upstreams<Out> {
    Upstreams::new(Duration::from_secs(2), Duration::from_secs(60))
}

async fn text(resp: hyper::Response<Incoming>) -> String {
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// `GET path` through `up`, the whole answer read.
async fn ask(up: &Upstreams<Out>, app: &App, path: &str, reusable: bool) -> String {
    let resp = up
        .send(&app.addr, get(app, path), reusable)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    text(resp).await
}

#[tokio::test]
async fn requests_one_after_another_share_one_connection() {
    let app = app().await;
    let up = upstreams();
    for _ in 0..5 {
        assert_eq!(ask(&up, &app, "/", true).await, "ok");
        tokio::task::yield_now().await; // the connection's task marks it idle
    }
    assert_eq!(app.connections.load(Ordering::SeqCst), 1);
    assert_eq!(up.sweep(Instant::now()), 1);
}

#[tokio::test]
async fn a_connection_whose_body_still_streams_is_not_handed_out() {
    let mut app = app().await;
    let up = upstreams();
    let streaming = up
        .send(&app.addr, get(&app, "/stream"), true)
        .await
        .expect("sent");
    let body_tx = app.bodies.recv().await.expect("body sender");
    // The first connection is queued but busy: the second request needs its own.
    assert_eq!(ask(&up, &app, "/", true).await, "ok");
    assert_eq!(app.connections.load(Ordering::SeqCst), 2);
    body_tx
        .send(Bytes::from_static(b"late"))
        .await
        .expect("data");
    drop(body_tx);
    assert_eq!(text(streaming).await, "late");
    assert_eq!(up.sweep(Instant::now()), 2);
}

#[tokio::test]
async fn a_connection_the_app_closed_is_not_reused() {
    let app = app().await;
    let up = upstreams();
    for _ in 1..=3 {
        assert_eq!(ask(&up, &app, "/bye", true).await, "bye");
        tokio::time::sleep(Duration::from_millis(100)).await; // the app has closed it
    }
    assert_eq!(app.connections.load(Ordering::SeqCst), 3);
    assert_eq!(
        up.sweep(Instant::now()),
        0,
        "closed connections are dropped"
    );
}

#[tokio::test]
async fn idle_connections_go_after_the_idle_timeout() {
    let app = app().await;
    let up = upstreams();
    ask(&up, &app, "/", true).await;
    assert_eq!(up.sweep(Instant::now()), 1);
    assert_eq!(up.sweep(Instant::now() + Duration::from_secs(61)), 0);
    // The app is asked again on a new connection.
    assert_eq!(ask(&up, &app, "/", true).await, "ok");
    assert_eq!(app.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upgrade_connection_is_never_queued() {
    let app = app().await;
    let up = upstreams();
    ask(&up, &app, "/", false).await;
    assert_eq!(up.sweep(Instant::now()), 0);
}

#[tokio::test]
async fn an_app_that_is_not_listening_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let addr = format!("127.0.0.1:{port}");
    let req = Request::get("/")
        .header(http::header::HOST, &addr)
        .body(Empty::new())
        .expect("request");
    let e = upstreams()
        .send(&addr, req, true)
        .await
        .expect_err("refused");
    assert!(matches!(e, UpstreamError::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&addr), "{e}");
}
