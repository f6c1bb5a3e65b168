//! Metering: samples of what each workload really uses, summed into the units a usage report
//! charges for, with a Merkle root over the samples so the tenant can recompute every report.
//!
//! Units of a report period `(from, to]` (chain seconds; samples carry wall-clock
//! milliseconds):
//! - CPU millicore-seconds: the growth of each container's cumulative CPU counter between
//!   consecutive samples, attributed to the period of the later sample (so every interval
//!   counts once across contiguous reports); a counter that went backwards (the container
//!   restarted) counts from zero. nanoseconds / 1e6. A container is named per start where the
//!   engine can tell (podman: `<name>@<unix start>`), so a restart begins a new series and the
//!   time it was stopped (scaled to zero, crashed) bills nothing.
//! - Memory MiB-seconds: each sample's memory times the time since the previous sample, when
//!   that gap is at most `max_gap_ms`; a longer gap (the keeper was down) bills nothing for
//!   memory: a gap, never an invented value.
//! - Storage GiB-seconds: the reservation times the period (storage is reserved, not metered).
//!
//! Every resource is clamped to reservation × period (the contract's cap), with a log line.

pub mod merkle;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::policy::Reservation;

/// One reading of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Container name (unique within the lease).
    pub container: String,
    /// Wall-clock time of the reading, unix milliseconds.
    pub taken_at_ms: u64,
    /// Cumulative CPU time of the container, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
}

/// The units of one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Units {
    /// CPU millicore-seconds.
    pub cpu: u64,
    /// Memory MiB-seconds.
    pub memory: u64,
    /// Storage GiB-seconds.
    pub storage: u64,
    /// Whether a value was clamped to its cap.
    pub clamped: bool,
}

/// Sums the units of the period `(from_s, to_s]`.
///
/// `baseline` holds, per container, the last sample at or before the period's start (from
/// the previous period); `samples` are the period's samples. Both may be in any order.
pub fn units(
    baseline: &[Sample],
    samples: &[Sample],
    from_s: u64,
    to_s: u64,
    running_s: u64,
    reservation: Reservation,
    max_gap_ms: u64,
) -> Units {
    let mut by_container: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in baseline.iter().chain(samples) {
        by_container.entry(&s.container).or_default().push(s);
    }
    let (mut cpu_ns, mut mem_byte_ms) = (0u128, 0u128);
    for series in by_container.values_mut() {
        series.sort_by_key(|s| s.taken_at_ms);
        for pair in series.windows(2) {
            let (prev, cur) = (pair[0], pair[1]);
            if cur.taken_at_ms <= from_s * 1000 || cur.taken_at_ms > to_s * 1000 {
                continue;
            }
            cpu_ns += u128::from(if cur.cpu_ns >= prev.cpu_ns {
                cur.cpu_ns - prev.cpu_ns
            } else {
                cur.cpu_ns
            });
            let dt = cur.taken_at_ms - prev.taken_at_ms;
            if dt <= max_gap_ms {
                mem_byte_ms += u128::from(cur.memory_bytes) * u128::from(dt);
            }
        }
    }
    // Caps over the seconds the workload was allowed to run (a suspension bills no units).
    let cap = |per_second: u32| u128::from(per_second) * u128::from(running_s);
    let cpu = cpu_ns / 1_000_000;
    let memory = mem_byte_ms / ((1u128 << 20) * 1000);
    let mut u = Units {
        cpu: cpu.min(cap(reservation.cpu_millis)) as u64,
        memory: memory.min(cap(reservation.memory_mib)) as u64,
        storage: cap(reservation.storage_gib) as u64,
        clamped: false,
    };
    u.clamped = cpu > cap(reservation.cpu_millis) || memory > cap(reservation.memory_mib);
    u
}

