//! `rendermesh cache stat|ls|get|verify|gc`: the node's on-disk cache (`<data_dir>/cache`),
//! opened directly. sled lets one process at a time open it, so these commands refuse (with
//! one line) while a node — or an in-process submit — uses the same data dir.
//!
//! It turns an entry back into JSON by its stored kind (a [`Probe`], whose
//! [`CacheValue`](rendermesh_cache::CacheValue) impl sits beside it, or the protocol's types).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use rendermesh_cache::{Cache, RawEntry, StoreError, StoredKind};
use rendermesh_protocol::{
    codec, BeatGrid, CacheKey, CacheKind, FileLooks, FileOutput, SceneList, SceneScores,
    ShardOutput,
};

use crate::api::client::Client;
use crate::api::{connect, read_control};
use crate::cli::{CacheCmd, CacheGcArgs, CacheGetArgs, CacheLsArgs, CacheStatArgs};
use crate::config::NodeConfig;
use crate::engine::probe::Probe;

/// Exit status of `cache verify` when it found (and dropped) bad records.
const EXIT_BAD: i32 = 2;

pub fn run(cfg: NodeConfig, sub: CacheCmd) -> anyhow::Result<i32> {
    let cache = match (open(&cfg.data_dir), &sub) {
        (Ok(c), _) => c,
        // a running node lists its entries through its API
        (Err(e), CacheCmd::Ls(a)) if !a.blobs => match connect(&cfg.data_dir) {
            Some((_, client)) => return ls_remote(&client, a),
            None => return Err(e),
        },
        (Err(e), _) => return Err(e),
    };
    match sub {
        CacheCmd::Stat(a) => stat(&cfg, cache.as_ref(), a),
        CacheCmd::Ls(a) => ls(cache.as_ref(), a),
        CacheCmd::Get(a) => get(cache.as_ref(), a),
        CacheCmd::Verify => verify(cache.as_ref()),
        CacheCmd::Gc(a) => gc(cache.as_ref(), a),
    }
}

/// The cache of a data dir; `None` when there is none yet (nothing was ever cached there).
fn open(data_dir: &Path) -> anyhow::Result<Option<Cache>> {
    let dir = data_dir.join("cache");
    if !dir.join("db").exists() {
        tracing::info!(dir = %dir.display(), "no cache yet");
        return Ok(None);
    }
    match Cache::open(&dir) {
        Ok(c) => Ok(Some(c)),
        Err(StoreError::Locked { .. }) => match read_control(data_dir) {
            Some((info, _)) => anyhow::bail!(
                "a node is running with data dir {} (pid {}, control API {}); stop it or use its API",
                data_dir.display(),
                info.pid,
                info.addr
            ),
            None => anyhow::bail!(
                "the cache in {} is in use by a running rendermesh node or submit; stop it or use the node's API",
                data_dir.display()
            ),
        },
        Err(e) => Err(e).with_context(|| format!("{}: cannot open the cache", dir.display())),
    }
}

/// An entry's value as JSON, when its kind is one this build knows.
fn decode_json(raw: &RawEntry) -> Option<Result<serde_json::Value, String>> {
    fn json<T: serde::de::DeserializeOwned + serde::Serialize>(
        payload: &[u8],
    ) -> Result<serde_json::Value, String> {
        let v: T = codec::decode(payload).map_err(|e| e.to_string())?;
        serde_json::to_value(&v).map_err(|e| e.to_string())
    }
    match raw.kind {
        StoredKind::Known(CacheKind::Probe) => Some(json::<Probe>(&raw.payload)),
        StoredKind::Known(CacheKind::SceneShard) => Some(json::<SceneScores>(&raw.payload)),
        StoredKind::Known(CacheKind::SceneList) => Some(json::<SceneList>(&raw.payload)),
        StoredKind::Known(CacheKind::Segment) => Some(json::<ShardOutput>(&raw.payload)),
        StoredKind::Known(CacheKind::BeatGrid) => Some(json::<BeatGrid>(&raw.payload)),
        StoredKind::Known(CacheKind::FrameLooks) => Some(json::<FileLooks>(&raw.payload)),
        StoredKind::Known(CacheKind::FileOutput) => Some(json::<FileOutput>(&raw.payload)),
        StoredKind::Other(_) | StoredKind::Unmarked => None,
    }
}

