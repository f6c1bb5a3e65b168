//! The pure part of runway alerts: which thresholds a lease's runway is under, with
//! hysteresis, so that a runway hovering at a threshold alerts once.

/// Runway thresholds, seconds, largest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds(Vec<u64>);

/// How far a lease's runway has fallen: the number of thresholds crossed, and how many times
/// it recovered (part of each alert's identity, so a new crossing after a top-up alerts anew).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Level {
    /// Thresholds crossed (0: above them all).
    pub level: usize,
    /// Recoveries so far.
    pub episode: i32,
}

/// A threshold must be exceeded by this much (per cent) before it can alert again.
pub const RECOVERY_MARGIN_PERCENT: u64 = 10;

impl Thresholds {
    /// Sorted largest first, duplicates and zeros removed.
    pub fn new(mut seconds: Vec<u64>) -> Self {
        seconds.retain(|s| *s > 0);
        seconds.sort_unstable_by(|a, b| b.cmp(a));
        seconds.dedup();
        Self(seconds)
    }

    /// The thresholds.
    pub fn seconds(&self) -> &[u64] {
        &self.0
    }

    fn under(&self, runway: i64, margin_percent: u64) -> usize {
        self.0
            .iter()
            .filter(|t| {
                let bar = i128::from(**t) * i128::from(100 + margin_percent) / 100;
                i128::from(runway) < bar
            })
            .count()
    }

    /// The level after observing `runway`, and the thresholds newly crossed (to alert).
    pub fn next(&self, was: Level, runway: i64) -> (Level, Vec<u64>) {
        let now = self.under(runway, 0);
        if now > was.level {
            let crossed = self.0[was.level..now].to_vec();
            return (Level { level: now, ..was }, crossed);
        }
        let recovered = self.under(runway, RECOVERY_MARGIN_PERCENT);
        if recovered < was.level {
            return (
                Level {
                    level: recovered,
                    episode: was.episode + 1,
                },
                Vec::new(),
            );
        }
        (was, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(t: &Thresholds, runways: &[i64]) -> Vec<(u64, i32)> {
        let mut level = Level::default();
        let mut alerts = Vec::new();
        for r in runways {
            let (next, crossed) = t.next(level, *r);
            alerts.extend(crossed.into_iter().map(|c| (c, next.episode)));
            level = next;
        }
        alerts
    }

    #[test]
    fn a_draining_lease_alerts_once_per_threshold() {
        let t = Thresholds::new(vec![7200, 86_400]);
        assert_eq!(t.seconds(), [86_400, 7200]);
        let runways = [
            100_000, 90_000, 86_399, 86_000, 86_401, 86_300, 7_300, 7_199, 7_000, 0, -50,
        ];
        assert_eq!(walk(&t, &runways), [(86_400, 0), (7200, 0)]);
    }

    #[test]
    fn hovering_at_a_threshold_alerts_once_and_a_top_up_rearms_it() {
        let t = Thresholds::new(vec![100]);
        // Around the threshold, within the 10 % margin: one alert.
        assert_eq!(walk(&t, &[120, 99, 101, 99, 105, 98]), [(100, 0)]);
        // A top-up above 110 re-arms it: the next fall is a new episode.
        assert_eq!(walk(&t, &[120, 99, 111, 99]), [(100, 0), (100, 1)]);
    }

    #[test]
    fn a_sudden_drop_crosses_every_threshold_at_once() {
        let t = Thresholds::new(vec![86_400, 7200, 0]);
        assert_eq!(walk(&t, &[100_000, 10]), [(86_400, 0), (7200, 0)]);
    }
}
