//! Partition directories and whose they are: each holds Kafka's `partition.metadata` file naming
//! its topic id, so a directory is only ever opened as a partition of the topic it was created
//! for. Deleting renames a directory to `<topic>-<n>.<id>-delete` (atomic) before removing it;
//! the start-up sweep finishes such removals and deals with directories no topic owns.
//!
//! Blocking file-system calls (no fsync among them at creation: those go through the ring): made
//! when a partition is created, opened at start or deleted, never on the request path of a
//! produce or fetch.

use std::fs;
use std::io;

use bytes::Bytes;
use ringtail_engine::storage::{OpenMode, OsStorage, Storage};
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::topics::{hex, new_topic_id, Registry, TopicId};

/// Kafka's name for the file that ties a partition directory to its topic id.
pub const METADATA_FILE: &str = "partition.metadata";

/// Kafka's `Uuid.toString()`: URL-safe base64 of the 16 bytes, without padding (22 characters).
pub fn kafka_uuid(id: &TopicId) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn parse_kafka_uuid(text: &str) -> Option<TopicId> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.as_bytes();
    if text.len() != 22 {
        return None;
    }
    let mut id = [0u8; 16];
    let mut out = 0;
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            id[out] = (n >> (16 - 8 * i)) as u8;
            out += 1;
        }
    }
    Some(id)
}

/// Writes `partition.metadata` (version 0 and the topic id, as Kafka does) durably: a temporary
/// file written and fdatasynced through the ring, renamed, and the directory synced through the
/// ring, so creating many partitions never blocks the shard on an fsync.
pub async fn write_metadata(storage: &dyn Storage, dir: &Path, id: &TopicId) -> io::Result<()> {
    let path = dir.join(METADATA_FILE);
    let tmp = dir.join(format!("{METADATA_FILE}.tmp"));
    let text = format!("version: 0\ntopic_id: {}\n", kafka_uuid(id));
    let file = storage.open(&tmp, OpenMode::Truncate)?;
    storage
        .write_at(file.clone(), vec![Bytes::from(text)], 0)
        .await?;
    storage.fdatasync(file).await?;
    storage.rename(&tmp, &path)?;
    storage.sync_dir(dir).await
}

/// The topic id a partition directory belongs to: Ok(None) when it has no metadata file.
pub fn read_metadata(dir: &Path) -> io::Result<Option<TopicId>> {
    read_metadata_on(&OsStorage, dir)
}

/// [`read_metadata`] on the given storage.
pub fn read_metadata_on(storage: &dyn Storage, dir: &Path) -> io::Result<Option<TopicId>> {
    let text = match storage.read_file(&dir.join(METADATA_FILE)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("topic_id: "))
        .and_then(|t| parse_kafka_uuid(t.trim()));
    match id {
        Some(id) => Ok(Some(id)),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is damaged", dir.join(METADATA_FILE).display()),
        )),
    }
}

/// Renames `dir` aside with `suffix` (`delete` or `stray`) and a unique id, durably.
fn rename_aside(dir: &Path, suffix: &str) -> io::Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = dir.with_file_name(aside_name(&name, &hex(&new_topic_id()), suffix));
    fs::rename(dir, &aside)?;
    if let Some(parent) = dir.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(aside)
}

/// `<name>.<unique>-<suffix>`, with `name` cut short (as Kafka does) so the whole stays within
/// the 255 bytes a file name may have: topic names reach 249 characters.
fn aside_name(name: &str, unique: &str, suffix: &str) -> String {
    const NAME_MAX: usize = 255;
    let tail = format!(".{unique}-{suffix}");
    let mut keep = name.len().min(NAME_MAX - tail.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{tail}", &name[..keep])
}

/// Deletes a partition directory as Kafka does: an atomic rename to a `-delete` name first (a
/// crash after it leaves nothing that can be adopted), then removal.
pub fn delete(dir: &Path) -> io::Result<()> {
    let doomed = match rename_aside(dir, "delete") {
        Ok(doomed) => doomed,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    fs::remove_dir_all(doomed)
}

/// Moves a directory that must not be opened as the partition asked for out of the way, loudly.
pub fn set_aside(dir: &Path, why: &str) -> io::Result<()> {
    let aside = rename_aside(dir, "stray")?;
    error!(
        "{} {why}: moved to {} and not used; remove it, or restore topics.meta if it was lost",
        dir.display(),
        aside.display()
    );
    Ok(())
}

/// A `<topic>-<n>` directory name: the topic and partition, if it is one.
fn partition_of(name: &str) -> Option<(&str, i32)> {
    let (topic, index) = name.rsplit_once('-')?;
    if topic.is_empty() || index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic, index.parse().ok()?))
}

