//! Custom domains. A tenant may name its own hostnames for a web service (`domains` in the
//! manifest); the keeper routes one to the lease only once DNS proves the tenant holds it: a
//! TXT record at `_berth.<domain>` reading `berth=<chain id>:<tenant address>` (lower-case
//! hex). Proofs are looked up with the provider's resolver (`dns_server`, or the system's),
//! each answer is kept for `domain_recheck` and then looked up again, so a record that goes
//! away takes the route with it within that time. A domain proven for one tenant is never
//! routed to another tenant's lease, whatever its manifest says; among one tenant's leases
//! naming it, the oldest lease has it.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::{Duration, Instant},
};

use alloy::primitives::{Address, U256};
use hickory_resolver::{
    TokioResolver,
    config::{NameServerConfigGroup, ResolverConfig, ResolverOpts},
    name_server::TokioConnectionProvider,
};

/// The label the proof lives under.
pub const PROOF_LABEL: &str = "_berth";
/// Most lookups one pass starts (the rest wait for the next pass).
const LOOKUPS_PER_PASS: usize = 64;
/// Deadline of one lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The TXT value that proves `tenant` on `chain_id` holds a domain.
pub fn proof_text(chain_id: u64, tenant: Address) -> String {
    format!("berth={chain_id}:{tenant:#x}")
}

/// A lease's service naming a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The domain, lower case.
    pub domain: String,
    /// The lease.
    pub lease: U256,
    /// The service the domain should reach.
    pub service: String,
    /// The lease's tenant.
    pub tenant: Address,
}

/// Which lease and service each proven domain goes to: for each domain, the claims whose
/// tenant DNS proves, oldest lease first.
pub fn holders(
    claims: &[Claim],
    proven: impl Fn(&str, Address) -> bool,
) -> BTreeMap<String, (U256, String)> {
    let mut out: BTreeMap<String, (U256, String)> = BTreeMap::new();
    for c in claims.iter().filter(|c| proven(&c.domain, c.tenant)) {
        let better = out.get(&c.domain).is_none_or(|(lease, _)| c.lease < *lease);
        if better {
            out.insert(c.domain.clone(), (c.lease, c.service.clone()));
        }
    }
    out
}

/// What DNS said of one (domain, tenant) and when.
#[derive(Debug, Clone, Copy)]
struct Answer {
    proven: bool,
    at: Instant,
}

/// The proofs looked up so far.
#[derive(Debug)]
pub struct Domains {
    resolver: TokioResolver,
    chain_id: u64,
    recheck: Duration,
    answers: HashMap<(String, Address), Answer>,
}

impl Domains {
    /// Proofs for `chain_id`, looked up at `server` (None: the system's resolvers) and
    /// looked up again after `recheck`.
    pub fn new(
        chain_id: u64,
        server: Option<SocketAddr>,
        recheck: Duration,
    ) -> Result<Self, std::io::Error> {
        let mut opts = ResolverOpts::default();
        opts.timeout = LOOKUP_TIMEOUT;
        opts.attempts = 1;
        // A proof must be seen as it is now, not as a cache remembers it.
        opts.cache_size = 0;
        let resolver = match server {
            Some(addr) => {
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], group),
                    TokioConnectionProvider::default(),
                )
                .with_options(opts)
                .build()
            }
            None => TokioResolver::builder_tokio()
                .map_err(std::io::Error::other)?
                .with_options(opts)
                .build(),
        };
        Ok(Self {
            resolver,
            chain_id,
            recheck,
            answers: HashMap::new(),
        })
    }

    /// Looks up the proofs of `claims` not seen within `recheck` (at most a bounded number
    /// per pass, all at once), forgets the answers no claim needs, and returns the holders.
    pub async fn holders(&mut self, claims: &[Claim]) -> BTreeMap<String, (U256, String)> {
        let wanted: std::collections::HashSet<(String, Address)> = claims
            .iter()
            .map(|c| (c.domain.clone(), c.tenant))
            .collect();
        self.answers.retain(|k, _| wanted.contains(k));
        let due: Vec<(String, Address)> = wanted
            .into_iter()
            .filter(|k| {
                self.answers
                    .get(k)
                    .is_none_or(|a| a.at.elapsed() >= self.recheck)
            })
            .take(LOOKUPS_PER_PASS)
            .collect();
        let lookups = due.into_iter().map(|(domain, tenant)| {
            let resolver = self.resolver.clone();
            let want = proof_text(self.chain_id, tenant);
            async move {
                let name = format!("{PROOF_LABEL}.{domain}.");
                let proven =
                    match tokio::time::timeout(LOOKUP_TIMEOUT * 2, resolver.txt_lookup(name)).await
                    {
                        Ok(Ok(found)) => found.iter().any(|txt| {
                            let text: Vec<u8> = txt
                                .txt_data()
                                .iter()
                                .flat_map(|p| p.iter().copied())
                                .collect();
                            String::from_utf8_lossy(&text)
                                .trim()
                                .eq_ignore_ascii_case(&want)
                        }),
                        Ok(Err(e)) => {
                            tracing::debug!(%domain, error = %e, "no proof record");
                            false
                        }
                        Err(_) => false,
                    };
                (domain, tenant, proven)
            }
        });
        for (domain, tenant, proven) in futures::future::join_all(lookups).await {
            let before = self
                .answers
                .get(&(domain.clone(), tenant))
                .map(|a| a.proven);
            if before != Some(proven) {
                tracing::info!(%domain, %tenant, proven, "custom domain proof");
            }
            self.answers.insert(
                (domain, tenant),
                Answer {
                    proven,
                    at: Instant::now(),
                },
            );
        }
        holders(claims, |domain, tenant| {
            self.answers
                .get(&(domain.to_owned(), tenant))
                .is_some_and(|a| a.proven)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(domain: &str, lease: u64, tenant: u8) -> Claim {
        Claim {
            domain: domain.into(),
            lease: U256::from(lease),
            service: "web".into(),
            tenant: Address::repeat_byte(tenant),
        }
    }

    #[test]
    fn a_domain_goes_to_the_oldest_lease_of_the_tenant_dns_names() {
        let claims = [
            claim("shop.test", 7, 1),
            claim("shop.test", 3, 2), // older, but another tenant: DNS does not name it
            claim("shop.test", 5, 1),
            claim("blog.test", 9, 2),
            claim("none.test", 1, 1), // no proof at all
        ];
        let proven = |d: &str, t: Address| {
            (d == "shop.test" && t == Address::repeat_byte(1))
                || (d == "blog.test" && t == Address::repeat_byte(2))
        };
        let h = holders(&claims, proven);
        assert_eq!(h.len(), 2);
        assert_eq!(h["shop.test"].0, U256::from(5));
        assert_eq!(h["blog.test"].0, U256::from(9));
        assert_eq!(
            proof_text(31337, Address::repeat_byte(0xab)),
            format!("berth=31337:0x{}", "ab".repeat(20))
        );
    }
}
