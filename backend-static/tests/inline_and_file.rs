//! Inline list and watched file, on a paused clock (file I/O is real).

mod common;

use std::time::Duration;

use backend_static::StaticSource;
use common::*;
use discovery_core::{AliasKind, Health};

#[tokio::test(start_paused = true)]
async fn inline_list_is_published_once_with_every_field() {
    let reg = start(config(
        r#"
        peers = [
          { id = "walnut", addrs = ["/ip4/192.168.1.27/tcp/9000", "10.0.0.2:9000", "http://10.0.0.3:8080"],
            capabilities = ["go_development"], labels = { model = "llama3.1:8b" }, name = "Walnut", status = "online",
            aliases = [{ kind = "peer_id", value = "12D3KooWGBfVmtXPRmsNHU7bUbh6JXvMmzHjr8gnVtdQ1fpjUMGs" }] },
          { id = "acorn", addrs = ["[fd00::7]:9000"] },
          { id = "bare" },
        ]"#,
    ));
    assert!(reg.wait_first_sync(Duration::from_secs(5)).await);
    assert_eq!(ids(&reg), ["acorn", "bare", "walnut"]);
    let w = peer(&reg, "walnut");
    assert_eq!(
        w.addrs,
        [
            "/ip4/192.168.1.27/tcp/9000",
            "/ip4/10.0.0.2/tcp/9000",
            "/ip4/10.0.0.3/tcp/8080/http"
        ]
    );
    assert_eq!(w.alias(AliasKind::AgentId), Some("walnut"));
    assert_eq!(
        w.alias(AliasKind::PeerId),
        Some("12D3KooWGBfVmtXPRmsNHU7bUbh6JXvMmzHjr8gnVtdQ1fpjUMGs")
    );
    assert_eq!(w.name.as_deref(), Some("Walnut"));
    assert_eq!(w.status.as_deref(), Some("online"));
    assert_eq!(w.capabilities, ["go_development"]);
    assert_eq!(
        w.labels.get("model").map(String::as_str),
        Some("llama3.1:8b")
    );
    assert_eq!(peer(&reg, "acorn").addrs, ["/ip6/fd00::7/tcp/9000"]);
    assert!(peer(&reg, "bare").addrs.is_empty());

    let s = status(&reg);
    assert_eq!(s.health, Health::Ok);
    assert!(s.synced);
    assert_eq!(s.observations, 3);
    // One publication: an hour later nothing changed, nothing restarted.
    let v = reg.version();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(reg.version(), v);
    assert_eq!(status(&reg).restarts, 0);
    assert_eq!(status(&reg).health, Health::Ok);
    reg.shutdown().await;
}

#[test]
fn bad_inline_config_names_the_key() {
    let err = StaticSource::new(config(
        r#"peers = [{ id = "a", addrs = ["1.2.3.4:1"] }, { id = "b" }, { id = "c", addrs = ["10.0.0.1:1", "x:y"] }]"#,
    ))
    .expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "peers[2].addrs[1]: invalid address `x:y`: port `y` is not a number from 0 to 65535"
    );
    let err = StaticSource::new(config(
        r#"peers = [{ id = "a" }, { addrs = ["1.2.3.4:1"] }]"#,
    ))
    .expect_err("invalid");
    assert!(err.to_string().starts_with("peers[1].id: missing"), "{err}");
}

const V1: &str = r#"
[[peers]]
id = "a"
addrs = ["10.0.0.1:9000"]
"#;

const V2: &str = r#"
[[peers]]
id = "a"
addrs = ["10.0.0.1:9000", "10.0.0.11:9000"]

[[peers]]
id = "b"
addrs = ["10.0.0.2:9000"]
"#;

