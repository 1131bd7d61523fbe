//! The notification sink records what it receives and really goes down and comes back up.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::time::Duration;

use kube_harness::NotificationSink;

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

async fn post_with(client: &HttpClient, url: &str, body: &'static str) -> Result<u16, String> {
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("x-idempotency-key", "k-1")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )))
        .unwrap();
    client
        .request(req)
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

async fn post(url: &str, body: &'static str) -> Result<u16, String> {
    post_with(&http_client(), url, body).await
}

#[tokio::test]
async fn records_posts_with_headers_and_body() {
    let sink = NotificationSink::start().await.unwrap();
    assert_eq!(
        post(&sink.url(), r#"{"outcome":"provisioned"}"#).await,
        Ok(200)
    );
    let got = sink.wait_for(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/notify");
    assert_eq!(got[0].header("X-Idempotency-Key"), Some("k-1"));
    assert_eq!(got[0].json().unwrap()["outcome"], "provisioned");
}

#[tokio::test]
async fn wait_for_is_bounded() {
    let sink = NotificationSink::start().await.unwrap();
    assert!(sink.wait_for(1, Duration::from_millis(200)).await.is_err());
}

#[tokio::test]
async fn can_answer_errors() {
    let sink = NotificationSink::start().await.unwrap();
    sink.respond_with(503);
    assert_eq!(post(&sink.url(), "{}").await, Ok(503));
    sink.respond_with(200);
    assert_eq!(post(&sink.url(), "{}").await, Ok(200));
    assert_eq!(sink.received().len(), 2);
}

#[tokio::test]
async fn down_refuses_connections_and_up_delivers_on_the_same_url() {
    let sink = NotificationSink::start().await.unwrap();
    let url = sink.url();
    // One client throughout: its pooled keep-alive connection must not survive go_down either.
    let client = http_client();
    assert_eq!(post_with(&client, &url, "{}").await, Ok(200));
    sink.go_down();
    let refused = tokio::net::TcpStream::connect(sink.addr()).await;
    assert!(refused.is_err(), "connection accepted while down");
    assert!(post_with(&client, &url, "{}").await.is_err());
    assert_eq!(sink.received().len(), 1);
    sink.come_up().await.unwrap();
    assert_eq!(sink.url(), url);
    assert_eq!(post_with(&client, &url, r#"{"n":2}"#).await, Ok(200));
    let got = sink.wait_for(2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got[1].json().unwrap()["n"], 2);
}
