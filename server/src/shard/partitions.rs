//! The partitions a shard owns, keyed by topic and partition index.
//!
//! Owned by one shard (inside its `RefCell`). A lookup borrows the topic name from the request
//! and allocates nothing: topics map (by their interned name, an `Rc<str>` shared by the
//! topic's entries) to a vector indexed by partition number, since partition numbers are dense
//! (0..count).

use std::collections::HashMap;
use std::rc::Rc;

use ringtail_engine::Partition;

/// A partition of a topic: the key of a shard's logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopicPartition {
    /// Interned: cloning a key copies a pointer, not the name.
    pub topic: Rc<str>,
    pub partition: i32,
}

#[derive(Default)]
pub struct PartitionMap {
    topics: HashMap<Rc<str>, Vec<Option<Rc<Partition>>>>,
}

impl PartitionMap {
    pub fn get(&self, topic: &str, partition: i32) -> Option<&Rc<Partition>> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.get(index)?.as_ref()
    }

    /// Adds (or replaces) the log of `topic`'s partition `partition` (which must be >= 0).
    pub fn insert(&mut self, topic: &str, partition: i32, log: Rc<Partition>) {
        let index = usize::try_from(partition).expect("partition indexes are not negative");
        let slots = match self.topics.get_mut(topic) {
            Some(slots) => slots,
            None => self.topics.entry(Rc::from(topic)).or_default(),
        };
        if slots.len() <= index {
            slots.resize(index + 1, None);
        }
        slots[index] = Some(log);
    }

    /// Removes one partition's log, returning it.
    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get_mut(topic)?.get_mut(index)?.take()
    }

    /// Removes every partition of `topic`, returning them with their keys.
    pub fn remove_topic(&mut self, topic: &str) -> Vec<(TopicPartition, Rc<Partition>)> {
        let Some((name, slots)) = self.topics.remove_entry(topic) else {
            return Vec::new();
        };
        slots
            .into_iter()
            .enumerate()
            .filter_map(|(index, log)| {
                let key = TopicPartition {
                    topic: name.clone(),
                    partition: index as i32,
                };
                log.map(|log| (key, log))
            })
            .collect()
    }

    /// Every log with its key, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (TopicPartition, &Rc<Partition>)> {
        self.topics.iter().flat_map(|(name, slots)| {
            slots.iter().enumerate().filter_map(move |(index, log)| {
                let key = TopicPartition {
                    topic: name.clone(),
                    partition: index as i32,
                };
                log.as_ref().map(|log| (key, log))
            })
        })
    }

    /// Every log, in no particular order.
    pub fn logs(&self) -> impl Iterator<Item = &Rc<Partition>> {
        self.topics.values().flatten().flatten()
    }

    /// Removes and returns every log.
    pub fn take_all(&mut self) -> Vec<Rc<Partition>> {
        std::mem::take(&mut self.topics)
            .into_values()
            .flatten()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringtail_engine::io::{Runtime, RuntimeConfig};
    use ringtail_engine::storage::sim::SimDisk;
    use ringtail_engine::LogConfig;

    #[test]
    fn lookups_by_borrowed_name_and_index() {
        let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
        runtime.block_on(async {
            let disk = SimDisk::new(1);
            let open = |dir: &'static str| {
                Partition::open_on(
                    disk.storage(),
                    std::path::Path::new(dir),
                    LogConfig::default(),
                )
            };
            let mut map = PartitionMap::default();
            let a0 = open("/a-0").await.expect("open");
            let a2 = open("/a-2").await.expect("open");
            let b0 = open("/b-0").await.expect("open");
            map.insert("a", 2, a2.clone());
            map.insert("a", 0, a0.clone());
            map.insert("b", 0, b0.clone());
            assert!(Rc::ptr_eq(map.get("a", 0).expect("a-0"), &a0));
            assert!(Rc::ptr_eq(map.get("a", 2).expect("a-2"), &a2));
            assert!(map.get("a", 1).is_none(), "a gap");
            assert!(map.get("a", 3).is_none() && map.get("a", -1).is_none());
            assert!(map.get("c", 0).is_none());
            assert_eq!(map.logs().count(), 3);
            let mut keys: Vec<(String, i32)> = map
                .entries()
                .map(|(k, log)| {
                    assert!(Rc::ptr_eq(
                        log,
                        map.get(&k.topic, k.partition).expect("listed")
                    ));
                    (k.topic.to_string(), k.partition)
                })
                .collect();
            keys.sort();
            assert_eq!(keys, [("a".into(), 0), ("a".into(), 2), ("b".into(), 0)]);
            let removed = map.remove_topic("a");
            let keys: Vec<i32> = removed.iter().map(|(k, _)| k.partition).collect();
            assert_eq!(keys, vec![0, 2]);
            assert!(removed.iter().all(|(k, _)| &*k.topic == "a"));
            assert!(map.get("a", 0).is_none());
            assert_eq!(map.take_all().len(), 1);
            assert_eq!(map.logs().count(), 0);
            for log in [a0, a2, b0] {
                log.close().await.expect("close");
            }
        });
    }
}
