//! Resource quantities as written in manifests, in Kubernetes' notation.

/// Parses a CPU quantity (`500m`, `1`, `1.5`, `0.25`) into millicores.
pub fn cpu_millis(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let millis = if let Some(m) = t.strip_suffix('m') {
        m.parse::<u64>()
            .map_err(|_| format!("`{text}` is not a CPU quantity (e.g. 500m, 1, 1.5)"))?
    } else {
        decimal_thousandths(t)
            .ok_or_else(|| format!("`{text}` is not a CPU quantity (e.g. 500m, 1, 1.5)"))?
    };
    if millis == 0 {
        return Err("CPU must be at least 1m".into());
    }
    u32::try_from(millis).map_err(|_| format!("`{text}` is too large"))
}

/// Parses a memory or storage quantity (`256Mi`, `1Gi`, `512M`, `1048576`) into bytes.
pub fn bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a size (e.g. 256Mi, 1Gi, 500M)");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let total = n
        .checked_mul(unit)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if total == 0 {
        return Err("a size must be above zero".into());
    }
    Ok(total)
}

/// Parses a duration of whole seconds, minutes or hours (`30s`, `5m`, `2h`) into seconds.
pub fn seconds(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a duration (e.g. 30s, 5m, 1h)");
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Bytes rounded up to whole MiB, the unit of lease reservations.
pub fn mib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Bytes rounded up to whole GiB.
pub fn gib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 30)
}

/// `1`, `1.5`, `0.25` as thousandths; at most three decimals.
fn decimal_thousandths(t: &str) -> Option<u64> {
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 3 {
        return None;
    }
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) || !digits(frac) {
        return None;
    }
    let w: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let f: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    w.checked_mul(1000)?.checked_add(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(cpu_millis("500m"), Ok(500));
        assert_eq!(cpu_millis("1"), Ok(1000));
        assert_eq!(cpu_millis("1.5"), Ok(1500));
        assert_eq!(cpu_millis("0.25"), Ok(250));
        assert!(cpu_millis("0").is_err());
        assert!(cpu_millis("1.2345").is_err());
        assert!(cpu_millis("lots").is_err());
        assert!(cpu_millis("-1").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes("256Mi"), Ok(256 << 20));
        assert_eq!(bytes("1Gi"), Ok(1 << 30));
        assert_eq!(bytes("500M"), Ok(500_000_000));
        assert_eq!(bytes("4096"), Ok(4096));
        assert!(bytes("12Xi").is_err());
        assert!(bytes("Mi").is_err());
        assert!(bytes("0Mi").is_err());
        assert_eq!(mib_ceil(500_000_000), 477);
        assert_eq!(gib_ceil(1), 1);
    }

    #[test]
    fn durations() {
        assert_eq!(seconds("30s"), Ok(30));
        assert_eq!(seconds("5m"), Ok(300));
        assert_eq!(seconds("2h"), Ok(7200));
        for bad in ["", "5", "m", "5 m", "1.5m", "5d", "-1s"] {
            assert!(seconds(bad).is_err(), "{bad:?}");
        }
        assert!(seconds("99999999999999999999h").is_err());
    }
}
