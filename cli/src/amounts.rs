//! Token amounts and prices as people write them ("12.5" tokens, "0.02" per core-hour) and as
//! the contracts store them (base units; prices in billionths of a base unit per unit-second).

use alloy::primitives::U256;
use eyre::Result;

use crate::failure::{Kind, fail};

/// Parses a decimal amount of a token with `decimals` into base units; `field` names the
/// option in the error.
pub fn parse(field: &str, text: &str, decimals: u8) -> Result<U256> {
    let bad = |why: &str| fail(Kind::Input, format!("{field} `{text}`: {why}"));
    let t = text.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad("not a number"));
    }
    if !whole
        .chars()
        .chain(frac.chars())
        .all(|c| c.is_ascii_digit())
    {
        return Err(bad("not a non-negative decimal number"));
    }
    if frac.len() > usize::from(decimals) {
        return Err(bad(&format!(
            "more than {decimals} decimal places (the token's precision)"
        )));
    }
    let digits = format!("{whole}{frac:0<width$}", width = usize::from(decimals));
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(U256::ZERO);
    }
    U256::from_str_radix(digits, 10).map_err(|_| bad("too large"))
}

/// Formats base units as a decimal amount of a token with `decimals`, without trailing zeros.
pub fn format(amount: U256, decimals: u8) -> String {
    let s = amount.to_string();
    let d = usize::from(decimals);
    if d == 0 {
        return s;
    }
    let padded = format!("{s:0>width$}", width = d + 1);
    let (whole, frac) = padded.split_at(padded.len() - d);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{frac}")
    }
}

/// An hourly price in token units (e.g. "0.02" per core-hour) as the scaled per-unit-second
/// price the registry stores (rounded to the nearest).
pub fn price_from_hourly(
    field: &str,
    text: &str,
    decimals: u8,
    per_hour_units: u64,
) -> Result<u128> {
    // parse with 9 more decimals: the amount × PRICE_SCALE in base units per hour
    let scaled_hourly = parse(field, text, decimals.saturating_add(9))?;
    let units = U256::from(per_hour_units);
    let price = (scaled_hourly + units / U256::from(2)) / units;
    u128::try_from(price).map_err(|_| fail(Kind::Input, format!("{field} `{text}`: too large")))
}

#[cfg(test)]
mod tests {
    use berth_protocol::pricing::HOURLY_UNITS;

    use super::*;

    #[test]
    fn amounts_round_trip_and_bad_ones_name_the_field() {
        assert_eq!(
            parse("--deposit", "12.5", 6).ok(),
            Some(U256::from(12_500_000))
        );
        assert_eq!(parse("--deposit", "0.000001", 6).ok(), Some(U256::from(1)));
        assert_eq!(parse("--deposit", "7", 0).ok(), Some(U256::from(7)));
        assert_eq!(format(U256::from(12_500_000), 6), "12.5");
        assert_eq!(format(U256::from(1), 6), "0.000001");
        assert_eq!(format(U256::from(3_000_000), 6), "3");
        for bad in ["", "-1", "1e5", "1.0000001", "abc", "."] {
            let e = parse("--deposit", bad, 6).expect_err(bad);
            assert!(e.to_string().starts_with("--deposit"), "{e}");
        }
    }

    #[test]
    fn hourly_prices_match_what_the_devnet_registers() {
        // 0.02 tUSD (6 decimals) per core-hour = 5,555,555 billionths per millicore-second
        assert_eq!(
            price_from_hourly("--cpu-price", "0.02", 6, HOURLY_UNITS[1]).ok(),
            Some(5_555_556)
        );
        let base = price_from_hourly("--base-price", "0.01", 6, HOURLY_UNITS[0]).ok();
        assert_eq!(base, Some(2_777_777_778));
    }
}

/// CPU, memory and storage given on the command line (a reservation, a capacity); any one
/// left out is taken from elsewhere, as the command says.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Resources {
    /// CPU, millicores.
    #[arg(long)]
    pub cpu: Option<u32>,
    /// Memory, MiB.
    #[arg(long)]
    pub memory: Option<u32>,
    /// Storage, GiB.
    #[arg(long)]
    pub storage: Option<u32>,
}

impl Resources {
    /// Whether any of the three was given.
    pub fn any(&self) -> bool {
        self.cpu.is_some() || self.memory.is_some() || self.storage.is_some()
    }
}
