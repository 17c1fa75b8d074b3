//! How an HA group shares the instances (section 10): every node computes the same
//! assignment from the same two lists (the configured instances and the live nodes seen in
//! the store), with no coordinator and no messages between nodes.
//!
//! The rule is rendezvous hashing with bounded load: each instance ranks the nodes by a
//! hash of (node, instance) and goes to the highest-ranked node that still has room, room
//! being ⌈instances / nodes⌉. So with N nodes each holds ⌈M/N⌉ or ⌊M/N⌋ of M instances
//! (give or take the last one), and when a node joins or leaves only about 1/N of the
//! instances move: the rest keep their holder, and with it their lease and fencing number.
//!
//! Pure: the daemon turns the answer into leases taken and leases handed over.

use std::collections::HashMap;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The node each instance belongs to. `nodes` empty: no assignment at all.
pub fn assign<'a>(instances: &'a [String], nodes: &'a [String]) -> HashMap<&'a str, &'a str> {
    let mut out = HashMap::with_capacity(instances.len());
    if nodes.is_empty() {
        return out;
    }
    let mut nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let room = instances.len().div_ceil(nodes.len());
    let mut load = vec![0usize; nodes.len()];
    // A fixed order, the same on every node whatever the config's order: by the
    // instance's own hash, then its name.
    let mut order: Vec<&str> = instances.iter().map(String::as_str).collect();
    order.sort_unstable_by_key(|i| (score("", i), *i));
    order.dedup();
    for instance in order {
        let best = (0..nodes.len())
            .filter(|&n| load[n] < room)
            .max_by_key(|&n| (score(nodes[n], instance), std::cmp::Reverse(nodes[n])));
        if let Some(n) = best {
            load[n] += 1;
            out.insert(instance, nodes[n]);
        }
    }
    out
}

/// The rendezvous score of `node` for `instance`: stable across versions and machines
/// (xxh3 with a fixed seed over the two names, separated so "ab"+"c" ≠ "a"+"bc").
fn score(node: &str, instance: &str) -> u64 {
    let mut key = Vec::with_capacity(node.len() + instance.len() + 1);
    key.extend_from_slice(node.as_bytes());
    key.push(0);
    key.extend_from_slice(instance.as_bytes());
    xxh3_64_with_seed(&key, 0x1b0c_5a11)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
    }

    fn counts<'a>(a: &HashMap<&'a str, &'a str>) -> Vec<usize> {
        let mut by: HashMap<&str, usize> = HashMap::new();
        for node in a.values() {
            *by.entry(node).or_default() += 1;
        }
        let mut c: Vec<usize> = by.into_values().collect();
        c.sort_unstable();
        c
    }

    #[test]
    fn three_nodes_hold_a_third_each_and_two_hold_half() {
        let instances = names("shop", 1000);
        let three = names("node", 3);
        let a = assign(&instances, &three);
        assert_eq!(a.len(), 1000, "every instance has a holder");
        let c = counts(&a);
        assert!(c.iter().all(|&n| (332..=334).contains(&n)), "{c:?}");
        let two = names("node", 2);
        assert_eq!(counts(&assign(&instances, &two)), [500, 500]);
        let one = names("node", 1);
        assert_eq!(counts(&assign(&instances, &one)), [1000]);
    }

    #[test]
    fn no_node_ever_holds_more_than_its_share_plus_one() {
        for m in [1usize, 2, 7, 10, 99, 1000] {
            for n in 1..=5usize {
                let (instances, nodes) = (names("i", m), names("n", n));
                let a = assign(&instances, &nodes);
                let most = counts(&a).into_iter().max().unwrap_or(0);
                assert!(most <= m.div_ceil(n) + 1, "{m} over {n}: {most}");
                assert_eq!(a.len(), m);
            }
        }
    }

    #[test]
    fn every_node_computes_the_same_answer_whatever_the_order_it_reads() {
        let instances = names("shop", 300);
        let nodes = names("node", 3);
        let mut shuffled_i = instances.clone();
        shuffled_i.reverse();
        let mut shuffled_n = nodes.clone();
        shuffled_n.rotate_left(1);
        assert_eq!(assign(&instances, &nodes), assign(&shuffled_i, &shuffled_n));
    }

    #[test]
    fn a_join_or_a_leave_moves_few_instances() {
        let instances = names("shop", 1000);
        let two = names("node", 2);
        let three = names("node", 3);
        let before = assign(&instances, &two);
        let after = assign(&instances, &three);
        let moved = instances
            .iter()
            .filter(|i| before[i.as_str()] != after[i.as_str()])
            .count();
        // The newcomer's third must move; bounded load moves a few more, never most.
        assert!((333..=500).contains(&moved), "moved {moved}");
        // A node leaving: its instances move, and few others.
        let left: Vec<String> = vec!["node-0000".into(), "node-0002".into()];
        let after_leave = assign(&instances, &left);
        let moved = instances
            .iter()
            .filter(|i| after[i.as_str()] != after_leave[i.as_str()])
            .count();
        assert!((333..=500).contains(&moved), "moved {moved}");
    }

    #[test]
    fn no_nodes_no_assignment() {
        assert!(assign(&names("shop", 3), &[]).is_empty());
    }
}
