//! The floor under the gateway's cost, for `scripts/bench-compare`: a minimal reverse proxy on
//! the same stack (tokio, hyper's server, the gateway's upstream connection pool) that forwards
//! every request to one backend unchanged — no authentication, routing, signing, metrics or
//! logging. It runs on the gateway's runtime choice: one worker thread per available CPU, a
//! current-thread runtime on one.
//!
//!   cargo run --release --example passthrough -- LISTEN_ADDR BACKEND_ADDR

use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use genesys_lambda_gateway::runtime;
use genesys_lambda_gateway::upstream::{Host, Pool};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

/// The gateway's own response limit.
const LIMIT: usize = genesys_lambda_gateway::invoke::MAX_RESPONSE_BYTES;

async fn forward(
    upstream: Arc<Host>,
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await else {
        return Ok(status(http::StatusCode::BAD_REQUEST));
    };
    let request = http::Request::from_parts(parts, Full::new(body.to_bytes()));
    let Ok((parts, body)) = upstream.send(request, LIMIT).await else {
        return Ok(status(http::StatusCode::BAD_GATEWAY));
    };
    Ok(http::Response::from_parts(parts, Full::new(body)))
}

fn status(status: http::StatusCode) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::default());
    *response.status_mut() = status;
    response
}

fn main() -> std::io::Result<()> {
    let workers = runtime::workers_from_env().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(64);
    });
    runtime::build(workers)?.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        eprintln!("usage: passthrough LISTEN_ADDR BACKEND_ADDR");
        std::process::exit(64);
    };
    let backend: SocketAddr = backend.parse().expect("BACKEND_ADDR is host:port");
    let pool = Pool::new(Duration::from_secs(50), 1024)?;
    let upstream = pool
        .host(&format!("http://{backend}"))
        .expect("BACKEND_ADDR makes a valid origin");
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let upstream = upstream.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(tower::service_fn(move |request| {
                forward(upstream.clone(), request)
            }));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
