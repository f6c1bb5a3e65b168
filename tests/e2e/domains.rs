//! Custom domains with proof, against a real DNS server (Debian's dnsmasq on loopback, the
//! keeper's resolver pointed at it): a domain is routed only while a TXT record names the
//! lease's tenant, never to another tenant's lease naming it too, and a record that goes away
//! takes the route within the re-check time. A proven domain no certificate file covers gets
//! one from a real ACME server (Debian's pebble) by TLS-ALPN-01 on the gateway's port.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use alloy::primitives::{Address, U256};
use berth_bindings::LeaseStatus;
use berth_e2e::{
    fund_tenant,
    gateway::get,
    keeper::{free_port, hello_manifest, upload, wait_for},
    open_lease_for,
};
use eyre::{Context, Result, ensure};

use crate::{
    gated::Gated,
    keeper::{HELLO_BODY, WAIT},
};

/// Another tenant than the world's.
const OTHER_TENANT: usize = 5;

/// dnsmasq answering TXT records on a loopback port; killed on drop.
struct Dns {
    child: Child,
}

impl Dns {
    /// Serves `records` (name, text) and nothing else.
    fn start(port: u16, records: &[(&str, String)]) -> Result<Self> {
        Self::start_with(port, records, &[])
    }

    /// Serves `records`, and `addresses` (a domain and all names under it, an IPv4 address).
    fn start_with(
        port: u16,
        records: &[(&str, String)],
        addresses: &[(&str, &str)],
    ) -> Result<Self> {
        // Debian puts it in /usr/sbin, which a user's PATH may lack.
        let exe = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("dnsmasq");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file=",
            "--user=root",
            &format!("--port={port}"),
        ]);
        for (name, text) in records {
            cmd.arg(format!("--txt-record={name},{text}"));
        }
        for (domain, ip) in addresses {
            cmd.arg(format!("--address=/{domain}/{ip}"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .wrap_err("starting dnsmasq (apt-get install dnsmasq-base)")?;
        Ok(Self { child })
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_domains(domains: &[&str]) -> Vec<u8> {
    let text = String::from_utf8(hello_manifest()).unwrap_or_default();
    let list = domains
        .iter()
        .map(|d| format!("\"{d}\""))
        .collect::<Vec<_>>()
        .join(", ");
    text.replace(
        "    resources:",
        &format!("    domains: [{list}]\n    resources:"),
    )
    .into_bytes()
}

fn proof(chain_id: u64, tenant: Address) -> String {
    berth_keepers::domains::proof_text(chain_id, tenant)
}

#[sqlx::test(migrations = false)]
async fn a_custom_domain_is_routed_only_while_dns_proves_its_tenant(
    pool: sqlx::PgPool,
) -> Result<()> {
    let port = free_port()?;
    let dns_addr = SocketAddr::from(([127, 0, 0, 1], port)).to_string();
    let g = Gated::start_with(
        &pool,
        "custom-domains",
        &[],
        &[
            ("BERTH_DNS_SERVER", dns_addr.as_str()),
            ("BERTH_DOMAIN_RECHECK_S", "1"),
        ],
    )
    .await?;
    let (gw, w) = (&g.gw, &g.w);
    let chain_id = w.chain.chain_id();
    let tenant = w.chain.signer(crate::keeper::TENANT)?.address();
    let shop = "shop.custom.test";
    let dns = Dns::start(
        port,
        &[(&format!("_berth.{shop}"), proof(chain_id, tenant))],
    )?;

    // The tenant's lease naming shop.custom.test (proven) and blog.custom.test (no record).
    let lease = g.lease(&with_domains(&[shop, "blog.custom.test"])).await?;
    let config = g.ca.client_config(&[b"h2", b"http/1.1"])?;
    let answer = wait_for("the custom domain to serve", WAIT, || async {
        let a = get(gw.addr, shop, "/", config.clone()).await?;
        Ok((a.status == 200).then_some(a))
    })
    .await
    .map_err(|e| eyre::eyre!("{e}\n{}", g.logs()))?;
    ensure!(answer.text() == HELLO_BODY, "{}", answer.text());
    let blog = get(gw.addr, "blog.custom.test", "/", config.clone()).await?;
    ensure!(
        blog.status == 404,
        "a domain without proof is routed: {}",
        blog.status
    );

    // Another tenant names the same domain: its lease runs, the domain stays the first's.
    fund_tenant(&w.chain, &w.c, OTHER_TENANT, U256::from(10u64.pow(12))).await?;
    let manifest = with_domains(&[shop]);
    let other = open_lease_for(&w.chain, &w.c, OTHER_TENANT, &manifest, "", 10_000_000).await?;
    let (status, _) = upload(
        &w.setup.gateway(),
        &w.chain,
        w.c.escrow,
        OTHER_TENANT,
        other,
        &manifest,
    )
    .await?;
    ensure!(status == 202, "the other tenant's upload: {status}");
    w.wait_status(other, LeaseStatus::Active, &g.keeper).await?;
    wait_for("the other lease's own hostname", WAIT, || async {
        Ok((get(gw.addr, &g.host("web", other), "/", config.clone())
            .await?
            .status
            == 200)
            .then_some(()))
    })
    .await?;
    let routes = gw.routes().await?;
    let holder = routes
        .routes
        .iter()
        .find(|r| r.host == shop)
        .map(|r| r.lease);
    ensure!(
        holder == Some(lease),
        "{shop} is routed to {holder:?}, not lease {lease}"
    );

    // The record goes away: within the re-check time, so does the route.
    drop(dns);
    let _dns = Dns::start(port, &[])?;
    wait_for(
        "the unproven domain to 404",
        Duration::from_secs(30),
        || async {
            Ok((get(gw.addr, shop, "/", config.clone()).await?.status == 404).then_some(()))
        },
    )
    .await
    .map_err(|e| eyre::eyre!("{e}\n{}", g.logs()))?;
    ensure!(
        get(gw.addr, &g.host("web", lease), "/", config.clone())
            .await?
            .status
            == 200,
        "the lease's own hostname still serves"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_proven_domain_gets_its_certificate_from_an_acme_server(
    pool: sqlx::PgPool,
) -> Result<()> {
    let pki = berth_e2e::gateway::scratch_dir("acme-pki")?;
    let ca = berth_e2e::gateway::TestCa::new(&pki)?;
    let dns_port = free_port()?;
    let dns_addr = SocketAddr::from(([127, 0, 0, 1], dns_port));
    // The gateway is started first (pebble must know its port), so pebble's port is chosen
    // now and its directory URL given to the gateway, which orders only once a domain is
    // routed.
    let pebble_port = free_port()?;
    let directory = format!("https://localhost:{pebble_port}/dir");
    let (root, store) = (pki.join("ca.pem"), pki.join("acme-store"));
    let (root, store, dns) = (
        root.display().to_string(),
        store.display().to_string(),
        dns_addr.to_string(),
    );
    let g = Gated::start_with(
        &pool,
        "acme",
        &[
            ("BERTH_ACME_DIRECTORY", directory.as_str()),
            ("BERTH_ACME_ROOT", root.as_str()),
            ("BERTH_ACME_STORE", store.as_str()),
            ("BERTH_ACME_CHECK_S", "1"),
        ],
        &[
            ("BERTH_DNS_SERVER", dns.as_str()),
            ("BERTH_DOMAIN_RECHECK_S", "1"),
        ],
    )
    .await?;
    let (gw, w) = (&g.gw, &g.w);
    let tenant = w.chain.signer(crate::keeper::TENANT)?.address();
    // Not under *.custom.test: no certificate file covers it.
    let shop = "shop.acme.test";
    let _dns = Dns::start_with(
        dns_port,
        &[(&format!("_berth.{shop}"), proof(w.chain.chain_id(), tenant))],
        &[("acme.test", "127.0.0.1")],
    )?;
    let pebble =
        berth_e2e::pebble::Pebble::start_on(&pki, &ca, pebble_port, dns_addr, gw.addr.port())
            .await?;
    let trusts_pebble = pebble.client_config(&ca).await?;

    let lease = g.lease(&with_domains(&[shop])).await?;
    let answer = wait_for(
        "the domain to serve under an ACME certificate",
        WAIT,
        || async {
            match get(gw.addr, shop, "/", trusts_pebble.clone()).await {
                Ok(a) => Ok((a.status == 200).then_some(a)),
                // No certificate yet (or the files' for another name): the handshake fails.
                Err(_) => Ok(None),
            }
        },
    )
    .await
    .map_err(|e| eyre::eyre!("{e}\n{}\npebble:\n{}", g.logs(), pebble.log_text()))?;
    ensure!(answer.text() == HELLO_BODY, "{}", answer.text());
    // Stored for a restart, the key private to the gateway.
    use std::os::unix::fs::PermissionsExt;
    let key = pki.join("acme-store").join(format!("{shop}.key"));
    let mode = std::fs::metadata(&key)
        .wrap_err("the stored key")?
        .permissions()
        .mode();
    ensure!(mode & 0o777 == 0o600, "key mode {mode:o}");
    // The apps' own hostnames keep the provider's certificate, not pebble's.
    let config = g.ca.client_config(&[b"h2", b"http/1.1"])?;
    let own = get(gw.addr, &g.host("web", lease), "/", config).await?;
    ensure!(own.status == 200, "own hostname: {}", own.status);
    let log = gw.log_text();
    let obtained = log.lines().find(|l| l.contains("certificate obtained"));
    ensure!(obtained.is_some(), "{log}");
    println!("{}", obtained.unwrap_or_default());
    let _ = std::fs::remove_dir_all(&pki);
    Ok(())
}