/// Whether a verified payload decodes as its kind's type (unknown kinds pass).
fn decodes(raw: &RawEntry) -> Result<(), String> {
    fn check<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<(), String> {
        codec::decode::<T>(payload)
            .map(|_| ())
            .map_err(|e| format!("does not decode: {e}"))
    }
    match raw.kind {
        StoredKind::Known(CacheKind::Probe) => check::<Probe>(&raw.payload),
        StoredKind::Known(CacheKind::SceneShard) => check::<SceneScores>(&raw.payload),
        StoredKind::Known(CacheKind::SceneList) => check::<SceneList>(&raw.payload),
        StoredKind::Known(CacheKind::Segment) => check::<ShardOutput>(&raw.payload),
        StoredKind::Known(CacheKind::BeatGrid) => check::<BeatGrid>(&raw.payload),
        StoredKind::Known(CacheKind::FrameLooks) => check::<FileLooks>(&raw.payload),
        StoredKind::Known(CacheKind::FileOutput) => check::<FileOutput>(&raw.payload),
        StoredKind::Other(_) | StoredKind::Unmarked => Ok(()),
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn stat(cfg: &NodeConfig, cache: Option<&Cache>, a: CacheStatArgs) -> anyhow::Result<i32> {
    let dir = cfg.data_dir.join("cache");
    let (mut entries, mut entry_bytes) = (0usize, 0u64);
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut blobs = rendermesh_cache::BlobStats::default();
    if let Some(c) = cache {
        for e in c.entries.list()? {
            entries += 1;
            entry_bytes += e.bytes as u64;
            *by_kind.entry(e.kind.to_string()).or_default() += 1;
        }
        blobs = c.blobs.stats();
    }
    let quota = cfg.blob_quota_bytes;
    if a.json {
        let doc = serde_json::json!({
            "dir": dir,
            "entries": { "count": entries, "bytes": entry_bytes, "by_kind": by_kind },
            "blobs": { "count": blobs.blobs, "bytes": blobs.bytes },
            "blob_quota_bytes": quota,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("cache    {}", dir.display());
    if kinds.is_empty() {
        println!("entries  {entries}");
    } else {
        println!(
            "entries  {entries} ({}), {}",
            kinds.join(", "),
            human(entry_bytes)
        );
    }
    println!("blobs    {}, {}", blobs.blobs, human(blobs.bytes));
    if quota == 0 {
        println!("quota    unbounded");
    } else {
        println!(
            "quota    {} ({:.0}% used)",
            human(quota),
            100.0 * blobs.bytes as f64 / quota as f64
        );
    }
    Ok(0)
}

fn ls(cache: Option<&Cache>, a: CacheLsArgs) -> anyhow::Result<i32> {
    let Some(c) = cache else { return Ok(0) };
    if a.blobs {
        for (id, size) in c.blobs.list() {
            println!("{id}  {size}");
        }
        return Ok(0);
    }
    for e in c.entries.list()? {
        let kind = e.kind.to_string();
        if a.kind.as_deref().is_some_and(|k| k != kind) {
            continue;
        }
        if a.long {
            println!("{}  {:<11}  {}", e.key, kind, e.bytes);
        } else {
            println!("{}", e.key);
        }
    }
    Ok(0)
}

fn ls_remote(client: &Client, a: &CacheLsArgs) -> anyhow::Result<i32> {
    for e in client.cache_entries()? {
        if a.kind.as_deref().is_some_and(|k| k != e.kind) {
            continue;
        }
        if a.long {
            println!("{}  {:<11}  {}", e.key, e.kind, e.bytes);
        } else {
            println!("{}", e.key);
        }
    }
    Ok(0)
}

fn get(cache: Option<&Cache>, a: CacheGetArgs) -> anyhow::Result<i32> {
    let key: CacheKey = a
        .key
        .parse()
        .map_err(|e| anyhow::anyhow!("bad key {:?}: {e}", a.key))?;
    let raw = match cache {
        Some(c) => c.entries.get_raw(&key)?,
        None => None,
    };
    let Some(raw) = raw else {
        anyhow::bail!("no entry {key} (missing, or corrupt and now dropped)");
    };
    let value = match decode_json(&raw) {
        Some(Ok(v)) => v,
        Some(Err(e)) => anyhow::bail!("entry {key} ({}) does not decode: {e}", raw.kind),
        None => serde_json::Value::Null,
    };
    let doc = serde_json::json!({
        "key": key.to_string(),
        "kind": raw.kind.to_string(),
        "format": raw.format,
        "bytes": raw.payload.len(),
        "value": value,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(0)
}

fn verify(cache: Option<&Cache>) -> anyhow::Result<i32> {
    let Some(c) = cache else {
        println!("entries  0 checked, 0 bad");
        println!("blobs    0 checked, 0 bad");
        return Ok(0);
    };
    let entries = c.entries.verify(decodes)?;
    c.entries.flush()?;
    let blobs = c.blobs.verify_all()?;
    for b in &entries.bad {
        println!("dropped entry {}: {}", b.key, b.why);
    }
    for id in &blobs.bad {
        println!("removed blob {id}: content does not match its id");
    }
    println!(
        "entries  {} checked, {} bad",
        entries.checked,
        entries.bad.len()
    );
    println!(
        "blobs    {} checked ({}), {} bad",
        blobs.checked,
        human(blobs.bytes),
        blobs.bad.len()
    );
    if entries.bad.is_empty() && blobs.bad.is_empty() {
        Ok(0)
    } else {
        Ok(EXIT_BAD)
    }
}

fn gc(cache: Option<&Cache>, a: CacheGcArgs) -> anyhow::Result<i32> {
    let Some(c) = cache else {
        println!("freed 0 bytes");
        return Ok(0);
    };
    let mut r = match a.keep {
        Some(keep) => c.blobs.trim_to(keep)?,
        None => c.blobs.gc()?,
    };
    // no node holds this store now: no fetch will resume its partial files
    let (files, bytes) =
        rendermesh_mesh::transfer::remove_stale_partials(&c.blobs, std::time::Duration::ZERO)
            .with_context(|| {
                format!(
                    "{}: cannot remove partial fetches",
                    c.blobs.root().display()
                )
            })?;
    r.temp_files += files;
    r.temp_bytes += bytes;
    let left = c.blobs.stats();
    println!(
        "freed {} bytes ({}): {} blobs, {} temp files; {} blobs ({}) left",
        r.freed(),
        human(r.freed()),
        r.blobs,
        r.temp_files,
        left.blobs,
        human(left.bytes)
    );
    Ok(0)
}
