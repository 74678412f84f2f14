//! The metadata feed: how a node that is not a voter of the quorum (a broker-only
//! node, `process.roles=broker`) follows the metadata log. KRaft brokers are *observers*
//! of `__cluster_metadata`: they fetch committed records from the quorum instead of
//! voting. Ottla's voters keep the latest committed batches here, and an observer asks
//! any voter for what follows the last index it applied ([`MetadataFetch`]); one
//! that has fallen behind what a voter keeps (or is new) gets the voter's whole image
//! instead, as KRaft sends a snapshot.
//!
//! Observers pull, as in KRaft, so a broker-only node needs no listener of its own for
//! the quorum: it reaches the voters on their CONTROLLER listeners.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// Committed batches a voter keeps for observers; one further behind gets the image.
pub const FEED_BATCHES: usize = 4096;
/// Observers a voter remembers for DescribeQuorum; past this the longest silent one is
/// forgotten (a peer inventing node ids must not grow the map without bound).
pub const MAX_OBSERVERS: usize = 1024;

/// A voter's answer to an observer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetadataFetch {
    /// The active controller as the answering voter knows it.
    pub leader: Option<u64>,
    /// Everything up to this log index is in the answer (or was in earlier ones).
    pub applied_index: u64,
    /// The whole image as records, when the observer asked from before what the voter
    /// keeps: it replaces the observer's image.
    pub snapshot: Option<Vec<MetadataRecord>>,
    /// The committed batches after the index asked from, in log order.
    pub batches: Vec<(u64, Vec<MetadataRecord>)>,
}

/// What one observer last fetched, for DescribeQuorum's observer list.
#[derive(Debug, Clone, Copy)]
pub struct ObserverProgress {
    pub applied_index: u64,
    pub last_fetch_ms: i64,
}

struct FeedState {
    /// Batches after `base`, up to `applied`, oldest first.
    batches: VecDeque<(u64, Arc<Vec<MetadataRecord>>)>,
    base: u64,
    applied: u64,
    image: Arc<MetadataImage>,
    observers: BTreeMap<i32, ObserverProgress>,
}

/// Kept by every voter, fed by its state machine as entries apply.
pub struct MetadataFeed {
    state: Mutex<FeedState>,
    /// The applied index, for long polls.
    applied: watch::Sender<u64>,
}

impl Default for MetadataFeed {
    fn default() -> Self {
        MetadataFeed {
            state: Mutex::new(FeedState {
                batches: VecDeque::new(),
                base: 0,
                applied: 0,
                image: Arc::new(MetadataImage::default()),
                observers: BTreeMap::new(),
            }),
            applied: watch::channel(0).0,
        }
    }
}

impl MetadataFeed {
    /// A committed entry with `records` was applied at `index`, giving `image`.
    pub fn applied(&self, index: u64, records: &[MetadataRecord], image: &Arc<MetadataImage>) {
        let mut state = self.state.lock();
        debug_assert!(
            index > state.applied || state.applied == 0,
            "the feed goes forward"
        );
        state.batches.push_back((index, Arc::new(records.to_vec())));
        while state.batches.len() > FEED_BATCHES {
            if let Some((dropped, _)) = state.batches.pop_front() {
                state.base = dropped;
            }
        }
        state.applied = index;
        state.image = image.clone();
        drop(state);
        self.applied.send_replace(index);
    }

    /// The image was replaced wholesale at `index` (a snapshot loaded or installed):
    /// nothing before it can be served as batches.
    pub fn reset(&self, index: u64, image: &Arc<MetadataImage>) {
        let mut state = self.state.lock();
        state.batches.clear();
        state.base = index;
        state.applied = index;
        state.image = image.clone();
        drop(state);
        self.applied.send_replace(index);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// What follows `after` for observer `observer`.
    pub fn fetch(
        &self,
        observer: i32,
        after: u64,
        leader: Option<u64>,
        now_ms: i64,
    ) -> MetadataFetch {
        let mut state = self.state.lock();
        if state.observers.len() >= MAX_OBSERVERS && !state.observers.contains_key(&observer) {
            let oldest = state
                .observers
                .iter()
                .min_by_key(|(_, p)| p.last_fetch_ms)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                state.observers.remove(&id);
            }
        }
        state.observers.insert(
            observer,
            ObserverProgress {
                applied_index: after,
                last_fetch_ms: now_ms,
            },
        );
        // Ahead of this voter (it lags the one the observer asked before): nothing yet,
        // and never an older image.
        if after > state.applied {
            return MetadataFetch {
                leader,
                applied_index: state.applied,
                snapshot: None,
                batches: Vec::new(),
            };
        }
        if after < state.base || (after == 0 && state.applied > 0) {
            return MetadataFetch {
                leader,
                applied_index: state.applied,
                snapshot: Some(state.image.to_records()),
                batches: Vec::new(),
            };
        }
        MetadataFetch {
            leader,
            applied_index: state.applied,
            snapshot: None,
            batches: state
                .batches
                .iter()
                .filter(|(index, _)| *index > after)
                .map(|(index, records)| (*index, records.to_vec()))
                .collect(),
        }
    }

    /// The observers that fetched recently.
    pub fn observers(&self) -> BTreeMap<i32, ObserverProgress> {
        self.state.lock().observers.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: uuid::Uuid::new_v4(),
        }
    }

    fn image_of(records: &[MetadataRecord]) -> Arc<MetadataImage> {
        let mut image = MetadataImage::default();
        for r in records {
            image.replay(r).unwrap();
        }
        Arc::new(image)
    }

    #[test]
    fn an_observer_gets_the_batches_after_its_index_or_the_image_when_too_far_behind() {
        let feed = MetadataFeed::default();
        let (a, b) = (topic("a"), topic("b"));
        feed.applied(
            3,
            std::slice::from_ref(&a),
            &image_of(std::slice::from_ref(&a)),
        );
        feed.applied(
            7,
            std::slice::from_ref(&b),
            &image_of(&[a.clone(), b.clone()]),
        );
        // New observer: the whole image.
        let first = feed.fetch(10, 0, Some(1), 0);
        assert_eq!(first.applied_index, 7);
        assert_eq!(image_of(&first.snapshot.unwrap()).topic_count(), 2);
        // Caught up to 3: only the batch at 7.
        let next = feed.fetch(10, 3, Some(1), 0);
        assert!(next.snapshot.is_none());
        assert_eq!(next.batches, vec![(7, vec![b.clone()])]);
        assert!(feed.fetch(10, 7, None, 0).batches.is_empty(), "nothing new");
        // After a snapshot install at 20, an observer at 7 must start over.
        feed.reset(20, &image_of(&[a, b]));
        assert!(feed.fetch(10, 7, None, 0).snapshot.is_some());
        assert_eq!(feed.observers()[&10].applied_index, 7);
    }
}