/// At start, before any partition opens: finishes interrupted deletions (`*-delete`), and deals
/// with partition directories that no topic in the registry owns. With a `topics.meta` on disk,
/// one whose metadata names a topic id the registry no longer has is what a crash in the middle
/// of DeleteTopics left: it is deleted. Any other (no `topics.meta`, no metadata file, or a
/// partition the registry does not have) is set aside as `-stray`, never adopted, and reported.
pub fn sweep(data_dir: &Path, registry: &Registry, registry_on_disk: bool) -> io::Result<()> {
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with("-delete") {
            info!(
                "removing {} (a deletion interrupted by a crash)",
                path.display()
            );
            fs::remove_dir_all(&path)?;
            continue;
        }
        if name.ends_with("-stray") || name.starts_with(crate::group::offsets::INTERNAL_PREFIX) {
            continue;
        }
        let Some((topic_name, index)) = partition_of(&name) else {
            continue;
        };
        let owned = registry
            .get(topic_name)
            .filter(|t| usize::try_from(index).is_ok_and(|i| i < t.shards.len()));
        if owned.is_some() {
            continue; // its metadata file is checked when the partition opens
        }
        match read_metadata(&path) {
            Ok(Some(id)) if registry_on_disk && registry.by_id(&id).is_none() => {
                warn!(
                    "deleting {}: its topic (id {}) was deleted, the crash came before the directory went",
                    path.display(),
                    kafka_uuid(&id)
                );
                delete(&path)?;
            }
            _ => set_aside(&path, "belongs to no topic in topics.meta")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_are_written_as_kafka_writes_them() {
        // Kafka's Uuid.toString() of bytes 0..16: URL-safe base64, no padding.
        let id: TopicId = std::array::from_fn(|i| i as u8);
        assert_eq!(kafka_uuid(&id), "AAECAwQFBgcICQoLDA0ODw");
        let id = [0xff; 16];
        assert_eq!(kafka_uuid(&id), "_____________________w");
        for _ in 0..100 {
            let id = new_topic_id();
            assert_eq!(parse_kafka_uuid(&kafka_uuid(&id)), Some(id));
        }
        assert_eq!(parse_kafka_uuid("short"), None);
    }

    #[test]
    fn names_set_aside_fit_in_a_file_name() {
        let unique = hex(&new_topic_id());
        assert_eq!(
            aside_name("t-0", &unique, "delete"),
            format!("t-0.{unique}-delete")
        );
        let long = format!("{}-7", "x".repeat(249));
        let aside = aside_name(&long, &unique, "stray");
        assert_eq!(aside.len(), 255);
        assert!(aside.ends_with(&format!(".{unique}-stray")));
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(&long);
        fs::create_dir(&path).expect("create a 251-byte directory name");
        delete(&path).expect("a long-named partition directory can be deleted");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn partition_directory_names_parse() {
        assert_eq!(partition_of("orders-3"), Some(("orders", 3)));
        assert_eq!(partition_of("a-b-12"), Some(("a-b", 12)));
        assert_eq!(partition_of("orders"), None);
        assert_eq!(partition_of("orders-"), None);
        assert_eq!(partition_of("orders-x"), None);
    }

    #[test]
    fn metadata_round_trips_and_damage_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(read_metadata(dir.path()).expect("read"), None);
        let id = new_topic_id();
        let runtime = ringtail_engine::io::Runtime::new(Default::default()).expect("runtime");
        runtime
            .block_on(write_metadata(&OsStorage, dir.path(), &id))
            .expect("write");
        assert_eq!(read_metadata(dir.path()).expect("read"), Some(id));
        fs::write(
            dir.path().join(METADATA_FILE),
            "version: 0\ntopic_id: ???\n",
        )
        .expect("write");
        assert!(read_metadata(dir.path()).is_err());
    }

    /// Written as the file system's own journal would keep it: a power failure right after the
    /// write returns loses nothing (the data was fdatasynced and the rename's directory synced).
    #[test]
    fn written_metadata_survives_a_power_failure() {
        use ringtail_engine::storage::sim::SimDisk;
        let disk = SimDisk::new(5);
        let dir = Path::new("/data/t-0");
        let id = new_topic_id();
        let runtime = ringtail_engine::io::Runtime::new(Default::default()).expect("runtime");
        runtime.block_on(async {
            disk.storage().create_dir_all(dir).expect("dir");
            write_metadata(&*disk.storage(), dir, &id)
                .await
                .expect("write");
        });
        drop(runtime);
        disk.crash();
        assert_eq!(
            read_metadata_on(&*disk.storage(), dir).expect("read"),
            Some(id)
        );
    }
}
