//! `rollcall run` with a bearer token and TLS: every route but `/healthz`
//! needs the token; errors (a wrong token, `?index=abc`, an unknown route)
//! are JSON; the API speaks HTTPS with a cert made by openssl, checked by
//! curl against that cert. And `--log-format json` with the warning about
//! listening beyond loopback without a token.

mod support;

use std::process::{Command, Stdio};
use support::*;

const STATIC: &str = r#"
[registry]
exclude_addresses = []

[sources.seeds]
type = "static"
peers = [{ id = "walnut", addrs = ["/ip4/10.0.0.1/tcp/9000"] }]
"#;

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl missing: apt-get install curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn json_error(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {body}"))
        .to_owned()
}

#[test]
fn token_and_tls_guard_every_route_but_healthz_and_errors_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl missing: apt-get install openssl");
    assert!(made.success());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\ntoken_file = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{STATIC}",
            token_file.display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let _d = Killed(vec![daemon(&cfg, port, &dir.path().join("log"))]);
    let base = format!("https://127.0.0.1:{port}");
    let ca = cert.to_str().unwrap();
    let url = |p: &str| format!("{base}{p}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while curl(&["--cacert", ca, &url("/healthz")]).0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "HTTPS /healthz never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Plain HTTP to the TLS port gets no API.
    assert_ne!(curl(&[&format!("http://127.0.0.1:{port}/healthz")]).0, 200);

    let (code, body) = curl(&["--cacert", ca, &url("/v1/peers")]);
    assert_eq!(code, 401);
    assert!(json_error(&body).contains("missing"), "{body}");
    let (code, body) = curl(&[
        "--cacert",
        ca,
        "-H",
        "Authorization: Bearer nope",
        &url("/v1/peers"),
    ]);
    assert_eq!(code, 401);
    assert_eq!(json_error(&body), "wrong bearer token");
    let (code, _) = curl(&["--cacert", ca, &url("/metrics")]);
    assert_eq!(code, 401, "/metrics needs the token too");

    let auth = "Authorization: Bearer s3cret-token";
    let (code, body) = curl(&["--cacert", ca, "-H", auth, &url("/v1/peers")]);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["peers"][0]["id"], "walnut");
    let (code, body) = curl(&["--cacert", ca, "-H", auth, &url("/v1/watch?index=abc")]);
    assert_eq!(code, 400);
    assert!(json_error(&body).contains("index"), "{body}");
    let (code, body) = curl(&["--cacert", ca, "-H", auth, &url("/v1/nothing")]);
    assert_eq!(code, 404);
    json_error(&body);
    let (code, body) = curl(&["--cacert", ca, "-H", auth, &url("/metrics")]);
    assert_eq!(code, 200);
    assert!(
        body.contains("rollcall_api_unauthorized_requests_total 3"),
        "{body}"
    );
}

#[test]
fn json_logs_warn_when_listening_beyond_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(&cfg, STATIC).unwrap();
    let port = free_port();
    let log = dir.path().join("log");
    let _d = Killed(vec![Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args([
            "--log-format",
            "json",
            "run",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "-c",
        ])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while curl(&[&format!("http://127.0.0.1:{port}/healthz")]).0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "/healthz never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line not JSON ({e}): {l}")))
        .collect();
    let warn = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("beyond loopback without a token"))
        })
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert_eq!(warn["level"], "WARN");
    assert_eq!(warn["listen"], format!("0.0.0.0:{port}"));
}
