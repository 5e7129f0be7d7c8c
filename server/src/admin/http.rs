//! The `ringtail admin` commands that speak the broker's admin HTTP API (the metrics
//! listener): `shards` (per-core load and partitions) and `partition move`. A tiny HTTP/1.1
//! client over std's TcpStream.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{AdminArgs, AdminError};

/// (status, body) of one request to the admin API.
fn http(base: &str, method: &str, path: &str) -> Result<(u16, String), AdminError> {
    http_text(base, method, path).map_err(AdminError::AdminApi)
}

fn http_text(base: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("--admin-url {base:?}: expected http://HOST:PORT"))?;
    let host = rest.trim_end_matches('/');
    let mut stream = TcpStream::connect(host)
        .map_err(|e| format!("cannot reach the admin API at {base}: {e} (is the broker running with --metrics-listen there?)"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(180)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending to {base}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading from {base}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{base} answered something that is not HTTP"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{base} answered without a status"))?;
    Ok((status, body.to_string()))
}

/// Samples of the exposition: (name, labels, value).
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter_map(|pair| {
                    let (k, v) = pair.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some((name.to_string(), labels, value))
        })
        .collect()
}

pub fn shards(args: &AdminArgs) -> Result<(), AdminError> {
    let (status, text) = http(&args.admin_url, "GET", "/metrics")?;
    if status != 200 {
        return Err(AdminError::AdminApi(format!(
            "GET /metrics answered {status}"
        )));
    }
    let all = samples(&text);
    let per_shard = |name: &str| -> BTreeMap<usize, f64> {
        all.iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, l, v)| Some((l.get("shard")?.parse().ok()?, *v)))
            .collect()
    };
    let busy = per_shard("ringtail_shard_busy_seconds_total");
    let connections = per_shard("ringtail_shard_connections");
    let partitions = per_shard("ringtail_shard_partitions");
    // (shard, topic, partition) -> (messages in, size bytes), ordered for the table.
    let mut logs: BTreeMap<(usize, String, i32), (f64, f64)> = BTreeMap::new();
    for (name, labels, value) in &all {
        let slot = match name.as_str() {
            "ringtail_partition_messages_in_total" => 0,
            "ringtail_partition_size_bytes" => 1,
            _ => continue,
        };
        let key = (|| {
            let topic = labels.get("topic").filter(|t| !t.starts_with("__"))?;
            Some((
                labels.get("shard")?.parse().ok()?,
                topic.clone(),
                labels.get("partition")?.parse().ok()?,
            ))
        })();
        if let Some(key) = key {
            let entry = logs.entry(key).or_default();
            if slot == 0 {
                entry.0 = *value;
            } else {
                entry.1 = *value;
            }
        }
    }
    if args.json {
        let shard_items: Vec<String> = busy
            .iter()
            .map(|(s, b)| {
                format!(
                    "{{\"shard\": {s}, \"busy_seconds\": {b}, \"connections\": {}, \"partitions\": {}}}",
                    connections.get(s).copied().unwrap_or(0.0),
                    partitions.get(s).copied().unwrap_or(0.0)
                )
            })
            .collect();
        let log_items: Vec<String> = logs
            .iter()
            .map(|((s, t, p), (m, b))| {
                format!(
                    "{{\"shard\": {s}, \"topic\": {}, \"partition\": {p}, \"messages_in\": {m}, \"size_bytes\": {b}}}",
                    serde_json::Value::String(t.clone())
                )
            })
            .collect();
        say!(
            "{{\"shards\": [{}], \"partitions\": [{}]}}",
            shard_items.join(", "),
            log_items.join(", ")
        );
        return Ok(());
    }
    say!(
        "{:<6} {:>13} {:>12} {:>11}",
        "shard",
        "busy seconds",
        "connections",
        "partitions"
    );
    for (s, b) in &busy {
        say!(
            "{:<6} {:>13.3} {:>12} {:>11}",
            s,
            b,
            connections.get(s).copied().unwrap_or(0.0),
            partitions.get(s).copied().unwrap_or(0.0)
        );
    }
    say!(
        "\n{:<6} {:<30} {:>9} {:>14} {:>14}",
        "shard",
        "topic",
        "partition",
        "messages in",
        "size bytes"
    );
    for ((s, t, p), (m, b)) in &logs {
        say!("{s:<6} {t:<30} {p:>9} {m:>14} {b:>14}");
    }
    say!("\n(busy seconds are counters: two calls a minute apart give each core's busy fraction; Prometheus: rate(ringtail_shard_busy_seconds_total[1m]))");
    Ok(())
}

pub fn partition_move(args: &AdminArgs, target: &str, to: usize) -> Result<(), AdminError> {
    let (topic, partition) = target
        .rsplit_once('/')
        .and_then(|(t, p)| Some((t, p.parse::<i32>().ok()?)))
        .ok_or_else(|| {
            AdminError::Usage(format!(
                "{target:?}: expected TOPIC/PARTITION, e.g. orders/3"
            ))
        })?;
    let path = format!(
        "/v1/partitions/move?topic={}&partition={partition}&to_shard={to}",
        encode(topic)
    );
    let (status, body) = http(&args.admin_url, "POST", &path)?;
    let answer: serde_json::Value = serde_json::from_str(&body)
        .map_err(|_| AdminError::AdminApi(format!("the broker answered {status}: {body}")))?;
    if status != 200 {
        return Err(AdminError::AdminApi(
            answer["error"].as_str().unwrap_or(&body).to_string(),
        ));
    }
    if args.json {
        say!("{}", answer);
    } else {
        say!(
            "moved {topic}/{partition} from shard {} to shard {}",
            answer["from_shard"],
            answer["to_shard"]
        );
    }
    Ok(())
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_parse_labels_and_values() {
        let text = "# HELP x y\nringtail_shards 2\nringtail_shard_connections{shard=\"1\"} 3\nx{topic=\"a\",partition=\"0\",shard=\"1\"} 1.5\n";
        let s = super::samples(text);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].0, "ringtail_shards");
        assert_eq!(s[1].1["shard"], "1");
        assert_eq!(s[2].1["topic"], "a");
        assert_eq!(s[2].1["partition"], "0");
        assert_eq!(s[2].2, 1.5);
        assert_eq!(super::encode("a b/c"), "a%20b%2Fc");
    }
}
