//! The connection to a Docker daemon: one hyper client shared by bollard (typed
//! calls, the event stream) and by raw JSON calls (`/tasks`, `/version`).
//!
//! Why a raw call at all: bollard's `Task` model has no `NetworksAttachments`
//! (the API spec omits it, bollard#767), so `list_tasks` cannot give task IPs.
//! See [`crate::swarm`] for why `/tasks` is read raw rather than taking IPs
//! from a verbose network inspect.
//!
//! Why not `Docker::negotiate_version`: it asks `/v{newest}/version`, and a
//! daemon older than bollard's API version refuses every versioned path with
//! "client version 1.53 is too new" (Docker 20.10 here). The unversioned
//! `/version` answers on every daemon; the client then speaks
//! `min(server, bollard)`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bollard::{BollardRequest, ClientVersion, Docker};
use bytes::Bytes;
use futures::Stream;
use http_body_util::{BodyExt, Either, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::chain;
use crate::Error;

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Largest JSON answer accepted (a /tasks answer for ~10k tasks is a few MB).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Where the daemon is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// `host:port` over TCP, optionally with TLS.
    Tcp {
        authority: String,
        tls: Option<TlsFiles>,
    },
}

/// PEM files for TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

fn cfg_err(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

impl Endpoint {
    /// Resolves the endpoint from the config keys, else `DOCKER_HOST` (and
    /// `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`), else the default socket.
    pub(crate) fn resolve(
        docker_host: Option<&str>,
        tls_ca: Option<&Path>,
        tls_cert: Option<&Path>,
        tls_key: Option<&Path>,
    ) -> Result<Endpoint, Error> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let (host, from_env) = match docker_host {
            Some(h) => (h.trim().to_owned(), false),
            None => match env("DOCKER_HOST") {
                Some(h) => (h.trim().to_owned(), true),
                None => (format!("unix://{DEFAULT_SOCKET}"), false),
            },
        };
        let key = if from_env {
            "DOCKER_HOST"
        } else {
            "docker_host"
        };
        let explicit_tls = tls_ca.is_some() || tls_cert.is_some() || tls_key.is_some();
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(cfg_err(
                "`tls_cert` and `tls_key` go together: set both (client certificate) or neither",
            ));
        }
        let (scheme, rest) = match host.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r.to_owned()),
            None if host.starts_with('/') => ("unix".to_owned(), host.clone()),
            None => {
                return Err(cfg_err(format!(
                    "{key} = \"{host}\" has no scheme: use unix:///path, tcp://host:port or https://host:port"
                )))
            }
        };
        if scheme == "unix" {
            if explicit_tls {
                return Err(cfg_err(
                    "`tls_*` keys need a tcp:// or https:// `docker_host`; a unix socket has no TLS",
                ));
            }
            if rest.is_empty() {
                return Err(cfg_err(format!("{key} = \"{host}\" names no socket path")));
            }
            return Ok(Endpoint::Unix(PathBuf::from(rest)));
        }
        let want_tls = match scheme.as_str() {
            "https" => true,
            "tcp" => explicit_tls || (from_env && env("DOCKER_TLS_VERIFY").is_some()),
            "http" if explicit_tls => {
                return Err(cfg_err(format!(
                    "{key} = \"{host}\" is plain HTTP but `tls_*` keys are set: use tcp:// or https://"
                )))
            }
            "http" => false,
            other => {
                return Err(cfg_err(format!(
                    "{key} scheme `{other}://` is not supported: use unix:///path, tcp://host:port or https://host:port (ssh:// and npipe:// are not)"
                )))
            }
        };
        let authority = rest.split('/').next().unwrap_or_default().to_owned();
        if authority.is_empty() || authority.starts_with(':') {
            return Err(cfg_err(format!("{key} = \"{host}\" has no host")));
        }
        let has_port = match authority.rsplit_once(':') {
            Some((h, p)) => {
                !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty()
            }
            None => false,
        } && !(authority.starts_with('[') && authority.ends_with(']'));
        let authority = if has_port {
            authority
        } else {
            format!("{authority}:{}", if want_tls { 2376 } else { 2375 })
        };
        let tls = if !want_tls {
            None
        } else if explicit_tls {
            let ca = tls_ca.ok_or_else(|| {
                cfg_err("TLS needs `tls_ca`: the CA certificate (PEM) the daemon's certificate is signed by")
            })?;
            Some(TlsFiles {
                ca: ca.to_owned(),
                cert: tls_cert.map(Path::to_owned),
                key: tls_key.map(Path::to_owned),
            })
        } else if from_env {
            let dir = env("DOCKER_CERT_PATH")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".docker")))
                .ok_or_else(|| {
                    cfg_err("DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME is")
                })?;
            Some(TlsFiles {
                ca: dir.join("ca.pem"),
                cert: Some(dir.join("cert.pem")),
                key: Some(dir.join("key.pem")),
            })
        } else {
            return Err(cfg_err(format!(
                "{key} = \"{host}\" uses TLS: set `tls_ca` (and `tls_cert`/`tls_key` for a daemon started with --tlsverify)"
            )));
        };
        Ok(Endpoint::Tcp { authority, tls })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp {
                authority,
                tls: None,
            } => write!(f, "tcp://{authority}"),
            Endpoint::Tcp {
                authority,
                tls: Some(_),
            } => write!(f, "tcp://{authority} (TLS)"),
        }
    }
}

