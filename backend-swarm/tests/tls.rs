//! TCP + TLS to a real dockerd started with `--tlsverify`: a throwaway daemon
//! in its own network namespace (reached over a veth pair at 10.97.K.2), with
//! its own data and exec roots, no iptables; it is not in a swarm.
//! Certificates come from the `openssl` CLI. Needs root.
//!
//! Its own namespace matters: a second dockerd started in the host's network
//! namespace deletes the host daemon's `docker0` bridge at startup (seen with
//! Docker 20.10 and `--bridge none`), breaking `docker run` on the host.
//!
//! Covers: containers mode over TLS with a client certificate; `mode = "api"`
//! on a daemon outside a swarm; a wrong CA; a missing client certificate.
#![allow(clippy::unwrap_used)]
// Each #[tokio::test] has its own runtime: the std Mutex held across awaits only
// serialises the Docker tests across the harness's threads.
#![allow(clippy::await_holding_lock)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backend_swarm::{Config, Mode};
use common::{docker_at, start, unique, wait_for};
use discovery_core::{AliasKind, Health};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs the openssl CLI (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for `server_ip` and a client certificate.
fn make_certs(dir: &Path, ca_name: &str, server_ip: &str) {
    let subj_ca = format!("/CN={ca_name}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subj_ca,
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName=IP:{server_ip}\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (who, cn) in [("server", server_ip), ("client", "rollcall")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{who}-key.pem"),
                "-out",
                &format!("{who}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
                "-out",
                &format!("{who}.pem"),
            ],
        );
    }
}

/// A dockerd listening on a unix socket (for the CLI) and on TCP with TLS.
struct Daemon {
    child: Child,
    dir: PathBuf,
    sock: String,
    tcp: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["-H", &self.sock, "rm", "-f"])
            .args(
                String::from_utf8_lossy(
                    &Command::new("docker")
                        .args(["-H", &self.sock, "ps", "-aq"])
                        .output()
                        .map(|o| o.stdout)
                        .unwrap_or_default(),
                )
                .split_whitespace(),
            )
            .output();
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Unmount what the daemon may have left, then remove its directories.
        if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
            let root = self.dir.to_string_lossy().to_string();
            let mut ms: Vec<&str> = mounts
                .split_whitespace()
                .filter(|m| m.starts_with(&root))
                .collect();
            ms.sort_by(|a, b| b.cmp(a));
            for m in ms {
                let _ = Command::new("umount").args(["-l", m]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Deletes the namespace (with its veth pair and the daemon's bridges) when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("this test needs iproute2 (`ip`): {e}"));
    assert!(st.success(), "ip {} failed (root needed)", args.join(" "));
}

/// A namespace joined to the host by a veth pair: host 10.97.K.1, namespace 10.97.K.2.
fn make_netns(name: &str, k: u8) -> (String, String) {
    let (host_ip, ns_ip) = (format!("10.97.{k}.1"), format!("10.97.{k}.2"));
    let veth = format!("rctls{k}h");
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    let _ = Command::new("ip").args(["link", "del", &veth]).output();
    ip(&["netns", "add", name]);
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", name,
    ]);
    ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &veth]);
    ip(&["link", "set", &veth, "up"]);
    ip(&[
        "netns",
        "exec",
        name,
        "ip",
        "addr",
        "add",
        &format!("{ns_ip}/30"),
        "dev",
        "eth0",
    ]);
    ip(&["netns", "exec", name, "ip", "link", "set", "eth0", "up"]);
    ip(&["netns", "exec", name, "ip", "link", "set", "lo", "up"]);
    (host_ip, ns_ip)
}

