//! One keeper against hostile tenants at once: an alias bomb, NUL bytes, a manifest URL that
//! never answers, an image on a registry that never answers, slowloris connections, an
//! oversized body and two leases naming the same volume. Each is refused or contained, and
//! an ordinary tenant's lease is deployed and confirmed meanwhile as if nothing happened.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

use alloy::transports::http::reqwest;
use berth_bindings::{LeaseStatus, RejectReason};
use berth_e2e::{keeper::*, open_lease_for};
use eyre::{Result, ensure};
use sqlx::PgPool;

use crate::keeper::{HELLO_BODY, TENANT, World, serves, world};

/// An alias bomb well under the 64 KiB limit: 9^6 copies of a 2 KB string (1 GB expanded).
fn alias_bomb() -> Vec<u8> {
    let mut text = String::from("x0: &a0 \"");
    text.push_str(&"z".repeat(2000));
    text.push_str("\"\n");
    for i in 1..=6 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        text.push_str(&format!("x{i}: &a{i} [{refs}]\n"));
    }
    text.push_str("version: 1\nservices:\n  web:\n    image: localhost/berth-hello:latest\n    args: *a6\n    resources: {cpu: 100m, memory: 16Mi}\n");
    text.into_bytes()
}

/// A service of the hello image with `extra` lines.
fn hello_with(extra: &str) -> Vec<u8> {
    format!(
        "version: 1\nservices:\n  web:\n    image: localhost/berth-hello:latest\n    ports: [{{port: 8080, expose: http}}]\n    resources: {{cpu: 100m, memory: 32Mi}}\n{extra}"
    )
    .into_bytes()
}

/// A listener that accepts and never answers (kept open by the returned value).
fn silent_listener() -> Result<(TcpListener, u16)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    Ok((l, port))
}