/// The request body type bollard's custom transport hands over.
type Body = Either<
    Full<Bytes>,
    StreamBody<Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, io::Error>> + Send>>>,
>;

#[derive(Clone)]
enum HttpClient {
    Unix(Client<UnixConnector, Body>),
    Http(Client<HttpConnector, Body>),
    Https(Client<HttpsConnector<HttpConnector>, Body>),
}

impl HttpClient {
    fn request(&self, req: http::Request<Body>) -> ResponseFuture {
        match self {
            HttpClient::Unix(c) => c.request(req),
            HttpClient::Http(c) => c.request(req),
            HttpClient::Https(c) => c.request(req),
        }
    }
}

/// A connected daemon.
#[derive(Clone)]
pub(crate) struct Conn {
    /// Typed API (services, nodes, containers, events).
    pub api: Docker,
    http: HttpClient,
    /// `unix://<hex path>`, `http://host:port` or `https://host:port`.
    base: String,
    /// For messages.
    pub endpoint: String,
    is_unix: Option<PathBuf>,
    timeout: Duration,
    version: (usize, usize),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("endpoint", &self.endpoint)
            .field(
                "api_version",
                &format_args!("{}.{}", self.version.0, self.version.1),
            )
            .finish()
    }
}

#[derive(Deserialize)]
struct ApiMessage {
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionAnswer {
    api_version: String,
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes a query component (everything but unreserved characters).
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_api_version(s: &str) -> Option<(usize, usize)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn read_pem(endpoint: &str, what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Tls {
        endpoint: endpoint.to_owned(),
        reason: format!("cannot read {what} {}: {e}", path.display()),
    })
}

fn tls_config(endpoint: &str, files: &TlsFiles) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls_err = |reason: String| Error::Tls {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let ca = read_pem(endpoint, "tls_ca", &files.ca)?;
    let mut roots = rustls::RootCertStore::empty();
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&ca) {
        let cert = cert.map_err(|e| tls_err(format!("tls_ca {}: {e}", files.ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| tls_err(format!("tls_ca {}: {e}", files.ca.display())))?;
        added += 1;
    }
    if added == 0 {
        return Err(tls_err(format!(
            "tls_ca {} holds no PEM certificate",
            files.ca.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots);
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_pem(endpoint, "tls_cert", cert)?;
            let certs = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(format!("tls_cert {}: {e}", cert.display())))?;
            if certs.is_empty() {
                return Err(tls_err(format!(
                    "tls_cert {} holds no PEM certificate",
                    cert.display()
                )));
            }
            let key_pem = read_pem(endpoint, "tls_key", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| tls_err(format!("tls_key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| tls_err(format!("client certificate: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

async fn preflight_unix(path: &Path, timeout: Duration) -> Result<(), Error> {
    let endpoint = format!("unix://{}", path.display());
    match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(classify_io(path, &endpoint, &e)),
        Err(_) => Err(Error::Connect {
            endpoint,
            reason: format!("no answer within {}", humantime_fmt(timeout)),
        }),
    }
}

fn classify_io(path: &Path, endpoint: &str, e: &io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => Error::SocketMissing { path: path.to_owned() },
        io::ErrorKind::PermissionDenied => Error::PermissionDenied { path: path.to_owned() },
        io::ErrorKind::ConnectionRefused => Error::Connect {
            endpoint: endpoint.to_owned(),
            reason: "connection refused: the socket exists but no daemon listens on it (dockerd stopped?)".into(),
        },
        _ => Error::Connect {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        },
    }
}

/// A rustls error in `e` or in the io::Errors it wraps (io::Error::source()
/// skips the error it wraps, and hyper-rustls nests one io::Error in another).
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        return Some(t);
    }
    let mut inner = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref());
    while let Some(i) = inner {
        if let Some(t) = i.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        inner = i.downcast_ref::<io::Error>().and_then(|io| io.get_ref());
    }
    None
}

/// What to do about a TLS failure.
fn tls_hint(e: &rustls::Error) -> &'static str {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_) => {
            " (the daemon's certificate does not verify against `tls_ca` for this host name or IP: use the CA that signed the daemon's --tlscert, with the address in its SAN)"
        }
        rustls::Error::AlertReceived(A::BadCertificate | A::CertificateRequired | A::UnknownCA | A::CertificateUnknown) => {
            " (the daemon refused our client certificate: set `tls_cert` and `tls_key` to a certificate signed by the daemon's --tlscacert)"
        }
        _ => "",
    }
}

