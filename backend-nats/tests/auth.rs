//! Authentication and TLS against a real nats-server: token, user and
//! password, nkey, TLS with a CA and a client certificate; secrets inline,
//! from a file and from an environment variable.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use backend_nats::{Config, Secret};
use common::*;
use discovery_core::Health;

/// An agent and a discoverer with `cfg` find each other.
async fn works(cfg: Config) {
    let mut agent_cfg = cfg.clone();
    agent_cfg.discover = false;
    let a = agent(agent_cfg, local(1));
    let d = discoverer(cfg);
    assert!(
        wait_peers(&d, Duration::from_secs(10), |n| n == 1).await,
        "not discovered: {:?}",
        d.sources()
    );
    assert!(d.wait_first_sync(Duration::from_secs(10)).await);
    assert_eq!(source_health(&d), Health::Ok);
    d.shutdown().await;
    a.shutdown().await;
}

/// A discoverer with `cfg` is degraded with a reason containing `needle`.
async fn refused(cfg: Config, needle: &str) {
    let d = discoverer(cfg);
    assert!(d.wait_first_sync(Duration::from_secs(10)).await);
    let s = d.sources().into_iter().find(|s| s.name == "nats").unwrap();
    assert_eq!(s.health, Health::Degraded);
    let err = s.last_error.unwrap_or_default();
    assert!(err.to_lowercase().contains(&needle.to_lowercase()), "{err}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_an_environment_variable() {
    init_tracing();
    let Some(server) = NatsServer::start_with(&["--auth", "s3cr3t-token"], false) else {
        return;
    };
    std::env::set_var("ROLLCALL_TEST_NATS_TOKEN_OK", "s3cr3t-token");
    let mut cfg = config(&server.url());
    cfg.token = Some(Secret::Env {
        env: "ROLLCALL_TEST_NATS_TOKEN_OK".into(),
    });
    works(cfg.clone()).await;

    cfg.token = Some(Secret::Value("wrong".into()));
    refused(cfg.clone(), "authorization").await;
    cfg.token = Some(Secret::Env {
        env: "ROLLCALL_TEST_NATS_TOKEN_UNSET".into(),
    });
    refused(cfg, "ROLLCALL_TEST_NATS_TOKEN_UNSET").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_from_a_file() {
    init_tracing();
    let Some(server) = NatsServer::start_with(&["--user", "alice", "--pass", "wonder land"], false)
    else {
        return;
    };
    let file = server.dir.join("password");
    std::fs::write(&file, "wonder land\n").unwrap();
    let mut cfg = config(&server.url());
    cfg.user = Some("alice".into());
    cfg.password = Some(Secret::File { file });
    works(cfg.clone()).await;
    cfg.password = Some(Secret::Value("nope".into()));
    refused(cfg, "authorization").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_seed() {
    init_tracing();
    let Some(bin) = nats_server_binary() else {
        return;
    };
    drop(bin);
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nkey.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{\n  users = [ {{ nkey: \"{}\" }} ]\n}}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let Some(server) = NatsServer::start_with(&["-c", &conf], false) else {
        return;
    };
    let mut cfg = config(&server.url());
    cfg.nkey = Some(Secret::Value(seed));
    works(cfg.clone()).await;
    cfg.nkey = Some(Secret::Value(nkeys::KeyPair::new_user().seed().unwrap()));
    refused(cfg, "authorization").await;
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for the TLS test: install it (`apt-get install -y openssl`): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=rollcall test CA",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{who}-key.pem"),
                "-out",
                &format!("{who}.csr"),
                "-subj",
                &format!("/CN={who}"),
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
                "-out",
                &format!("{who}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_and_a_client_certificate() {
    init_tracing();
    let Some(bin) = nats_server_binary() else {
        return;
    };
    drop(bin);
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    make_certs(d);
    let conf = d.join("tls.conf");
    std::fs::write(
        &conf,
        format!(
            "tls {{\n  cert_file: \"{0}/server.pem\"\n  key_file: \"{0}/server-key.pem\"\n  ca_file: \"{0}/ca.pem\"\n  verify: true\n  timeout: 2\n}}\n",
            d.display()
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let Some(server) = NatsServer::start_with(&["-c", &conf], false) else {
        return;
    };
    let mut cfg = config(&format!("tls://127.0.0.1:{}", server.port));
    cfg.tls_ca = Some(d.join("ca.pem"));
    cfg.tls_cert = Some(d.join("client.pem"));
    cfg.tls_key = Some(d.join("client-key.pem"));
    works(cfg.clone()).await;

    // Without the client certificate the server refuses the handshake.
    let mut no_cert = cfg.clone();
    no_cert.tls_cert = None;
    no_cert.tls_key = None;
    refused(no_cert, "cannot connect").await;
    // Without the CA the server's certificate is not trusted.
    let mut no_ca = cfg;
    no_ca.tls_ca = None;
    refused(no_ca, "cannot connect").await;
}

/// A credentials file that cannot be used is reported, naming the key.
/// (A working `.creds` needs an operator/account JWT setup on the server;
/// that path is async-nats' own and is not exercised here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_credentials_file_is_reported() {
    init_tracing();
    let Some(server) = NatsServer::start() else {
        return;
    };
    let file = server.dir.join("bad.creds");
    std::fs::write(&file, "this is not a creds file\n").unwrap();
    let mut cfg = config(&server.url());
    cfg.credentials_file = Some(file);
    refused(cfg.clone(), "credentials_file").await;
    cfg.credentials_file = Some(server.dir.join("missing.creds"));
    refused(cfg, "credentials_file").await;
}