/// Seconds of `[from, to)` outside the suspension `[suspended_at, resumed_at)` (a
/// `resumed_at` of 0: still suspended; a `suspended_at` of 0: never suspended), as the escrow
/// counts them for unit caps.
pub fn running_seconds(from: u64, to: u64, suspended_at: u64, resumed_at: u64) -> u64 {
    if suspended_at == 0 || to <= from {
        return to.saturating_sub(from);
    }
    let idle_end = if resumed_at == 0 {
        u64::MAX
    } else {
        resumed_at
    };
    let idle = to.min(idle_end).saturating_sub(from.max(suspended_at));
    (to - from) - idle
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Reservation = Reservation {
        cpu_millis: 500,
        memory_mib: 256,
        storage_gib: 1,
    };

    fn s(container: &str, t_ms: u64, cpu_ns: u64, mib: u64) -> Sample {
        Sample {
            container: container.into(),
            taken_at_ms: t_ms,
            cpu_ns,
            memory_bytes: mib << 20,
        }
    }

    #[test]
    fn cpu_is_counter_growth_and_memory_is_integrated() {
        // 100 ms of CPU per second, 64 MiB, sampled every second over (10 s, 20 s].
        let base = [s("web", 10_000, 1_000_000_000, 64)];
        let period: Vec<Sample> = (1..=10)
            .map(|i| {
                s(
                    "web",
                    10_000 + i * 1000,
                    1_000_000_000 + i * 100_000_000,
                    64,
                )
            })
            .collect();
        let u = units(&base, &period, 10, 20, 10, R, 5_000);
        assert_eq!(
            u,
            Units {
                cpu: 1000,
                memory: 640,
                storage: 10,
                clamped: false
            }
        );
    }

    #[test]
    fn a_suspended_period_bills_no_units() {
        // Busy all along, but suspended for the last 6 of 10 s: caps cover 4 s only.
        let all: Vec<Sample> = (0..=10)
            .map(|i| s("web", i * 1000, i * 1_000_000_000, 512))
            .collect();
        let u = units(&[], &all, 0, 10, 4, R, 5_000);
        assert_eq!(u.cpu, 500 * 4, "CPU capped at the running time");
        assert_eq!(u.memory, 256 * 4, "memory capped at the running time");
        assert_eq!(u.storage, 4, "storage only for the running time");
        assert!(u.clamped);
    }

    #[test]
    fn contiguous_periods_count_each_interval_once() {
        let all: Vec<Sample> = (0..=20)
            .map(|i| s("web", i * 1000, i * 10_000_000, 1))
            .collect();
        let whole = units(&[], &all, 0, 20, 20, R, 5_000);
        let first = units(&[], &all[..=10], 0, 10, 10, R, 5_000);
        let second = units(&all[10..=10], &all[11..], 10, 20, 10, R, 5_000);
        assert_eq!(first.cpu + second.cpu, whole.cpu);
        assert_eq!(first.memory + second.memory, whole.memory);
    }

    #[test]
    fn gaps_bill_no_memory_and_restarts_do_not_go_negative() {
        let base = [s("web", 0, 5_000_000_000, 100)];
        // A 60 s gap (keeper down), then a restarted container (counter back near zero).
        let period = [
            s("web", 60_000, 6_000_000_000, 100),
            s("web", 61_000, 200_000_000, 100),
        ];
        let u = units(&base, &period, 0, 61, 61, R, 5_000);
        assert_eq!(
            u.cpu,
            1000 + 200,
            "CPU counters are exact across the gap; the restart counts from zero"
        );
        assert_eq!(
            u.memory, 100,
            "only the 1 s interval after the gap bills memory"
        );
    }

    #[test]
    fn units_are_clamped_to_reservation_times_period() {
        let base = [s("a", 0, 0, 512)];
        let period = [s("a", 10_000, 60_000_000_000, 512)];
        let u = units(&base, &period, 0, 10, 10, R, 20_000);
        assert_eq!((u.cpu, u.memory, u.clamped), (5000, 2560, true));
    }
}
