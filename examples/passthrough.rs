//! The floor under the gateway's cost, for `scripts/bench-compare`: a minimal reverse proxy on
//! the same stack (tokio, hyper's server, hyper-util's pooled client) that forwards every request
//! to one backend unchanged — no authentication, routing, signing, metrics or logging.
//!
//!   cargo run --release --example passthrough -- LISTEN_ADDR BACKEND_ADDR

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

type Upstream = Client<HttpConnector, Full<Bytes>>;

async fn forward(
    client: Upstream,
    backend: SocketAddr,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let (mut parts, body) = request.into_parts();
    let Ok(body) = body.collect().await else {
        return Ok(status(http::StatusCode::BAD_REQUEST));
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{backend}{path}")
        .parse()
        .expect("a valid URI");
    let request = http::Request::from_parts(parts, Full::new(body.to_bytes()));
    let Ok(response) = client.request(request).await else {
        return Ok(status(http::StatusCode::BAD_GATEWAY));
    };
    let (parts, body) = response.into_parts();
    let Ok(body) = body.collect().await else {
        return Ok(status(http::StatusCode::BAD_GATEWAY));
    };
    Ok(http::Response::from_parts(
        parts,
        Full::new(body.to_bytes()),
    ))
}

fn status(status: http::StatusCode) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::default());
    *response.status_mut() = status;
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        eprintln!("usage: passthrough LISTEN_ADDR BACKEND_ADDR");
        std::process::exit(64);
    };
    let backend: SocketAddr = backend.parse().expect("BACKEND_ADDR is host:port");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(tower::service_fn(move |request| {
                forward(client.clone(), backend, request)
            }));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
