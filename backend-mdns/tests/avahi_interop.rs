//! Interop with avahi (Debian's avahi-daemon and avahi-utils), DNS-SD flavour:
//! two namespaces on a bridge; avahi-daemon (own D-Bus bus) in one, rollcall in
//! the other.
//! * `avahi-publish-service` with TXT is found by rollcall with its metadata;
//! * `avahi-browse -rpt` lists rollcall's agent with its TXT.
//!
//! Needs root, avahi-daemon, avahi-utils and dbus; `ROLLCALL_SKIP_NETNS=1` skips it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{self, Lan, Proc};

struct Avahi {
    dbus_pid: Option<u32>,
    _daemon: Proc,
    bus: String,
}

impl Drop for Avahi {
    fn drop(&mut self) {
        if let Some(pid) = self.dbus_pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

fn start_avahi(ns: &str, dir: &Path) -> Avahi {
    let bus = format!("unix:path={}/bus", dir.display());
    std::fs::write(
        dir.join("dbus.conf"),
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_type="*"/>
  </policy>
</busconfig>
"#,
            dir.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("avahi.conf"),
        "[server]\nhost-name=mmavahi\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=eth0\nenable-dbus=yes\ndisallow-other-stacks=no\n[publish]\npublish-workstation=no\n",
    )
    .unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "dbus-daemon"])
        .arg(format!("--config-file={}/dbus.conf", dir.display()))
        .args(["--fork", "--print-pid"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run dbus-daemon ({e}): `apt-get install dbus avahi-daemon avahi-utils`, or set ROLLCALL_SKIP_NETNS=1"));
    assert!(
        out.status.success(),
        "dbus-daemon: {} (`apt-get install dbus`)",
        String::from_utf8_lossy(&out.stderr)
    );
    let dbus_pid = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    let _ = std::fs::create_dir_all("/run/avahi-daemon");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "unshare", "-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none /run/avahi-daemon; DBUS_SYSTEM_BUS_ADDRESS={bus} exec avahi-daemon -f {}/avahi.conf --no-drop-root --no-chroot --no-rlimits",
            dir.display()
        ))
        .stderr(Stdio::null());
    let daemon = Proc::spawn(cmd);
    let avahi = Avahi {
        dbus_pid,
        _daemon: daemon,
        bus,
    };
    // Ready when the daemon answers on the bus.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = Command::new("ip")
            .args(["netns", "exec", ns, "avahi-browse", "-tp", "_x._tcp"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &avahi.bus)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "avahi-daemon did not come up (`apt-get install avahi-daemon avahi-utils dbus`)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    avahi
}

fn child(ns: &str, extra: &[(&str, String)]) -> Proc {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(exe)
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("MDNS_CHILD", "rollcall-dnssd");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Proc::spawn(cmd)
}

#[test]
fn avahi_and_rollcall_see_each_other() {
    if std::env::var("MDNS_CHILD").is_ok() || netns::skip("avahi DNS-SD interop") {
        return;
    }
    let lan = Lan::new(2);
    let dir = tempfile::tempdir().unwrap();
    let avahi = start_avahi(&lan.hosts[0].ns, dir.path());
    let _published = Proc::spawn({
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &lan.hosts[0].ns,
            "avahi-publish-service",
            "chorus-avahi-1",
            "_rollcall._tcp",
            "9000",
            "id=chorus-avahi-1",
            "capabilities=go_development,testing",
            "status=idle",
            "label.model=llama3.1:8b",
        ])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &avahi.bus);
        c
    });
    let mut rc = child(&lan.hosts[1].ns, &[("MDNS_IP", lan.hosts[1].ip.clone())]);
    // rollcall finds avahi's service with its TXT metadata and address.
    let found = rc.wait_for(Duration::from_secs(20), |l| {
        l.starts_with("FOUND chorus-avahi-1 ")
            && l.contains("\"status\":\"idle\"")
            && l.contains("go_development")
            && l.contains("llama3.1:8b")
            && l.contains(&format!("/ip4/{}/tcp/9000", lan.hosts[0].ip))
    });
    assert!(found.is_some(), "rollcall printed {:?}", rc.seen);

    // avahi-browse resolves rollcall's agent with its TXT.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lan.hosts[0].ns,
                "avahi-browse",
                "-rpt",
                "_rollcall._tcp",
            ])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &avahi.bus)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let resolved = text.lines().find(|l| {
            l.starts_with("=;") && l.contains(";rollcall-agent;") && l.contains("_rollcall._tcp")
        });
        if let Some(l) = resolved {
            assert!(l.contains(&lan.hosts[1].ip), "{l}");
            assert!(l.contains(";9000;"), "{l}");
            assert!(l.contains("\"status=idle\""), "{l}");
            assert!(l.contains("\"id=rollcall-agent\""), "{l}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "avahi-browse -rpt printed:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// rollcall, DNS-SD flavour, announcing and discovering; does nothing unless a child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_entry() {
    if std::env::var("MDNS_CHILD").as_deref() != Ok("rollcall-dnssd") {
        return;
    }
    use backend_mdns::{Config, Flavour, MdnsSource};
    use discovery_core::{LocalPeer, RegistryBuilder, RegistryConfig, SourceOptions};
    let ip = std::env::var("MDNS_IP").unwrap();
    let cfg = Config {
        flavour: Flavour::DnsSd,
        service_name: Some("_rollcall._tcp.local".into()),
        interfaces: vec!["eth0".into()],
        ..Default::default()
    };
    let mut local = LocalPeer {
        id: "rollcall-agent".into(),
        addrs: vec![format!("/ip4/{ip}/tcp/9000").parse().unwrap()],
        ..Default::default()
    };
    local.meta.status = Some("idle".into());
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source(
            "mdns",
            SourceOptions::default(),
            MdnsSource::new(cfg).unwrap(),
        )
        .announce(local)
        .start()
        .unwrap();
    println!();
    for _ in 0..300 {
        for p in reg.snapshot().peers {
            println!("FOUND {} {}", p.id, serde_json::to_string(&*p).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
