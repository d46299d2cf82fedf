//! `scangate healthcheck`: one plain HTTP GET, exit 0 on 200 and 1 otherwise. It is the image's
//! Docker `HEALTHCHECK`: a scratch image has no curl.

use std::process::ExitCode;
use std::time::Duration;

use http::{header, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use super::process::{run_command, Failure, EXIT_USAGE};

/// `scangate healthcheck`'s flags.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to GET: the admin listener's readiness by default.
    #[arg(
        long,
        env = "SCANGATE_HEALTHCHECK_URL",
        default_value = "http://127.0.0.1:9090/readyz"
    )]
    pub url: String,
    /// Give up after this many milliseconds; Docker's own healthcheck timeout should be longer.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// Only `http://host:port/path` is supported: the admin listener is plain HTTP.
    #[error("{0}: expected http://host:port/path")]
    BadUrl(String),
    /// Nothing listens there, or the connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The exchange failed after connecting.
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An answer other than 200.
    #[error("{url}: {status}")]
    NotOk {
        /// The URL asked.
        url: String,
        /// What it answered.
        status: StatusCode,
    },
}

impl Failure for HealthcheckError {
    fn exit_code(&self) -> u8 {
        match self {
            HealthcheckError::BadUrl(_) => EXIT_USAGE,
            _ => 1,
        }
    }
}

/// Runs `scangate healthcheck` and returns its exit code.
pub fn run(args: HealthcheckArgs) -> ExitCode {
    let timeout = Duration::from_millis(args.timeout_ms);
    run_command("healthcheck", async move {
        match get(&args.url, timeout).await? {
            StatusCode::OK => Ok(()),
            status => Err(HealthcheckError::NotOk {
                url: args.url,
                status,
            }),
        }
    })
}

/// GETs `url` and returns the status, giving up after `timeout`.
pub async fn get(url: &str, timeout: Duration) -> Result<StatusCode, HealthcheckError> {
    let bad = || HealthcheckError::BadUrl(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") {
        return Err(bad());
    }
    let authority = uri.authority().ok_or_else(bad)?.clone();
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|source| HealthcheckError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let req = Request::get(path)
            .header(header::HOST, authority.as_str())
            .body(Empty::<bytes::Bytes>::new())
            .expect("a path and a host make a request");
        Ok(sender.send_request(req).await?.status())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HealthcheckError::Timeout(timeout))?
}
