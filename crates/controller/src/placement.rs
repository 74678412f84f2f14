//! Where new partitions' replicas go (Kafka's replica placement for CreateTopics and
//! CreatePartitions without an explicit assignment).
//!
//! Without racks, replicas go round-robin over the live brokers: partition `p` starts
//! at broker `p`, so leaders spread evenly. When brokers name a `broker.rack`, Kafka's
//! rack-aware rule applies (`AdminUtils.assignReplicasToBrokersRackAware`): the brokers
//! are listed alternating between racks, each partition's leader walks that list, and
//! each further replica goes to the next broker on a rack that holds none of the
//! partition's replicas yet, so a partition survives the loss of a whole rack once it
//! has as many replicas as there are racks. Brokers without a rack count as one rack
//! of their own, as KRaft's placer treats them.
//!
//! Placement is deterministic (Kafka starts at a random broker): the same cluster and
//! request always give the same assignment, which tests and operators can predict.

use std::collections::{BTreeMap, BTreeSet};

use crate::image::MetadataImage;

/// The replicas of partition `partition` (0-based, counted over the topic) with
/// replication factor `rf` over `brokers` (sorted, live, at least `rf` of them).
pub fn place(image: &MetadataImage, brokers: &[i32], partition: usize, rf: usize) -> Vec<i32> {
    assert!(
        rf <= brokers.len(),
        "placement needs {rf} brokers, has {}",
        brokers.len()
    );
    let rack_of = |b: &i32| image.brokers.get(b).and_then(|info| info.rack.clone());
    if brokers.iter().all(|b| rack_of(b).is_none()) {
        return round_robin(brokers, partition, rf);
    }
    let racks: BTreeMap<i32, Option<String>> = brokers.iter().map(|b| (*b, rack_of(b))).collect();
    rack_aware(&racks, partition, rf)
}

fn round_robin(brokers: &[i32], partition: usize, rf: usize) -> Vec<i32> {
    (0..rf)
        .map(|r| brokers[(partition + r) % brokers.len()])
        .collect()
}

/// Kafka's `getRackAlternatedBrokerList`: the first broker of each rack (racks in
/// name order), then the second of each, and so on.
fn rack_alternated(racks: &BTreeMap<i32, Option<String>>) -> Vec<i32> {
    let mut by_rack: BTreeMap<&Option<String>, Vec<i32>> = BTreeMap::new();
    for (broker, rack) in racks {
        by_rack.entry(rack).or_default().push(*broker);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| {
            by_rack
                .values()
                .filter_map(move |brokers| brokers.get(i).copied())
        })
        .collect()
}

/// Kafka's rack-aware assignment with start index 0 and replica shift 0.
fn rack_aware(racks: &BTreeMap<i32, Option<String>>, partition: usize, rf: usize) -> Vec<i32> {
    let arranged = rack_alternated(racks);
    let n = arranged.len();
    let rack_count = racks.values().collect::<BTreeSet<_>>().len();
    // The shift moves by one every time the partitions have gone once round the brokers.
    let shift = partition / n;
    let first = partition % n;
    let leader = arranged[first];
    let mut replicas = vec![leader];
    let mut racks_used = BTreeSet::from([&racks[&leader]]);
    let mut k = 0usize;
    while replicas.len() < rf {
        let offset = if n > 1 {
            1 + (shift * rack_count + k) % (n - 1)
        } else {
            0
        };
        let broker = arranged[(first + offset) % n];
        let rack = &racks[&broker];
        k += 1;
        if (!racks_used.contains(rack) || racks_used.len() == rack_count)
            && !replicas.contains(&broker)
        {
            replicas.push(broker);
            racks_used.insert(rack);
        }
        assert!(k <= 4 * n * n, "placement found no broker for {partition}");
    }
    replicas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::MetadataRecord;

    fn image(racks: &[(i32, Option<&str>)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (b, rack) in racks {
            image
                .replay(&MetadataRecord::RegisterBroker {
                    node_id: *b,
                    host: "localhost".into(),
                    port: 9000 + b,
                    rack: rack.map(str::to_string),
                })
                .unwrap();
        }
        image
    }

    fn rack_of(image: &MetadataImage, b: i32) -> Option<String> {
        image.brokers[&b].rack.clone()
    }

    #[test]
    fn without_racks_replicas_go_round_robin() {
        let image = image(&[(1, None), (2, None), (3, None)]);
        let placed: Vec<Vec<i32>> = (0..4).map(|p| place(&image, &[1, 2, 3], p, 2)).collect();
        assert_eq!(placed, vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]);
    }

    #[test]
    fn with_racks_every_partition_spans_as_many_racks_as_it_can() {
        // Racks listed in an order that round-robin would put both replicas on one rack.
        let image = image(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
        ]);
        let brokers = [1, 2, 3, 4];
        let mut leaders = BTreeMap::new();
        for p in 0..16 {
            let replicas = place(&image, &brokers, p, 2);
            assert_eq!(replicas.len(), 2);
            assert_ne!(replicas[0], replicas[1]);
            assert_ne!(
                rack_of(&image, replicas[0]),
                rack_of(&image, replicas[1]),
                "partition {p} on {replicas:?} spans both racks"
            );
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(
            leaders.values().copied().collect::<Vec<_>>(),
            vec![4, 4, 4, 4],
            "leaders spread evenly"
        );
        // Replication factor above the rack count: every rack used, no broker twice.
        let three = place(&image, &brokers, 5, 3);
        let racks: BTreeSet<_> = three.iter().map(|b| rack_of(&image, *b)).collect();
        assert_eq!((three.len(), racks.len()), (3, 2));
        assert_eq!(three.iter().collect::<BTreeSet<_>>().len(), 3);
    }

    #[test]
    fn uneven_racks_and_brokers_without_a_rack() {
        let image = image(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("a")),
            (4, Some("b")),
            (5, None),
        ]);
        for p in 0..10 {
            let replicas = place(&image, &[1, 2, 3, 4, 5], p, 3);
            let racks: BTreeSet<_> = replicas.iter().map(|b| rack_of(&image, *b)).collect();
            assert_eq!(
                racks.len(),
                3,
                "partition {p} on {replicas:?}: a, b and no rack"
            );
        }
        assert_eq!(
            rack_alternated(
                &[
                    (1, Some("a".to_string())),
                    (2, Some("a".to_string())),
                    (3, Some("b".to_string()))
                ]
                .into()
            ),
            vec![1, 3, 2]
        );
    }
}
