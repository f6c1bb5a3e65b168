//! The indexing loop: backfill in adaptive block ranges, follow the head, detect reorgs by
//! block hash and roll back to the common ancestor.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    eips::BlockNumberOrTag,
    primitives::B256,
    providers::Provider,
    rpc::types::{Filter, Log},
};
use tokio::sync::{Notify, watch};

use crate::{
    events::Decoder,
    metrics::Metrics,
    store::{BlockRef, DecodedRow, LogRow, Store, StoreError, WriteTimes},
};

/// How the indexer walks the chain.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// First block to index when the database is empty (the deployment's start block).
    pub start_block: u64,
    /// Blocks behind the head the indexer stays.
    pub confirmations: u64,
    /// Block range of the first `eth_getLogs`.
    pub initial_range: u64,
    /// Largest block range the adaptive sizing grows to.
    pub max_range: u64,
    /// Recent blocks kept for finding a common ancestor; a deeper reorg stops the indexer.
    pub reorg_window: u64,
    /// Pause between polls once at the head.
    pub poll_interval: Duration,
    /// Rows written after which the tables' planner statistics are refreshed (`ANALYZE`, in the
    /// background on a connection of its own)
    /// once the indexer reaches the head, or at 20 times that in a long backfill: without
    /// them the views' plans go wrong by orders of magnitude after a backfill.
    pub analyze_after_rows: u64,
}

/// Why indexing stopped or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The RPC node failed; retried with backoff.
    #[error("rpc: {0}")]
    Rpc(String),
    /// The database failed; retried with backoff.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The chain reorganised below every block the indexer remembers: fatal by design.
    #[error(
        "reorg deeper than the window: stored block {checkpoint} is no longer canonical and none of the last {searched} stored blocks is"
    )]
    ReorgTooDeep {
        /// The orphaned checkpoint.
        checkpoint: u64,
        /// How many stored blocks were compared.
        searched: usize,
    },
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Indexed `[from, to]`, writing `logs` logs.
    Indexed {
        /// First block.
        from: u64,
        /// Last block.
        to: u64,
        /// Logs written.
        logs: usize,
    },
    /// The node refused the range; it was shrunk to `range` blocks.
    Shrunk {
        /// The new range.
        range: u64,
    },
    /// A reorg was found; everything above `ancestor` was rolled back.
    Rewound {
        /// The common ancestor.
        ancestor: u64,
    },
    /// Nothing new below the confirmation depth.
    Idle,
}

/// Where the indexer's time went since it started: each phase summed over every batch.
/// Fetching the next range overlaps writing the current one, so the phases add up to more
/// than the wall time of a backfill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// Reading logs and headers from the node (`eth_getLogs`, linking the range).
    pub fetch: Duration,
    /// Decoding logs and building rows.
    pub decode: Duration,
    /// Sending rows to Postgres (deletes, COPY, blocks, checkpoint, entity tables).
    pub write: Duration,
    /// `COMMIT`.
    pub commit: Duration,
}

/// The logs of one block range, read and checked, not yet written.
#[derive(Debug)]
struct Batch {
    from: u64,
    end: BlockRef,
    /// The logs, decoded (decoding is part of the fetch, so it overlaps the previous write).
    rows: Vec<LogRow>,
    /// The blocks to remember below `end`: every block of the range when it lies within the
    /// reorg window of the head, linked parent to child (so a later rewind finds exact
    /// ancestors), else the blocks that hold logs.
    blocks: Vec<BlockRef>,
    /// How long decoding took.
    decode: Duration,
}

/// Most headers read at once while linking a range.
const HEADER_CONCURRENCY: usize = 16;

/// What reading a range gave.
#[derive(Debug)]
enum Fetch {
    Done(Batch),
    /// The node refused the range as too large.
    TooLarge(String),
    /// The range end is not (or no longer) canonical: try again later.
    Moved,
}

/// The indexer for one chain.
#[derive(Debug)]
pub struct Indexer<P> {
    provider: P,
    store: Store,
    decoder: Decoder,
    cfg: SyncConfig,
    range: u64,
    metrics: Metrics,
    prefetched: Option<Batch>,
    wake: Arc<Notify>,
    written_since_analyze: u64,
    analyzing: Option<tokio::task::JoinHandle<()>>,
    times: PhaseTimes,
}

fn rpc<E: std::fmt::Display>(e: E) -> SyncError {
    SyncError::Rpc(e.to_string())
}

/// A log's index in its block as the store keys it; a node answering with one beyond `u32`
/// is answering nonsense, and the batch is refused (retried) rather than mis-keyed.
fn log_index(block: u64, index: u64) -> Result<u32, SyncError> {
    u32::try_from(index)
        .map_err(|_| SyncError::Rpc(format!("block {block}: log index {index} is out of range")))
}