fn start_tls_daemon(dir: &Path, netns: &str, ns_ip: &str) -> Daemon {
    let sock = format!("unix://{}/docker.sock", dir.display());
    let tcp = format!("tcp://{ns_ip}:2376");
    let ns = format!("rctls{}", std::process::id());
    let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
    // nsenter, not `ip netns exec` (that remounts /sys; dockerd then fails).
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{netns}"))
        .arg("dockerd")
        .args(["--data-root", &dir.join("data").to_string_lossy(), "--exec-root", &dir.join("exec").to_string_lossy()])
        .args(["--pidfile", &dir.join("dockerd.pid").to_string_lossy()])
        .args(["-H", &sock, "-H", &tcp, "--tlsverify"])
        .args(["--tlscacert", &dir.join("ca.pem").to_string_lossy()])
        .args(["--tlscert", &dir.join("server.pem").to_string_lossy()])
        .args(["--tlskey", &dir.join("server-key.pem").to_string_lossy()])
        .args(["--iptables=false", "--ip-masq=false"])
        .args(["--containerd-namespace", &ns, "--containerd-plugins-namespace", &format!("{ns}p")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs nsenter and dockerd (scripts/docker-rig.sh installs docker.io): {e}"));
    let d = Daemon {
        child,
        dir: dir.to_owned(),
        sock,
        tcp,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Command::new("docker")
        .args(["-H", &d.sock, "info"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            Instant::now() < deadline,
            "the TLS dockerd did not start: {}",
            std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_and_errors_that_name_the_problem() {
    let Some(_lock) = common::docker_or_skip("tls_with_client_certificates") else {
        return;
    };
    if std::env::var("ROLLCALL_SKIP_NETNS").as_deref() == Ok("1") {
        eprintln!("SKIPPED tls_with_client_certificates: ROLLCALL_SKIP_NETNS=1 (needs root and network namespaces)");
        return;
    }
    let dir = std::env::temp_dir().join(unique("tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let netns = format!("rc-tls-{}", std::process::id());
    let k = (std::process::id() % 200) as u8 + 10;
    let t0 = Instant::now();
    let (_host_ip, ns_ip) = make_netns(&netns, k);
    let _netns = Netns(netns.clone());
    make_certs(&dir, "rollcall-test-ca", &ns_ip);
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    make_certs(&other, "some-other-ca", &ns_ip);
    let daemon = start_tls_daemon(&dir, &netns, &ns_ip);
    println!("TLS dockerd up in {:?}", t0.elapsed());
    // The probe image, and a labelled container on a bridge network of that daemon.
    let saved = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker save {} | docker -H {} load",
            common::PROBE_IMAGE,
            daemon.sock
        ))
        .status()
        .unwrap();
    assert!(saved.success());
    docker_at(
        &daemon.sock,
        &["network", "create", "-d", "bridge", "tlsnet"],
    );
    let cid = docker_at(
        &daemon.sock,
        &[
            "run",
            "-d",
            "--network",
            "tlsnet",
            "--label",
            "rollcall.tls=1",
            "--label",
            "rollcall.port=9000",
            common::PROBE_IMAGE,
            "serve",
        ],
    );
    let ip = docker_at(
        &daemon.sock,
        &[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.tlsnet.IPAddress}}",
            &cid,
        ],
    );

    let tls = |ca: &Path, with_client: bool| Config {
        mode: Mode::Containers,
        label: vec!["rollcall.tls=1".into()],
        docker_host: Some(daemon.tcp.clone()),
        tls_ca: Some(ca.join("ca.pem")),
        tls_cert: with_client.then(|| dir.join("client.pem")),
        tls_key: with_client.then(|| dir.join("client-key.pem")),
        ..Default::default()
    };

    // Containers mode over TLS with a client certificate.
    let reg = start(tls(&dir, true));
    wait_for(&reg, Duration::from_secs(20), |r| r.peers.len() == 1)
        .await
        .unwrap_or_else(|_| panic!("{:?}", reg.sources()));
    let roster = reg.snapshot();
    assert_eq!(
        roster.peers[0].alias(AliasKind::ContainerId),
        Some(cid.as_str())
    );
    assert_eq!(roster.peers[0].addrs, vec![format!("/ip4/{ip}/tcp/9000")]);
    assert_eq!(reg.sources()[0].health, Health::Ok);
    reg.shutdown().await;

    let reason = |config: Config| async move {
        let reg = start(config);
        assert!(reg.wait_first_sync(Duration::from_secs(20)).await);
        let st = reg.sources().remove(0);
        reg.shutdown().await;
        assert_eq!(st.health, Health::Degraded, "{st:?}");
        st.last_error.unwrap_or_default()
    };

    // API mode on a daemon outside any swarm.
    let r = reason(Config {
        mode: Mode::Api,
        label: Vec::new(),
        service: vec!["x".into()],
        ..tls(&dir, true)
    })
    .await;
    assert!(
        r.contains("is not part of a swarm") && r.contains("docker swarm init"),
        "{r}"
    );
    println!("api mode, no swarm: {r}");

    // A CA that did not sign the daemon's certificate.
    let r = reason(tls(&other, true)).await;
    assert!(
        r.starts_with("TLS to the Docker daemon")
            && r.contains("UnknownIssuer")
            && r.contains("`tls_ca`"),
        "{r}"
    );
    println!("wrong CA: {r}");

    // No client certificate, but the daemon demands one (--tlsverify).
    let r = reason(tls(&dir, false)).await;
    assert!(
        r.starts_with("TLS to the Docker daemon") && r.contains("set `tls_cert` and `tls_key`"),
        "{r}"
    );
    println!("no client certificate: {r}");
    drop(daemon);
}