const BROKEN: &str = r#"
[[peers]]
id = "a"
addrs = ["10.0.0.1:9000"
"#;

const V3: &str = r#"{"peers": [{"id": "b", "addrs": ["10.0.0.2:9000"]}, {"id": "c", "addrs": ["10.0.0.3:9000"]}]}"#;

#[tokio::test(start_paused = true)]
async fn watched_file_reloads_survives_breakage_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("peers.toml");
    std::fs::write(&path, V1).expect("write");
    let reg = start(config(&format!(
        r#"
        file = {path:?}
        watch_interval = "1s"
        peers = [{{ id = "inline", addrs = ["10.0.0.9:9000"] }}]"#,
        path = path.display().to_string()
    )));
    assert!(reg.wait_first_sync(Duration::from_secs(5)).await);
    assert_eq!(ids(&reg), ["a", "inline"]);
    assert!(is_ok(&reg));

    // An edit is picked up without a restart.
    std::fs::write(&path, V2).expect("write");
    wait_for(&reg, "b appears", Duration::from_secs(5), |r| {
        ids(r) == ["a", "b", "inline"]
    })
    .await;
    assert_eq!(
        peer(&reg, "a").addrs,
        ["/ip4/10.0.0.1/tcp/9000", "/ip4/10.0.0.11/tcp/9000"]
    );

    // A broken version: degraded, the last good list stays.
    std::fs::write(&path, BROKEN).expect("write");
    wait_for(&reg, "degraded", Duration::from_secs(5), is_degraded).await;
    let reason = last_error(&reg);
    assert!(reason.contains(&path.display().to_string()), "{reason}");
    assert!(
        reason.contains("keeping the last good list of 2 peers"),
        "{reason}"
    );
    assert_eq!(ids(&reg), ["a", "b", "inline"]);
    // Still the case long after the registry's max_staleness (300 s): the
    // last good list is kept until the file is fixed.
    tokio::time::sleep(Duration::from_secs(900)).await;
    assert_eq!(ids(&reg), ["a", "b", "inline"]);
    assert!(is_degraded(&reg));

    // A file with a bad entry is refused the same way, naming the entry.
    std::fs::write(&path, "peers = [{ id = \"a\" }, { id = \"a\" }]").expect("write");
    wait_for(&reg, "duplicate reported", Duration::from_secs(5), |r| {
        last_error(r).contains("peers[1].id: duplicate id `a`")
    })
    .await;
    assert_eq!(ids(&reg), ["a", "b", "inline"]);

    // Fixed: healthy again, with the new set.
    std::fs::write(&path, "peers = [{ id = \"b\", addrs = [\"10.0.0.2:9000\"] }, { id = \"c\", addrs = [\"10.0.0.3:9000\"] }]").expect("write");
    wait_for(&reg, "healthy with b, c", Duration::from_secs(5), |r| {
        is_ok(r) && ids(r) == ["b", "c", "inline"]
    })
    .await;

    // Deleted: degraded, list kept; recreated: recovers.
    std::fs::remove_file(&path).expect("remove");
    wait_for(&reg, "degraded on delete", Duration::from_secs(5), |r| {
        is_degraded(r) && last_error(r).contains("not found")
    })
    .await;
    assert_eq!(ids(&reg), ["b", "c", "inline"]);
    std::fs::write(&path, V1).expect("write");
    wait_for(&reg, "recovered", Duration::from_secs(5), |r| {
        is_ok(r) && ids(r) == ["a", "inline"]
    })
    .await;
    assert_eq!(status(&reg).restarts, 0);
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn json_file_and_missing_file_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("peers.json");
    let reg = start(config(&format!(
        r#"
        file = {path:?}
        peers = [{{ id = "inline", addrs = ["10.0.0.9:9000"] }}]"#,
        path = path.display().to_string()
    )));
    // No file yet: the inline peers are published, the source is degraded.
    assert!(reg.wait_first_sync(Duration::from_secs(5)).await);
    assert_eq!(ids(&reg), ["inline"]);
    assert!(is_degraded(&reg));
    assert!(
        last_error(&reg).contains("not found"),
        "{}",
        last_error(&reg)
    );

    std::fs::write(&path, V3).expect("write");
    wait_for(&reg, "json loaded", Duration::from_secs(5), |r| {
        is_ok(r) && ids(r) == ["b", "c", "inline"]
    })
    .await;
    // A bare JSON array works too.
    std::fs::write(
        &path,
        r#"[{"id": "d", "addrs": ["/ip4/10.0.0.4/tcp/9000"]}]"#,
    )
    .expect("write");
    wait_for(&reg, "array loaded", Duration::from_secs(5), |r| {
        ids(r) == ["d", "inline"]
    })
    .await;
    reg.shutdown().await;
}