/// Whether a node error means "ask for fewer blocks" rather than "the node is down".
fn is_range_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "too many",
        "more than",
        "limit",
        "exceed",
        "too large",
        "timeout",
        "timed out",
        "response size",
        "range",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

impl<P: Provider> Indexer<P> {
    /// An indexer reading `provider` and writing `store`.
    pub fn new(
        provider: P,
        store: Store,
        decoder: Decoder,
        cfg: SyncConfig,
        metrics: Metrics,
    ) -> Self {
        let range = cfg.initial_range.clamp(1, cfg.max_range.max(1));
        Self {
            provider,
            store,
            decoder,
            cfg,
            range,
            metrics,
            prefetched: None,
            wake: Arc::new(Notify::new()),
            written_since_analyze: 0,
            analyzing: None,
            times: PhaseTimes::default(),
        }
    }

    /// Notified to end an idle wait early (e.g. by a newHeads subscription).
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Where the time went so far (printed by `bench-indexer`).
    pub fn phase_times(&self) -> PhaseTimes {
        self.times
    }

    /// The current block range of `eth_getLogs`.
    pub fn range(&self) -> u64 {
        self.range
    }

    async fn header(&self, number: u64) -> Result<Option<BlockRef>, SyncError> {
        Ok(self.linked_header(number).await?.map(|(b, _)| b))
    }

