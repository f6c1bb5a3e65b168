//! The providers on offer and the choice among them: which fit a reservation, which is
//! cheapest, and, for each one that does not fit, the constraint that excluded it.

use alloy::primitives::{Address, U256};
use berth_bindings::ProviderRegistry;
use eyre::Result;
use serde::Serialize;

use crate::{
    amounts,
    context::Ctx,
    failure::{self, Kind, fail},
};
use berth_protocol::pricing;

/// One provider as the market shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Offer {
    /// Provider id.
    pub id: u32,
    /// `active`, `paused`, `exiting`, `exited`.
    pub status: &'static str,
    /// Gateway URL.
    pub endpoint: String,
    /// `key=value` pairs.
    pub attributes: Vec<(String, String)>,
    /// Payment token.
    pub token: Address,
    /// Free capacity: CPU millicores, memory MiB, storage GiB.
    pub free: [u32; 3],
    /// Total capacity.
    pub capacity: [u32; 3],
    /// Current prices, scaled per unit-second: base, CPU, memory, storage.
    #[serde(serialize_with = "prices_as_strings")]
    pub prices: [u128; 4],
    /// Stake.
    pub stake: String,
    /// Version of its registered encryption key (0: none, it cannot take secrets).
    pub encryption_key_version: u32,
}

fn prices_as_strings<S: serde::Serializer>(p: &[u128; 4], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(p.iter().map(u128::to_string))
}

/// What a tenant asks for.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// CPU millicores.
    pub cpu_millis: u32,
    /// Memory MiB.
    pub memory_mib: u32,
    /// Storage GiB.
    pub storage_gib: u32,
    /// Attributes the provider must have, `key=value`.
    pub attributes: Vec<(String, String)>,
    /// Highest acceptable cost per hour at the maximum rate, base units.
    pub max_hourly: Option<U256>,
    /// The manifest has secrets: the provider needs a registered encryption key.
    pub secrets: bool,
}

/// The outcome of matching one provider.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Provider id.
    pub id: u32,
    /// Maximum rate for the reservation, scaled per second.
    pub max_rate: String,
    /// Why it does not fit; `None` when it does.
    pub excluded: Option<String>,
}

/// Parses `key=value,key=value`.
pub fn parse_attributes(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn status_name(status: u8) -> &'static str {
    match status {
        1 => "active",
        2 => "paused",
        3 => "exiting",
        4 => "exited",
        _ => "unknown",
    }
}

impl Offer {
    fn from_chain(id: u32, p: &ProviderRegistry::Provider, prices: [u128; 4]) -> Self {
        Self {
            id,
            status: status_name(p.status),
            endpoint: p.endpoint.clone(),
            attributes: parse_attributes(&p.attributes),
            token: p.token,
            free: [
                p.cpuMillis.saturating_sub(p.allocatedCpuMillis),
                p.memoryMiB.saturating_sub(p.allocatedMemoryMiB),
                p.storageGiB.saturating_sub(p.allocatedStorageGiB),
            ],
            capacity: [p.cpuMillis, p.memoryMiB, p.storageGiB],
            prices,
            stake: p.stake.to_string(),
            encryption_key_version: 0,
        }
    }

    /// The maximum rate of a reservation with this provider.
    pub fn max_rate(&self, w: &Wanted) -> U256 {
        pricing::rate(
            self.prices.into(),
            w.cpu_millis,
            w.memory_mib,
            w.storage_gib,
        )
    }

    /// Why this provider cannot take `w`, if it cannot.
    pub fn exclusion(&self, w: &Wanted, decimals: u8) -> Option<String> {
        if self.status != "active" {
            return Some(format!("{} (takes no new leases)", self.status));
        }
        for (name, unit, free, need) in [
            ("CPU", "millicores", self.free[0], w.cpu_millis),
            ("memory", "MiB", self.free[1], w.memory_mib),
            ("storage", "GiB", self.free[2], w.storage_gib),
        ] {
            if free < need {
                return Some(format!("free {name} {free} {unit} < {need} needed"));
            }
        }
        for (k, v) in &w.attributes {
            match self.attributes.iter().find(|(key, _)| key == k) {
                None => return Some(format!("no attribute {k} (wanted {k}={v})")),
                Some((_, have)) if have != v => {
                    return Some(format!("attribute {k}={have}, wanted {k}={v}"));
                }
                Some(_) => {}
            }
        }
        if w.secrets && self.encryption_key_version == 0 {
            return Some("no encryption key registered (cannot take secrets)".into());
        }
        if let Some(max) = w.max_hourly {
            let hourly = pricing::cost_of(3600, self.max_rate(w));
            if hourly > max {
                return Some(format!(
                    "costs up to {} per hour > --max-hourly {}",
                    amounts::format(hourly, decimals),
                    amounts::format(max, decimals)
                ));
            }
        }
        None
    }
}