async fn rejected_with(
    w: &World,
    lease: alloy::primitives::U256,
    keeper: &KeeperProcess,
    want: RejectReason,
) -> Result<()> {
    w.wait_status(lease, LeaseStatus::Rejected, keeper).await?;
    let got = w.reject_reason(lease).await?;
    ensure!(
        got == Some(want),
        "lease {lease}: rejected for {got:?}, wanted {want:?}"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn hostile_tenants_are_refused_and_stop_nobody(pool: PgPool) -> Result<()> {
    let w = world(
        &pool.connect_options(),
        &[
            ("BERTH_GATEWAY_MAX_CONNECTIONS", "64"),
            ("BERTH_GATEWAY_HEADER_TIMEOUT_MS", "1500"),
            ("BERTH_DOWNLOAD_TIMEOUT_S", "120"),
            ("BERTH_PULL_TIMEOUT_S", "120"),
            ("BERTH_READY_TIMEOUT_S", "60"),
        ],
    )
    .await?;
    let mut keeper = KeeperProcess::start(&w.setup).await?;
    let gateway = w.setup.gateway();

    // 1. An alias bomb: refused at upload (422, with the rule) and rejected, at once.
    let bomb = alias_bomb();
    ensure!(bomb.len() < 64 * 1024, "the bomb is {} bytes", bomb.len());
    let started = Instant::now();
    let bomb_lease = open_lease_for(&w.chain, &w.c, TENANT, &bomb, "", 10_000_000).await?;
    let (status, body) = upload(&gateway, &w.chain, w.c.escrow, TENANT, bomb_lease, &bomb).await?;
    ensure!(
        status == 422
            && body["error"]
                .as_str()
                .is_some_and(|e| e.contains("aliases are not allowed")),
        "bomb upload answered {status} {body}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "the bomb took {:?}",
        started.elapsed()
    );

    // 2. NUL bytes: in an env name and in args (refused), and in a manifest URL (stored
    //    safely, never breaking a write).
    let nul_env_manifest = hello_with("    env: {\"A\\0B\": x}\n");
    let nul_env = open_lease_for(&w.chain, &w.c, TENANT, &nul_env_manifest, "", 10_000_000).await?;
    let (status, body) = upload(
        &gateway,
        &w.chain,
        w.c.escrow,
        TENANT,
        nul_env,
        &nul_env_manifest,
    )
    .await?;
    ensure!(status == 422, "NUL env upload answered {status} {body}");
    let nul_args_manifest = hello_with("    args: [\"a\\0b\"]\n");
    let nul_args =
        open_lease_for(&w.chain, &w.c, TENANT, &nul_args_manifest, "", 10_000_000).await?;
    let (status, _) = upload(
        &gateway,
        &w.chain,
        w.c.escrow,
        TENANT,
        nul_args,
        &nul_args_manifest,
    )
    .await?;
    ensure!(status == 422, "NUL args upload answered {status}");

    // 3. A manifest URL that never answers (and carries a NUL), and an image on a registry
    //    that never answers: both wait in their own tasks.
    let (_silent_http, http_port) = silent_listener()?;
    let hanging_uri = format!("http://127.0.0.1:{http_port}/m\0anifest");
    let hanging = open_lease_for(
        &w.chain,
        &w.c,
        TENANT,
        b"never delivered",
        &hanging_uri,
        10_000_000,
    )
    .await?;
    let (_silent_registry, registry_port) = silent_listener()?;
    let slow_image = format!(
        "version: 1\nservices:\n  web:\n    image: 127.0.0.1:{registry_port}/never/answers:latest\n    resources: {{cpu: 100m, memory: 16Mi}}\n"
    )
    .into_bytes();
    let (slow_pull, status) = w.lease_with(&slow_image, &slow_image).await?;
    ensure!(status == 202, "slow image upload answered {status}");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // An ordinary tenant uploads, then the gateway is flooded; the lease is deployed and
    // confirmed within the usual time all the same.
    let normal_started = Instant::now();
    let hello = hello_manifest();
    let (normal, status) = w.lease_with(&hello, &hello).await?;
    ensure!(
        status == 202 || status == 0,
        "normal upload answered {status}"
    );
    // 4. Slowloris, while the ordinary lease deploys: more idle connections than the gateway takes, one sending headers a
    //    byte at a time.
    let addr = format!("127.0.0.1:{}", w.setup.gateway_port);
    let mut idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    let mut trickle = TcpStream::connect(&addr)?;
    trickle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")?;

    w.wait_status(normal, LeaseStatus::Active, &keeper).await?;
    let normal_took = normal_started.elapsed();
    serves(&w.endpoint(normal).await?, HELLO_BODY).await?;
    ensure!(
        normal_took < Duration::from_secs(30),
        "an ordinary deploy took {normal_took:?} next to hostile leases"
    );

    // The idle and trickling connections were closed by the server (header deadline, or
    // at once beyond the connection cap): a read ends (EOF or reset), it does not time out.
    let still_open = |s: &mut TcpStream| -> Result<bool> {
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = [0u8; 256];
        Ok(match s.read(&mut buf) {
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        })
    };
    ensure!(
        !still_open(&mut trickle)?,
        "a trickling client kept its connection"
    );
    let mut open = 0;
    for s in idle.iter_mut().take(20) {
        if still_open(s)? {
            open += 1;
        }
    }
    ensure!(open == 0, "idle connections still open: {open}");
    println!("ordinary deploy next to hostile leases and 200 idle connections: {normal_took:?}");
    drop(idle);
    ensure!(
        reqwest::get(format!("{gateway}/healthz"))
            .await
            .is_ok_and(|r| r.status().is_success()),
        "the gateway answers again"
    );

    // 5. An oversized body gets the documented JSON answer.
    let big = vec![b'#'; 2 << 20];
    let resp = reqwest::Client::new()
        .put(format!("{gateway}/v1/leases/{normal}/manifest"))
        .header("berth-signature", "0x00")
        .body(big)
        .send()
        .await?;
    let code = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    ensure!(
        code == 413 && body["error"].is_string(),
        "oversized body: {code} {body}"
    );

    // Every hostile lease ended with its reason; the keeper never restarted.
    rejected_with(&w, bomb_lease, &keeper, RejectReason::ManifestInvalid).await?;
    rejected_with(&w, nul_env, &keeper, RejectReason::ManifestInvalid).await?;
    rejected_with(&w, nul_args, &keeper, RejectReason::ManifestInvalid).await?;
    ensure!(
        w.status(hanging).await? == LeaseStatus::Pending,
        "the hanging URL waits"
    );
    ensure!(
        matches!(
            w.status(slow_pull).await?,
            LeaseStatus::Pending | LeaseStatus::Rejected
        ),
        "the slow pull waits or is refused"
    );
    ensure!(keeper.alive(), "the keeper died:\n{}", keeper.log_text());
    let rss = keeper.peak_rss_kib().unwrap_or(0);
    println!(
        "keeper peak RSS while hostile tenants ran: {} MiB",
        rss / 1024
    );
    ensure!(rss < 300 * 1024, "keeper peak RSS {rss} KiB");

    // Every transaction the keeper sent is settled (mined or reverted), none stays `sent`.
    let db = sqlx::PgPool::connect(&w.setup.database_url).await?;
    wait_for(
        "sent transactions to be settled",
        Duration::from_secs(30),
        || {
            let db = db.clone();
            async move {
                let open: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM berth_keeper.transactions WHERE state = 'sent'",
                )
                .fetch_one(&db)
                .await?;
                Ok((open == 0).then_some(()))
            }
        },
    )
    .await?;
    let stored_uri: Option<String> =
        sqlx::query_scalar("SELECT source FROM berth_keeper.manifests WHERE source LIKE 'http%'")
            .fetch_optional(&db)
            .await?;
    ensure!(
        stored_uri.is_none_or(|u| !u.contains('\0')),
        "no NUL stored"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn leases_naming_the_same_volume_never_share_it(pool: PgPool) -> Result<()> {
    let w = world(&pool.connect_options(), &[]).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let writer = hello_with(
        "    command: [/bin/busybox, sh, -c, \"echo s3cret > /data/secret.txt && exec /bin/busybox httpd -f -p 8080 -h /data\"]\n    volumes: [{name: data, mount: /data}]\n",
    );
    let reader = hello_with(
        "    command: [/bin/busybox, sh, -c, \"echo mine > /data/mine.txt && exec /bin/busybox httpd -f -p 8080 -h /data\"]\n    volumes: [{name: data, mount: /data}]\n",
    );
    let (a, _) = w.lease_with(&writer, &writer).await?;
    w.wait_status(a, LeaseStatus::Active, &keeper).await?;
    let a_url = w.endpoint(a).await?;
    serves(&format!("{a_url}/secret.txt"), "s3cret\n").await?;
    // The container got the CPU weight of its reservation (100m), not podman's default 1,024.
    let shares = cpu_shares_of(&w, a)?;
    ensure!(
        shares == vec![102],
        "cpu.shares of lease {a}'s containers: {shares:?}"
    );
    let (b, _) = w.lease_with(&reader, &reader).await?;
    w.wait_status(b, LeaseStatus::Active, &keeper).await?;
    let b_url = w.endpoint(b).await?;
    serves(&format!("{b_url}/mine.txt"), "mine\n").await?;
    ensure!(
        fetch(&format!("{b_url}/secret.txt"))
            .await
            .is_none_or(|body| !body.contains("s3cret")),
        "lease {b} read lease {a}'s file"
    );
    // The lease's end removes its volume too, once its final report is settled.
    crate::keeper::close_and_wait_gone(&w, a).await?;
    let key = berth_keepers::render::LeaseKey {
        chain_id: w.chain.chain_id(),
        escrow: w.c.escrow,
        lease_id: a,
    };
    let volumes = || -> Result<String> {
        let out = std::process::Command::new("podman")
            .env("CONTAINERS_CONF", containers_conf())
            .args(["volume", "ls", "--format", "{{.Name}}"])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let gone = wait_for(
        "lease a's volume to go",
        Duration::from_secs(60),
        || async {
            Ok((!volumes()?
                .lines()
                .any(|n| n.starts_with(&key.volume_prefix())))
            .then_some(()))
        },
    )
    .await;
    let names = volumes()?;
    ensure!(gone.is_ok(), "lease {a}'s volume outlived it: {names}");
    Ok(())
}

/// `cpu.shares` (cgroup v1) or the shares that `cpu.weight` (v2) stands for, of every
/// container podman runs for `lease`.
fn cpu_shares_of(w: &World, lease: alloy::primitives::U256) -> Result<Vec<u64>> {
    let podman = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new("podman")
            .env("CONTAINERS_CONF", containers_conf())
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let ids = podman(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=berth.dev/lease-id={lease}"),
        "--filter",
        &format!("label=berth.dev/chain-id={}", w.chain.chain_id()),
        "--filter",
        &format!("label=berth.dev/escrow={:#x}", w.c.escrow),
    ])?;
    let mut shares = Vec::new();
    for id in ids.split_whitespace() {
        let info = podman(&[
            "inspect",
            id,
            "--format",
            "{{.IsInfra}} {{.State.CgroupPath}}",
        ])?;
        let Some(path) = info.trim().strip_prefix("false ") else {
            continue; // the pod's infra container runs nothing of the tenant's
        };
        let path = path.trim_start_matches('/');
        let v1 = std::path::Path::new("/sys/fs/cgroup/cpu")
            .join(path)
            .join("cpu.shares");
        let value = match std::fs::read_to_string(&v1) {
            Ok(v) => v.trim().parse()?,
            Err(_) => {
                let weight: u64 = std::fs::read_to_string(
                    std::path::Path::new("/sys/fs/cgroup")
                        .join(path)
                        .join("cpu.weight"),
                )?
                .trim()
                .parse()?;
                // podman's shares → weight mapping, inverted.
                2 + (weight.saturating_sub(1) * 262_142).div_ceil(9999)
            }
        };
        shares.push(value);
    }
    Ok(shares)
}

/// With confirmations, the keeper reads a lease a few blocks behind the head: after it
/// rejects a lease whose workload never answered, that depth still shows the lease pending
/// until more blocks come. It must not deploy the lease again meanwhile.
#[sqlx::test(migrations = false)]
async fn a_lease_rejected_after_its_deploy_is_not_deployed_again(pool: PgPool) -> Result<()> {
    use alloy::providers::Provider;
    let w = world(
        &pool.connect_options(),
        &[("BERTH_CONFIRMATIONS", "3"), ("BERTH_READY_TIMEOUT_S", "4")],
    )
    .await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let silent = hello_with("    command: [/bin/busybox, sleep, \"3600\"]\n");
    let (lease, status) = w.lease_with(&silent, &silent).await?;
    ensure!(status == 202, "upload answered {status}");
    let p = w.chain.wallet(0)?;
    for _ in 0..3 {
        let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await?;
    }
    wait_for(
        "the lease to be deployed",
        Duration::from_secs(60),
        || async { Ok((w.pods(lease).await? > 0).then_some(())) },
    )
    .await?;
    rejected_with(&w, lease, &keeper, RejectReason::ManifestInvalid).await?;
    // No new block: the confirmed depth still shows the lease pending.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(8) {
        let pods = w.pods(lease).await?;
        // reject() removes the workload before it sends the transaction: none from here on.
        ensure!(
            pods == 0,
            "lease {lease} was deployed again after its rejection ({pods} pods):\n{}",
            keeper.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}
