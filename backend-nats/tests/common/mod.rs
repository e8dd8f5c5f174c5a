//! Test harness: a real nats-server per test on a free port, killed on drop
//! (also when the test fails), plus helpers to run rollcall registries.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use backend_nats::{Config, NatsSource};
use discovery_core::{
    parse_addr, Alias, Health, LocalPeer, Metadata, Registry, RegistryBuilder, RegistryConfig,
    SourceOptions,
};

/// Where nats-server is, or None (after printing why) when the environment
/// says to skip. Panics with install instructions otherwise.
pub fn nats_server_binary() -> Option<PathBuf> {
    if std::env::var("ROLLCALL_SKIP_NATS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: ROLLCALL_SKIP_NATS=1, this test needs nats-server");
        return None;
    }
    let candidates = [
        std::env::var("ROLLCALL_NATS_SERVER")
            .ok()
            .map(PathBuf::from),
        find_in_path("nats-server"),
        Some(PathBuf::from("/usr/sbin/nats-server")),
        Some(PathBuf::from("/usr/bin/nats-server")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return Some(c);
        }
    }
    panic!(
        "nats-server not found: install it (`apt-get install -y nats-server`, or set \
         ROLLCALL_NATS_SERVER=/path/to/nats-server), or set ROLLCALL_SKIP_NATS=1 to skip the NATS tests"
    );
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One nats-server process. Killed (and reaped) on drop.
pub struct NatsServer {
    bin: PathBuf,
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
}

impl NatsServer {
    /// A plain server, or None if the environment says to skip.
    pub fn start() -> Option<NatsServer> {
        Self::start_with(&[], false)
    }

    /// A server with JetStream (store in a temp dir kept across restarts).
    pub fn start_js() -> Option<NatsServer> {
        Self::start_with(&[], true)
    }

    /// A server with extra arguments; `{dir}` in them is replaced by its temp dir.
    pub fn start_with(extra: &[&str], jetstream: bool) -> Option<NatsServer> {
        let bin = nats_server_binary()?;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let port = free_port();
        let mut args: Vec<String> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        if jetstream {
            args.extend([
                "-js".into(),
                "-sd".into(),
                dir.join("js").display().to_string(),
            ]);
        }
        args.extend(
            extra
                .iter()
                .map(|a| a.replace("{dir}", &dir.display().to_string())),
        );
        let mut s = NatsServer {
            bin,
            port,
            args,
            child: None,
            _dir: tmp,
            dir,
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("log file");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("nats-server exited at start ({status}): {log}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "nats-server did not listen on port {} within 5 s",
            self.port
        );
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Logs to the test output when RUST_LOG is set.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A source config for tests.
pub fn config(url: &str) -> Config {
    Config {
        url: vec![url.to_owned()],
        ..Default::default()
    }
}

pub fn registry_config() -> RegistryConfig {
    RegistryConfig {
        exclude_addresses: vec![],
        restart_backoff: Duration::from_millis(100),
        ..Default::default()
    }
}

/// Agent number `i`: id `agent-NNN`, a peer id alias, an address, metadata.
pub fn local(i: usize) -> LocalPeer {
    LocalPeer {
        id: format!("agent-{i:03}"),
        aliases: vec![Alias::peer_id(format!("12D3KooWpeer{i:03}"))],
        addrs: vec![
            parse_addr(&format!("/ip4/10.0.{}.{}/tcp/9000", i / 250, i % 250 + 1)).expect("addr"),
        ],
        meta: Metadata {
            name: Some(format!("agent {i}")),
            status: Some("idle".into()),
            capabilities: vec!["go_development".into()],
            version: Some("1.0.0".into()),
            labels: [("model".to_owned(), "llama3.1:8b".to_owned())].into(),
        },
    }
}

/// A registry that announces `local` through one NATS source named "nats".
pub fn agent(cfg: Config, local: LocalPeer) -> Registry {
    RegistryBuilder::new(registry_config())
        .source(
            "nats",
            SourceOptions::default(),
            NatsSource::new(cfg).expect("valid config"),
        )
        .announce(local)
        .start()
        .expect("registry")
}

/// A registry that only discovers through one NATS source named "nats".
pub fn discoverer(cfg: Config) -> Registry {
    RegistryBuilder::new(registry_config())
        .source(
            "nats",
            SourceOptions::default(),
            NatsSource::new(cfg).expect("valid config"),
        )
        .start()
        .expect("registry")
}

/// Waits until `pred` holds on the registry's roster size, up to `timeout`.
pub async fn wait_peers(reg: &Registry, timeout: Duration, pred: impl Fn(usize) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let v = reg.version();
        if pred(reg.snapshot().peers.len()) {
            return true;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        reg.wait_version_after(v, left.min(Duration::from_millis(200)))
            .await;
    }
}

/// Waits until the source "nats" has this health, up to `timeout`.
pub async fn wait_health(reg: &Registry, health: Health, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if reg
            .sources()
            .iter()
            .any(|s| s.name == "nats" && s.health == health)
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn source_health(reg: &Registry) -> Health {
    reg.sources()
        .into_iter()
        .find(|s| s.name == "nats")
        .map(|s| s.health)
        .expect("source nats")
}

/// Runs an agent on its own runtime in its own thread; `crash()` drops that
/// runtime without shutting the registry down: no leave, no goodbye, the
/// connection just closes, as when the process is killed.
pub struct CrashableAgent {
    crash: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CrashableAgent {
    pub fn start(cfg: Config, local: LocalPeer) -> CrashableAgent {
        let (crash_tx, crash_rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let reg = rt.block_on(async move {
                let reg = agent(cfg, local);
                reg.wait_first_sync(Duration::from_secs(10)).await;
                reg
            });
            let _ = ready_tx.send(());
            let _ = crash_rx.recv();
            rt.shutdown_background();
            drop(reg);
        });
        ready_rx
            .recv_timeout(Duration::from_secs(15))
            .expect("crashable agent started");
        CrashableAgent {
            crash: Some(crash_tx),
            thread: Some(thread),
        }
    }

    pub fn crash(&mut self) {
        if let Some(tx) = self.crash.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for CrashableAgent {
    fn drop(&mut self) {
        self.crash();
    }
}