pub(crate) fn humantime_fmt(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl Conn {
    /// Connects, learns the daemon's API version, and builds the bollard client.
    pub(crate) async fn connect(ep: &Endpoint, timeout: Duration) -> Result<Conn, Error> {
        let endpoint = ep.to_string();
        let (http, base, is_unix) = match ep {
            Endpoint::Unix(path) => {
                preflight_unix(path, timeout).await?;
                let client = Client::builder(TokioExecutor::new()).build(UnixConnector);
                (
                    HttpClient::Unix(client),
                    format!("unix://{}", hex(&path.to_string_lossy())),
                    Some(path.clone()),
                )
            }
            Endpoint::Tcp {
                authority,
                tls: None,
            } => {
                let mut c = HttpConnector::new();
                c.set_connect_timeout(Some(timeout));
                let client = Client::builder(TokioExecutor::new()).build(c);
                (
                    HttpClient::Http(client),
                    format!("http://{authority}"),
                    None,
                )
            }
            Endpoint::Tcp {
                authority,
                tls: Some(files),
            } => {
                let cfg = tls_config(&endpoint, files)?;
                let mut c = HttpConnector::new();
                c.set_connect_timeout(Some(timeout));
                c.enforce_http(false);
                let client =
                    Client::builder(TokioExecutor::new()).build(HttpsConnector::from((c, cfg)));
                (
                    HttpClient::Https(client),
                    format!("https://{authority}"),
                    None,
                )
            }
        };
        let transport_client = http.clone();
        let transport = move |req: BollardRequest| {
            let fut = transport_client.request(req);
            async move { fut.await.map_err(bollard::errors::Error::from) }
        };
        let secs = timeout.as_secs().max(1);
        let placeholder = Docker::connect_with_custom_transport(
            transport.clone(),
            Some(base.clone()),
            secs,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| Error::Connect {
            endpoint: endpoint.clone(),
            reason: chain(&e),
        })?;
        let mut conn = Conn {
            api: placeholder,
            http,
            base,
            endpoint,
            is_unix,
            timeout,
            version: (1, 24),
        };
        let v: VersionAnswer = conn
            .fetch(format!("{}/version", conn.base), "GET /version")
            .await?;
        let server = parse_api_version(&v.api_version).ok_or_else(|| Error::Protocol {
            what: "GET /version".into(),
            reason: format!("ApiVersion `{}` is not MAJOR.MINOR", v.api_version),
        })?;
        let ours = (
            bollard::API_DEFAULT_VERSION.major_version,
            bollard::API_DEFAULT_VERSION.minor_version,
        );
        let version = server.min(ours);
        conn.version = version;
        conn.api = Docker::connect_with_custom_transport(
            transport,
            Some(conn.base.clone()),
            secs,
            &ClientVersion {
                major_version: version.0,
                minor_version: version.1,
            },
        )
        .map_err(|e| Error::Connect {
            endpoint: conn.endpoint.clone(),
            reason: chain(&e),
        })?;
        Ok(conn)
    }

    /// `GET /v{version}{path}?{query}` decoded as JSON.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, Error> {
        let mut uri = format!(
            "{}/v{}.{}{}",
            self.base, self.version.0, self.version.1, path
        );
        for (i, (k, v)) in query.iter().enumerate() {
            uri.push(if i == 0 { '?' } else { '&' });
            uri.push_str(k);
            uri.push('=');
            uri.push_str(&encode_component(v));
        }
        self.fetch(uri, &format!("GET {path}")).await
    }

    async fn fetch<T: DeserializeOwned>(&self, uri: String, what: &str) -> Result<T, Error> {
        let req = http::Request::get(uri.as_str())
            .body(Either::Left(Full::new(Bytes::new())))
            .map_err(|e| Error::Protocol {
                what: what.to_owned(),
                reason: format!("cannot build request {uri}: {e}"),
            })?;
        let no_answer = || Error::Connect {
            endpoint: self.endpoint.clone(),
            reason: format!("{what}: no answer within {}", humantime_fmt(self.timeout)),
        };
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| no_answer())?
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let body = tokio::time::timeout(
            self.timeout,
            Limited::new(resp.into_body(), MAX_BODY).collect(),
        )
        .await
        .map_err(|_| no_answer())?
        .map_err(|e| Error::Protocol {
            what: what.to_owned(),
            reason: format!("reading the body: {e}"),
        })?
        .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiMessage>(&body)
                .map(|m| m.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
            return Err(self.status_error(what, status.as_u16(), message));
        }
        serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            what: what.to_owned(),
            reason: e.to_string(),
        })
    }

    fn status_error(&self, what: &str, status: u16, message: String) -> Error {
        if status == 503 && message.contains("not a swarm manager") {
            if message.contains("Worker nodes") {
                return Error::NotManager {
                    endpoint: self.endpoint.clone(),
                };
            }
            return Error::NotInSwarm {
                endpoint: self.endpoint.clone(),
                state: "inactive".into(),
            };
        }
        Error::Api {
            what: what.to_owned(),
            status,
            message,
        }
    }

    /// A transport failure, classified (missing socket, permission, TLS, refused...).
    fn transport_error(&self, e: &(dyn std::error::Error + 'static)) -> Error {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = cur {
            if let Some(t) = find_rustls(s) {
                return Error::Tls {
                    endpoint: self.endpoint.clone(),
                    reason: format!("{}{}", chain(e), tls_hint(t)),
                };
            }
            if let (Some(io), Some(path)) = (s.downcast_ref::<io::Error>(), &self.is_unix) {
                if matches!(
                    io.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::PermissionDenied
                        | io::ErrorKind::ConnectionRefused
                ) {
                    return classify_io(path, &self.endpoint, io);
                }
            }
            cur = s.source();
        }
        Error::Connect {
            endpoint: self.endpoint.clone(),
            reason: chain(e),
        }
    }

    /// Maps a bollard error to ours.
    pub(crate) fn api_error(&self, what: &str, e: bollard::errors::Error) -> Error {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code,
                message,
            } => self.status_error(what, status_code, message),
            B::RequestTimeoutError => Error::Connect {
                endpoint: self.endpoint.clone(),
                reason: format!("{what}: no answer within {}", humantime_fmt(self.timeout)),
            },
            B::JsonDataError { message, .. } => Error::Protocol {
                what: what.to_owned(),
                reason: message,
            },
            B::JsonSerdeError { err } => Error::Protocol {
                what: what.to_owned(),
                reason: err.to_string(),
            },
            B::HyperLegacyError { err } => self.transport_error(&err),
            other => {
                let reason = chain(&other);
                Error::Connect {
                    endpoint: self.endpoint.clone(),
                    reason: format!("{what}: {reason}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let r = |h: &str| Endpoint::resolve(Some(h), None, None, None);
        assert_eq!(
            r("unix:///run/d.sock").unwrap(),
            Endpoint::Unix("/run/d.sock".into())
        );
        assert_eq!(
            r("/run/d.sock").unwrap(),
            Endpoint::Unix("/run/d.sock".into())
        );
        assert_eq!(
            r("tcp://10.0.0.1").unwrap(),
            Endpoint::Tcp {
                authority: "10.0.0.1:2375".into(),
                tls: None
            }
        );
        assert_eq!(
            r("http://[::1]:2375/").unwrap(),
            Endpoint::Tcp {
                authority: "[::1]:2375".into(),
                tls: None
            }
        );
        let ca = Path::new("/ca.pem");
        assert_eq!(
            Endpoint::resolve(Some("tcp://m1"), Some(ca), None, None).unwrap(),
            Endpoint::Tcp {
                authority: "m1:2376".into(),
                tls: Some(TlsFiles {
                    ca: ca.into(),
                    cert: None,
                    key: None
                })
            }
        );
        assert!(r("ssh://x").is_err());
        assert!(r("tcp://").is_err());
        assert!(r("docker.sock").is_err());
        assert_eq!(r("tcp://m1:2376").unwrap().to_string(), "tcp://m1:2376");
    }

    #[test]
    fn encodes_filters() {
        assert_eq!(
            encode_component(r#"{"service":["a b"]}"#),
            "%7B%22service%22%3A%5B%22a%20b%22%5D%7D"
        );
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert_eq!(parse_api_version("x"), None);
    }

    #[test]
    fn io_errors_say_what_to_do() {
        let p = Path::new("/var/run/docker.sock");
        let e = classify_io(
            p,
            "unix:///var/run/docker.sock",
            &io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(matches!(e, Error::PermissionDenied { .. }));
        assert!(e.to_string().contains("docker"), "{e}");
        let e = classify_io(
            p,
            "unix:///var/run/docker.sock",
            &io::Error::from(io::ErrorKind::NotFound),
        );
        assert!(matches!(e, Error::SocketMissing { .. }));
        let e = classify_io(
            p,
            "unix:///var/run/docker.sock",
            &io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        assert!(e.to_string().contains("refused"), "{e}");
    }
}
