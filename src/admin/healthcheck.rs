//! `scangate healthcheck`: one plain HTTP GET against the admin listener, for Docker's
//! `HEALTHCHECK` in an image that has no curl.

use std::time::Duration;

use http::{header, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

/// Why the check could not get a status.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// Only `http://host:port/path` is supported (the admin listener is plain HTTP).
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
}

/// GETs `url` and returns the status, giving up after `timeout`.
pub async fn healthcheck(url: &str, timeout: Duration) -> Result<StatusCode, HealthcheckError> {
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
