//! Spreading requests over the pool: round robin (with weights) and least_conn.

use std::thread;
use std::time::Duration;

use gale_tests::http::Request;
use gale_tests::{ConfigBuilder, Tornado, Whoami, wait_until};

use crate::{count_by_port, pool};

#[test]
fn round_robin_spreads_16_requests_evenly_over_four_tornadoes() {
    let (tornadoes, gale) = pool(4, |c| c.upstream("balance", "round_robin"));
    let ports: Vec<u16> = (0..16).map(|_| gale.get("/whoami").expect_status(200).json::<Whoami>().port).collect();
    assert_eq!(count_by_port(&tornadoes, &ports), [4, 4, 4, 4], "ports: {ports:?}");
}

#[test]
fn round_robin_is_per_request_not_per_client_connection() {
    let (tornadoes, gale) = pool(4, |c| c);
    let mut conn = gale.conn();
    let ports: Vec<u16> = (0..8)
        .map(|_| {
            let response = conn.send(&Request::get("/whoami"));
            response.expect_status(200);
            response.json::<Whoami>().port
        })
        .collect();
    assert_eq!(count_by_port(&tornadoes, &ports), [2, 2, 2, 2], "ports: {ports:?}");
}

#[test]
fn weights_share_requests_in_proportion() {
    let heavy = Tornado::spawn("heavy");
    let light = Tornado::spawn("light");
    let gale = ConfigBuilder::new([]).weighted(heavy.addr(), 3).weighted(light.addr(), 1).start();
    let ports: Vec<u16> = (0..8).map(|_| gale.get("/whoami").expect_status(200).json::<Whoami>().port).collect();
    let pair = [heavy, light];
    assert_eq!(count_by_port(&pair, &ports), [6, 2], "ports: {ports:?}");
}

#[test]
fn least_conn_avoids_the_backend_busy_with_a_slow_request() {
    let (tornadoes, gale) = pool(2, |c| c.upstream("balance", "least_conn"));
    let addr = gale.addr();
    let slow = thread::spawn(move || {
        let response = gale_tests::http::get(addr, "/slow?s=5");
        response.expect_status(200);
        let body: serde_json::Value = response.json();
        body["port"].as_u64().expect("port")
    });
    wait_until(Duration::from_secs(10), "the slow request to reach a backend", || {
        tornadoes.iter().map(|t| t.inflight("/slow")).sum::<u64>() == 1
    });
    let busy = tornadoes.iter().find(|t| t.inflight("/slow") == 1).map(Tornado::port).expect("a busy backend");
    let quick: Vec<u16> = (0..6).map(|_| gale.get("/whoami").expect_status(200).json::<Whoami>().port).collect();
    assert!(quick.iter().all(|p| *p != busy), "least_conn sent quick requests to the busy backend {busy}: {quick:?}");
    assert_eq!(slow.join().expect("slow request thread"), u64::from(busy));
}