/// Every registered provider, with its current prices.
pub async fn offers(ctx: &Ctx) -> Result<Vec<Offer>> {
    let registry = ctx.registry();
    let count = registry
        .providerCount()
        .call()
        .await
        .map_err(|e| failure::contract("providerCount", &e))?;
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    const PAGE: u32 = 100;
    let mut offset = 0u32;
    while offset < count {
        let page = registry
            .listProviders(U256::from(offset), U256::from(PAGE))
            .call()
            .await
            .map_err(|e| failure::contract("listProviders", &e))?;
        if page.is_empty() {
            break;
        }
        for (i, p) in page.iter().enumerate() {
            let id = offset + u32::try_from(i).unwrap_or(0) + 1;
            let pr = registry
                .pricesOf(U256::from(id), p.priceVersion)
                .call()
                .await
                .map_err(|e| failure::contract("pricesOf", &e))?;
            let mut offer = Offer::from_chain(
                id,
                p,
                [pr.baseRate, pr.cpuPrice, pr.memoryPrice, pr.storagePrice],
            );
            offer.encryption_key_version = key_version(ctx, id).await?;
            out.push(offer);
        }
        offset += PAGE;
    }
    Ok(out)
}

/// One provider.
pub async fn offer(ctx: &Ctx, id: u32) -> Result<Offer> {
    let registry = ctx.registry();
    let p =
        registry.getProvider(U256::from(id)).call().await.map_err(
            |e| match failure::revert_reason(&e) {
                Some(r) if r.starts_with("UnknownProvider") => {
                    fail(Kind::NotFound, format!("provider {id} does not exist"))
                }
                _ => failure::contract("getProvider", &e),
            },
        )?;
    if p.status == 0 {
        return Err(fail(
            Kind::NotFound,
            format!("provider {id} does not exist"),
        ));
    }
    let pr = registry
        .pricesOf(U256::from(id), p.priceVersion)
        .call()
        .await
        .map_err(|e| failure::contract("pricesOf", &e))?;
    let mut offer = Offer::from_chain(
        id,
        &p,
        [pr.baseRate, pr.cpuPrice, pr.memoryPrice, pr.storagePrice],
    );
    offer.encryption_key_version = key_version(ctx, id).await?;
    Ok(offer)
}

async fn key_version(ctx: &Ctx, id: u32) -> Result<u32> {
    Ok(ctx
        .registry()
        .encryptionKeyOf(U256::from(id))
        .call()
        .await
        .map_err(|e| failure::contract("encryptionKeyOf", &e))?
        .version)
}

/// Matches every offer against `w`: the verdicts, and the cheapest fitting offer (lowest
/// maximum rate, then lowest id).
pub fn choose<'a>(
    offers: &'a [Offer],
    w: &Wanted,
    decimals: u8,
) -> (Vec<Verdict>, Option<&'a Offer>) {
    let verdicts: Vec<Verdict> = offers
        .iter()
        .map(|o| Verdict {
            id: o.id,
            max_rate: o.max_rate(w).to_string(),
            excluded: o.exclusion(w, decimals),
        })
        .collect();
    let best = offers
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.excluded.is_none())
        .min_by_key(|(o, _)| (o.max_rate(w), o.id))
        .map(|(o, _)| o);
    (verdicts, best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(
        id: u32,
        status: &'static str,
        free: [u32; 3],
        prices: [u128; 4],
        attrs: &str,
    ) -> Offer {
        Offer {
            id,
            status,
            endpoint: String::new(),
            attributes: parse_attributes(attrs),
            token: Address::ZERO,
            free,
            capacity: free,
            prices,
            stake: "0".into(),
            encryption_key_version: 1,
        }
    }

    #[test]
    fn the_cheapest_fitting_provider_wins_and_every_other_says_why_not() {
        let offers = [
            offer(1, "paused", [9000, 9000, 9], [1, 1, 1, 1], "region=eu"),
            offer(2, "active", [100, 9000, 9], [1, 1, 1, 1], "region=eu"),
            offer(3, "active", [9000, 9000, 9], [1, 1, 1, 1], "region=us"),
            offer(4, "active", [9000, 9000, 9], [5, 5, 5, 5], "region=eu"),
            offer(
                5,
                "active",
                [9000, 9000, 9],
                [2, 2, 2, 2],
                "region=eu,tier=gold",
            ),
            offer(
                6,
                "active",
                [9000, 9000, 9],
                [1_000_000_000_000, 0, 0, 0],
                "region=eu",
            ),
        ];
        let w = Wanted {
            cpu_millis: 500,
            memory_mib: 512,
            storage_gib: 1,
            attributes: vec![("region".into(), "eu".into())],
            max_hourly: Some(U256::from(100)),
            secrets: false,
        };
        let (verdicts, best) = choose(&offers, &w, 6);
        assert_eq!(best.map(|o| o.id), Some(5));
        let why: Vec<_> = verdicts.iter().map(|v| v.excluded.clone()).collect();
        assert_eq!(why[0].as_deref(), Some("paused (takes no new leases)"));
        assert_eq!(
            why[1].as_deref(),
            Some("free CPU 100 millicores < 500 needed")
        );
        assert_eq!(
            why[2].as_deref(),
            Some("attribute region=us, wanted region=eu")
        );
        assert_eq!(why[3], None);
        assert_eq!(why[4], None);
        assert_eq!(
            why[5].as_deref(),
            Some("costs up to 3.6 per hour > --max-hourly 0.0001")
        );
        // With secrets, a provider without an encryption key is out.
        let mut keyless = offers[3].clone();
        keyless.encryption_key_version = 0;
        let w = Wanted { secrets: true, ..w };
        assert_eq!(
            keyless.exclusion(&w, 6).as_deref(),
            Some("no encryption key registered (cannot take secrets)")
        );
        assert_eq!(offers[3].exclusion(&w, 6), None);
    }
}
