//! Producer ids for InitProducerId, handed out from blocks the controller reserves
//! (Kafka's `RPCProducerIdManager` asking the controller's `ProducerIdControlManager`
//! through AllocateProducerIds): a block costs one metadata write, every id in it is
//! this broker's alone, and since the controller records how far it has handed out,
//! ids stay unique across restarts and brokers (an unused remainder is simply skipped).

use std::sync::Mutex;

/// Ids reserved per request to the controller (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Reserves `count` ids at the controller; returns the first (the block is
/// `[first, first + count)`), or why it could not.
pub type ReserveBlock = Box<dyn Fn(i64) -> Result<i64, String> + Send + Sync>;

/// This broker's current block and the way to get the next one.
pub struct ProducerIdManager {
    /// `[next, end)`: the ids still free in the current block.
    block: Mutex<(i64, i64)>,
    reserve: ReserveBlock,
}

impl ProducerIdManager {
    pub fn new(reserve: ReserveBlock) -> ProducerIdManager {
        ProducerIdManager {
            block: Mutex::new((0, 0)),
            reserve,
        }
    }

    /// A producer id never handed out before, by any broker. Reserves a new block
    /// (blocking on the controller) when the current one is used up; a failed
    /// reservation leaves the state as it was, so the next call asks again.
    pub fn next(&self) -> Result<i64, String> {
        let mut block = self.block.lock().unwrap_or_else(|e| e.into_inner());
        let (next, end) = *block;
        if next >= end {
            let first = (self.reserve)(PRODUCER_ID_BLOCK_SIZE)?;
            if first < 0 || first.checked_add(PRODUCER_ID_BLOCK_SIZE).is_none() {
                return Err(format!(
                    "the controller reserved an invalid block at {first}"
                ));
            }
            // Blocks only move forwards (the controller's record refuses to go back);
            // anything else would hand out an id twice.
            if first < end {
                return Err(format!(
                    "the controller reserved a block at {first}, overlapping the previous one ending at {end}"
                ));
            }
            *block = (first, first + PRODUCER_ID_BLOCK_SIZE);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A controller that hands out consecutive blocks, counting its writes.
    fn controller() -> (Arc<AtomicI64>, Arc<AtomicUsize>, ReserveBlock) {
        let next = Arc::new(AtomicI64::new(0));
        let writes = Arc::new(AtomicUsize::new(0));
        let (n, w) = (next.clone(), writes.clone());
        let reserve: ReserveBlock = Box::new(move |count| {
            w.fetch_add(1, Ordering::SeqCst);
            Ok(n.fetch_add(count, Ordering::SeqCst))
        });
        (next, writes, reserve)
    }

    #[test]
    fn one_controller_write_per_block_and_no_id_twice() {
        let (_, writes, reserve) = controller();
        let ids = ProducerIdManager::new(reserve);
        let got: Vec<i64> = (0..2 * PRODUCER_ID_BLOCK_SIZE + 1)
            .map(|_| ids.next().unwrap())
            .collect();
        assert_eq!(got, (0..2 * PRODUCER_ID_BLOCK_SIZE + 1).collect::<Vec<_>>());
        assert_eq!(writes.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn two_brokers_never_share_an_id_and_a_restart_skips_the_rest_of_its_block() {
        let (next, _, reserve) = controller();
        let shared = Arc::new(reserve);
        let of = |r: &Arc<ReserveBlock>| {
            let r = r.clone();
            ProducerIdManager::new(Box::new(move |c| r(c)))
        };
        let (a, b) = (of(&shared), of(&shared));
        let first_a = a.next().unwrap();
        let first_b = b.next().unwrap();
        assert_eq!((first_a, first_b), (0, PRODUCER_ID_BLOCK_SIZE));
        // "Restart" a: its new manager gets a fresh block past everything handed out.
        let a = of(&shared);
        assert_eq!(a.next().unwrap(), 2 * PRODUCER_ID_BLOCK_SIZE);
        assert_eq!(next.load(Ordering::SeqCst), 3 * PRODUCER_ID_BLOCK_SIZE);
    }

    #[test]
    fn a_failed_reservation_is_asked_again_next_time() {
        let fail = Arc::new(AtomicUsize::new(1));
        let f = fail.clone();
        let ids = ProducerIdManager::new(Box::new(move |_| {
            if f.fetch_sub(1, Ordering::SeqCst) > 0 {
                Err("no quorum".into())
            } else {
                Ok(5000)
            }
        }));
        assert_eq!(ids.next().unwrap_err(), "no quorum");
        assert_eq!(ids.next().unwrap(), 5000);
        assert_eq!(ids.next().unwrap(), 5001);
    }
}