    /// A block and its parent's hash.
    async fn linked_header(&self, number: u64) -> Result<Option<(BlockRef, B256)>, SyncError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(rpc)?;
        Ok(block.map(|b| {
            (
                BlockRef {
                    number,
                    hash: b.header.hash,
                    time: b.header.timestamp,
                },
                b.header.parent_hash,
            )
        }))
    }

    /// Headers `from..=to`, in order, each the child of the one before and the first a
    /// child of `parent`; `None` when the chain moved meanwhile (a reorg, a lagging node).
    async fn linked_range(
        &self,
        from: u64,
        to: u64,
        parent: Option<B256>,
    ) -> Result<Option<Vec<BlockRef>>, SyncError> {
        use futures::StreamExt;
        let headers: Vec<Option<(BlockRef, B256)>> = futures::stream::iter(from..=to)
            .map(|n| self.linked_header(n))
            .buffered(HEADER_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let mut expected = parent;
        let mut blocks = Vec::with_capacity(headers.len());
        for header in headers {
            let Some((block, parent_hash)) = header else {
                return Ok(None);
            };
            if expected.is_some_and(|e| e != parent_hash) {
                return Ok(None);
            }
            expected = Some(block.hash);
            blocks.push(block);
        }
        Ok(Some(blocks))
    }

    /// One unit of work: check for a reorg, then index the next range. While a batch is
    /// written, the following range is already fetched (when the head is further away).
    pub async fn step(&mut self) -> Result<Step, SyncError> {
        let checkpoint = self.store.checkpoint().await?;
        if let Some(cp) = checkpoint {
            let canonical = self.header(cp.number).await?;
            if canonical.map(|c| c.hash) != Some(cp.hash) {
                self.prefetched = None;
                return self.rewind(cp).await;
            }
        }
        let latest = self.provider.get_block_number().await.map_err(rpc)?;
        let head = latest.saturating_sub(self.cfg.confirmations);
        let from = checkpoint.map_or(self.cfg.start_block, |c| c.number + 1);
        self.metrics
            .set_head_lag(latest.saturating_sub(checkpoint.map_or(0, |c| c.number)));
        if from > head {
            return Ok(Step::Idle);
        }
        let parent = checkpoint.map(|c| c.hash);
        let batch = match self.prefetched.take() {
            Some(batch) if batch.from == from => batch,
            _ => match self
                .timed_fetch(from, head.min(from + self.range - 1), parent, latest)
                .await
                .map(|(fetch, took)| {
                    let decode = match &fetch {
                        Fetch::Done(batch) => batch.decode,
                        _ => Duration::ZERO,
                    };
                    self.times.fetch += took - decode;
                    fetch
                })? {
                Fetch::Done(batch) => batch,
                Fetch::TooLarge(error) => {
                    self.range = (self.range / 2).max(1);
                    tracing::warn!(%error, range = self.range, "node refused the range, shrinking");
                    return Ok(Step::Shrunk { range: self.range });
                }
                Fetch::Moved => return Ok(Step::Idle),
            },
        };
        self.times.decode += batch.decode;
        let rows = batch.rows;
        let commit = self.store.commit_batch(
            batch.from,
            &rows,
            &batch.blocks,
            batch.end,
            self.cfg.reorg_window,
        );
        let next_from = batch.end.number + 1;
        if next_from <= head {
            let next = self.timed_fetch(
                next_from,
                head.min(next_from + self.range - 1),
                Some(batch.end.hash),
                latest,
            );
            let (written, next) = tokio::join!(commit, next);
            self.add_write_times(written?);
            // A failed prefetch is simply fetched again by the next step.
            if let Ok((Fetch::Done(next), took)) = next {
                self.times.fetch += took - next.decode;
                self.prefetched = Some(next);
            }
        } else {
            let written = commit.await?;
            self.add_write_times(written);
        }
        self.metrics.add_events(rows.len() as u64);
        self.written_since_analyze += rows.len() as u64;
        let threshold = self.cfg.analyze_after_rows.max(1);
        let at_head = batch.end.number >= head;
        let analyzing = self.analyzing.as_ref().is_some_and(|a| !a.is_finished());
        if !analyzing
            && self.written_since_analyze >= threshold
            && (at_head || self.written_since_analyze >= threshold.saturating_mul(20))
        {
            // On its own connection, beside indexing: statistics need not hold up rows.
            let store = self.store.clone();
            let rows = self.written_since_analyze;
            self.analyzing = Some(tokio::spawn(async move {
                match store.analyze().await {
                    Ok(()) => tracing::info!(rows, "planner statistics refreshed"),
                    Err(error) => tracing::warn!(%error, "refreshing planner statistics failed"),
                }
            }));
            self.written_since_analyze = 0;
        }
        if (rows.len() as u64) < 10_000 {
            self.range = (self.range * 2).min(self.cfg.max_range);
        }
        Ok(Step::Indexed {
            from: batch.from,
            to: batch.end.number,
            logs: rows.len(),
        })
    }

    fn add_write_times(&mut self, t: WriteTimes) {
        self.times.write += t.write;
        self.times.commit += t.commit;
    }

    async fn timed_fetch(
        &self,
        from: u64,
        to: u64,
        parent: Option<B256>,
        latest: u64,
    ) -> Result<(Fetch, Duration), SyncError> {
        let started = Instant::now();
        let fetch = self.fetch(from, to, parent, latest).await?;
        Ok((fetch, started.elapsed()))
    }

    /// Reads the logs of `from..=to`, checking that the range hangs off the stored chain:
    /// block `from` is a child of `parent` (the checkpoint), and after the logs were read
    /// the range is still canonical. Within the reorg window of the head every block of the
    /// range is linked to its parent and every log to its block; deeper, the two ends are
    /// read again. A reorg at any moment of the fetch gives [`Fetch::Moved`], and the next
    /// step finds the checkpoint orphaned and rewinds.
    async fn fetch(
        &self,
        from: u64,
        to: u64,
        parent: Option<B256>,
        latest: u64,
    ) -> Result<Fetch, SyncError> {
        let Some(end) = self.header(to).await? else {
            return Ok(Fetch::Moved); // the node has not got that far after all
        };
        match self.linked_header(from).await? {
            Some((_, p)) if parent.is_none_or(|e| e == p) => {}
            _ => return Ok(Fetch::Moved),
        }
        let filter = Filter::new()
            .address(vec![
                self.decoder.watched().registry,
                self.decoder.watched().escrow,
            ])
            .from_block(from)
            .to_block(to);
        let logs = match self.provider.get_logs(&filter).await {
            Ok(logs) => logs,
            Err(e) if self.range > 1 && is_range_error(&e.to_string()) => {
                return Ok(Fetch::TooLarge(e.to_string()));
            }
            Err(e) => return Err(rpc(e)),
        };
        let near_head = latest.saturating_sub(to) < self.cfg.reorg_window;
        let linked = if near_head {
            match self.linked_range(from, to, parent).await? {
                Some(blocks) => blocks,
                None => return Ok(Fetch::Moved),
            }
        } else {
            match self.linked_header(from).await? {
                Some((_, p)) if parent.is_none_or(|e| e == p) => {}
                _ => return Ok(Fetch::Moved),
            }
            Vec::new()
        };
        if linked
            .last()
            .map_or(self.header(to).await?.map(|b| b.hash), |b| Some(b.hash))
            != Some(end.hash)
        {
            return Ok(Fetch::Moved);
        }
        // Every log must belong to the blocks just linked.
        if !linked.is_empty() {
            let stray = logs.iter().any(|l| {
                let i = l.block_number.and_then(|n| n.checked_sub(from));
                i.and_then(|i| linked.get(usize::try_from(i).ok()?))
                    .map(|b| b.hash)
                    != l.block_hash
            });
            if stray {
                return Ok(Fetch::Moved);
            }
        }
        let decoding = Instant::now();
        let (rows, mut blocks) = self.rows(&logs, end).await?;
        if !linked.is_empty() {
            blocks = linked[..linked.len() - 1].to_vec();
        }
        Ok(Fetch::Done(Batch {
            from,
            end,
            rows,
            blocks,
            decode: decoding.elapsed(),
        }))
    }

    async fn rows(
        &self,
        logs: &[Log],
        end: BlockRef,
    ) -> Result<(Vec<LogRow>, Vec<BlockRef>), SyncError> {
        let mut blocks: Vec<BlockRef> = Vec::new();
        let mut rows = Vec::with_capacity(logs.len());
        for log in logs {
            let (Some(number), Some(hash), Some(index), Some(tx)) = (
                log.block_number,
                log.block_hash,
                log.log_index,
                log.transaction_hash,
            ) else {
                return Err(SyncError::Rpc(
                    "node returned a pending log without block data".into(),
                ));
            };
            if number == end.number && hash != end.hash {
                return Err(SyncError::Rpc(format!(
                    "log of block {number} has an orphaned hash"
                )));
            }
            let time = match (blocks.last(), log.block_timestamp) {
                (Some(b), _) if b.number == number => b.time,
                (_, Some(t)) => t,
                _ => self
                    .header(number)
                    .await?
                    .map(|b| b.time)
                    .ok_or_else(|| SyncError::Rpc(format!("block {number} vanished")))?,
            };
            if blocks.last().map(|b| b.number) != Some(number) && number != end.number {
                blocks.push(BlockRef { number, hash, time });
            }
            let decoded = self
                .decoder
                .decode(log.address(), log.data())
                .map(|(contract, event)| DecodedRow { contract: contract.as_str(), event: event.name, args: event.args })
                .map_err(|e| {
                    tracing::warn!(block = number, log_index = index, error = %e, "log skipped: not a known event");
                    e.to_string()
                });
            rows.push(LogRow {
                block_number: number,
                block_hash: hash,
                block_time: time,
                log_index: log_index(number, index)?,
                tx_hash: tx,
                address: log.address(),
                topics: log.topics().to_vec(),
                data: log.data().data.clone(),
                decoded,
            });
        }
        Ok((rows, blocks))
    }

    async fn rewind(&mut self, checkpoint: BlockRef) -> Result<Step, SyncError> {
        let window = i64::try_from(self.cfg.reorg_window).unwrap_or(i64::MAX);
        let stored = self.store.recent_blocks(window).await?;
        for block in &stored {
            if self.header(block.number).await?.map(|b| b.hash) == Some(block.hash) {
                tracing::warn!(
                    orphaned = checkpoint.number,
                    ancestor = block.number,
                    "reorg: rolling back"
                );
                self.store.rewind_to(*block).await?;
                self.metrics.add_reorg();
                return Ok(Step::Rewound {
                    ancestor: block.number,
                });
            }
        }
        Err(SyncError::ReorgTooDeep {
            checkpoint: checkpoint.number,
            searched: stored.len(),
        })
    }

    /// Steps until `shutdown` turns true: RPC and database failures are retried with
    /// exponential backoff (up to 30 s); only a reorg deeper than the window stops it.
    pub async fn run(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), SyncError> {
        let mut backoff = Duration::from_millis(250);
        while !*shutdown.borrow() {
            let pause = match self.step().await {
                Ok(Step::Idle) => {
                    backoff = Duration::from_millis(250);
                    tokio::select! {
                        _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                        _ = self.wake.notified() => {}
                        _ = shutdown.changed() => {}
                    }
                    Duration::ZERO
                }
                Ok(step) => {
                    backoff = Duration::from_millis(250);
                    tracing::debug!(?step, "step");
                    Duration::ZERO
                }
                Err(e @ SyncError::ReorgTooDeep { .. }) => return Err(e),
                Err(e) => {
                    self.metrics.add_rpc_error();
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "step failed, retrying");
                    let pause = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    pause
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{is_range_error, log_index};

    #[test]
    fn an_out_of_range_log_index_is_refused_not_clamped() {
        assert_eq!(log_index(7, 3).ok(), Some(3));
        let err = log_index(7, u64::from(u32::MAX) + 1).expect_err("out of range");
        assert!(
            err.to_string().contains("block 7: log index 4294967296"),
            "{err}"
        );
    }

    #[test]
    fn node_limits_shrink_the_range_but_outages_do_not() {
        for limit in [
            "query returned more than 10000 results",
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
            "block range is too large",
            "request timed out",
            "too many logs",
        ] {
            assert!(is_range_error(limit), "{limit}");
        }
        for outage in [
            "connection refused",
            "error sending request for url",
            "internal error",
        ] {
            assert!(!is_range_error(outage), "{outage}");
        }
    }
}
