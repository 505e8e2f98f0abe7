//! CloudFront invalidations against a loopback stand-in that verifies SigV4 itself, and the
//! fan-out client purging several providers with one call.
#![cfg(all(feature = "purge", feature = "cloudfront"))]
mod cloudfront;
mod support;

use std::time::Duration;

use cachefront_origin::purge::{
    AwsCredentials, CloudFrontPurge, EdgePurge, FanoutPurge, Outcome, PurgeClient, PurgeConfig,
    PurgeRequest,
};
use cloudfront::{CfReply, CloudFrontStandIn, ACCESS_KEY, DISTRIBUTION, SECRET_KEY};
use support::{edge_contract, PurgeStandIn};

fn fast_retries() -> PurgeConfig {
    PurgeConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_attempts: 3,
        ..Default::default()
    }
}

fn cloudfront(stand_in: &CloudFrontStandIn) -> CloudFrontPurge {
    CloudFrontPurge::new(
        DISTRIBUTION,
        AwsCredentials::new(ACCESS_KEY, SECRET_KEY, None),
    )
    .api_base(&stand_in.base())
}

/// The edge first, then CloudFront, both behind their stand-ins.
fn edge_and_cloudfront(edge: &PurgeStandIn, cf: &CloudFrontStandIn) -> FanoutPurge {
    FanoutPurge::new(fast_retries())
        .provider(EdgePurge::new(&edge.base(), "edge-secret"))
        .provider(cloudfront(cf))
}

/// One product page's URL.
fn product_1() -> PurgeRequest {
    PurgeRequest {
        urls: vec!["https://shop.example/products/1".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn cloudfront_invalidation_has_the_documented_shape_and_a_valid_signature() {
    let cf = CloudFrontStandIn::start(vec![]).await;
    let client = PurgeClient::new(cloudfront(&cf), fast_retries());
    client.purge_urls([
        "https://shop.example/products/1?page=2",
        "https://shop.example/a&b",
    ]);
    client.purge_prefixes(["shop.example/blog/"]);
    client.flush().await;

    assert!(cf.violations().is_empty(), "{:?}", cf.violations());
    let got = cf.accepted();
    let mut paths: Vec<String> = got.iter().flat_map(|i| i.paths.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/a&b", "/blog/*", "/products/1"]);
    let mut refs: Vec<&str> = got.iter().map(|i| i.caller_reference.as_str()).collect();
    refs.dedup();
    assert_eq!(
        refs.len(),
        got.len(),
        "each invalidation has its own CallerReference"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_caught_by_the_stand_ins_own_signature_check() {
    let cf = CloudFrontStandIn::start(vec![]).await;
    let fanout = FanoutPurge::new(fast_retries()).provider(
        CloudFrontPurge::new(
            DISTRIBUTION,
            AwsCredentials::new(ACCESS_KEY, "not-the-secret", None),
        )
        .api_base(&cf.base()),
    );
    let receipt = fanout
        .purge(&PurgeRequest {
            urls: vec!["https://shop.example/x".into()],
            ..Default::default()
        })
        .await;
    assert_eq!(receipt.providers[0].outcome, Outcome::Failed);
    assert!(receipt.providers[0].errors[0].contains("403"));
    assert_eq!(cf.violations().len(), 1, "a rejection is not retried");
}

#[tokio::test]
async fn fanout_purges_every_provider_and_gives_a_receipt_each() {
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    let cf = CloudFrontStandIn::start(vec![]).await;
    let fanout = edge_and_cloudfront(&edge, &cf);
    let receipt = fanout.purge(&product_1()).await;
    assert!(receipt.all_ok(), "{receipt:?}");
    assert_eq!(fanout.provider_names(), ["edge", "cloudfront"]);
    let names: Vec<&str> = receipt.providers.iter().map(|p| p.provider).collect();
    assert_eq!(names, ["edge", "cloudfront"]);
    assert!(receipt
        .providers
        .iter()
        .all(|p| p.outcome == Outcome::Ok && p.succeeded == 1));
    assert_eq!(edge.received().len(), 1);
    assert_eq!(cf.accepted()[0].paths, ["/products/1"]);
}

#[tokio::test]
async fn one_failing_provider_is_reported_without_hiding_the_others_success() {
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    // CloudFront keeps refusing with a permanent error.
    let cf = CloudFrontStandIn::start(vec![CfReply(403, "AccessDenied"); 5]).await;
    let fanout = edge_and_cloudfront(&edge, &cf);
    let receipt = fanout.purge(&product_1()).await;
    assert!(!receipt.all_ok());
    assert_eq!(receipt.providers[0].outcome, Outcome::Ok);
    assert_eq!(receipt.providers[1].outcome, Outcome::Failed);
    assert!(receipt.providers[1].errors[0].contains("AccessDenied"));
    let failed: Vec<&str> = receipt.failures().map(|p| p.provider).collect();
    assert_eq!(failed, ["cloudfront"]);
    assert_eq!(cf.calls(), 1, "403 is final: no retry");
}

#[tokio::test]
async fn throttled_provider_is_retried_on_its_own() {
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    let cf = CloudFrontStandIn::start(vec![
        CfReply(400, "TooManyInvalidationsInProgress"),
        CfReply(503, "ServiceUnavailable"),
    ])
    .await;
    let fanout = edge_and_cloudfront(&edge, &cf);
    let receipt = fanout.purge(&product_1()).await;
    assert!(receipt.all_ok(), "{receipt:?}");
    assert_eq!(receipt.providers[0].attempts, 1, "the edge is not retried");
    assert_eq!(receipt.providers[1].attempts, 3);
    assert_eq!(cf.accepted().len(), 1);
    assert_eq!(edge.received().len(), 1);
}

#[tokio::test]
async fn tags_are_unsupported_on_cloudfront_yet_purged_on_the_edge() {
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    let cf = CloudFrontStandIn::start(vec![]).await;
    let fanout = edge_and_cloudfront(&edge, &cf);
    let receipt = fanout
        .purge(&PurgeRequest {
            tags: vec!["Product:1".into(), "bad tag\u{7f}".into()],
            ..Default::default()
        })
        .await;
    assert_eq!(receipt.providers[0].outcome, Outcome::Ok);
    assert_eq!(receipt.providers[1].outcome, Outcome::Unsupported);
    assert!(receipt.all_ok(), "unsupported is not a failure");
    assert_eq!(receipt.invalid.len(), 1, "{:?}", receipt.invalid);
    assert_eq!(cf.calls(), 0);
    assert!(edge.violations().is_empty(), "{:?}", edge.violations());
}
