//! WebSocket proxying with no extra directive: a Tornado echo through gale, with gale's own
//! minimal client and with Tornado's client; a refused upgrade passed through without a
//! tunnel; many sockets at once; the per-route cap; close propagation; the idle timeout.

use std::io::{Read, Write};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use gale_tests::ws::{self, Message};
use gale_tests::{Tornado, paths, wait_until};

use crate::pool;

/// Tornado's counter `key` (`ws-open`, `ws-close`) from `/stats`.
fn stat(tornado: &Tornado, key: &str) -> u64 {
    tornado.stats().hits.get(key).copied().unwrap_or(0)
}

/// How many WebSockets Tornado has open now.
fn open_sockets(tornado: &Tornado) -> u64 {
    tornado.inflight("ws")
}

#[test]
fn tornado_websocket_echo_through_gale() {
    let (tornadoes, gale) = pool(1, |c| c);
    let mut socket = ws::connect(gale.addr(), "/ws");
    socket.echo("hello");
    socket.echo("");
    socket.echo(&"x".repeat(70_000)); // a 16-bit length frame
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 249) as u8).collect();
    socket.send_binary(&blob).expect("send binary"); // a 64-bit length frame
    assert_eq!(socket.recv().expect("binary echo"), Message::Binary(blob));

    // Host reached Tornado unchanged (its Origin check passed), the scheme is http.
    let who: serde_json::Value = serde_json::from_str(&socket.ask("__whoami__")).expect("whoami JSON");
    assert_eq!(who["host"], gale.addr().to_string(), "{who}");
    assert_eq!(who["protocol"], "http", "{who}");
    assert_eq!(who["remote_ip"], "127.0.0.1", "{who}");
    assert_eq!(stat(&tornadoes[0], "ws-open"), 1);
    assert_eq!(open_sockets(&tornadoes[0]), 1);
}

/// A Python script using Tornado's own WebSocket client: sends three messages, prints the
/// echoes as JSON.
const TORNADO_CLIENT: &str = r#"
import asyncio, json, sys
from tornado.websocket import websocket_connect

async def main():
    conn = await websocket_connect(sys.argv[1])
    out = []
    for msg in ["one", "two", "three" * 1000]:
        await conn.write_message(msg)
        out.append(await conn.read_message())
    conn.close()
    print(json.dumps(out))

asyncio.run(asyncio.wait_for(main(), 30))
"#;

#[test]
fn tornados_own_websocket_client_works_through_gale() {
    let (tornadoes, gale) = pool(1, |c| c);
    let mut command = Command::new(paths::python());
    command.args(["-c", TORNADO_CLIENT, &format!("ws://{}/ws", gale.addr())]);
    let out = gale_tests::process::output(command, "Tornado's WebSocket client", Duration::from_secs(60))
        .expect("run the Tornado client");
    assert!(out.status.success(), "Tornado's client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let echoes: Vec<String> = serde_json::from_slice(&out.stdout).expect("the client's JSON");
    assert_eq!(echoes, ["one".to_owned(), "two".to_owned(), "three".repeat(1000)]);
    wait_until(Duration::from_secs(20), "Tornado to see the client's close", || stat(&tornadoes[0], "ws-close") == 1);
}

#[test]
fn a_refused_upgrade_reaches_the_client_and_makes_no_tunnel() {
    // One tunnel allowed on the route: a refused handshake that kept its slot would block the
    // real WebSocket afterwards.
    let (tornadoes, gale) = pool(1, |c| {
        c.location("path = \"/ws\"\nproxy = { pass = \"tornadoes\", max_tunnels = 1 }")
            .location("path = \"/ws-refuse\"\nproxy = { pass = \"tornadoes\", max_tunnels = 1 }")
    });
    for _ in 0..3 {
        let refused = match ws::try_connect(gale.addr(), "/ws-refuse").expect("handshake I/O") {
            Ok(_) => panic!("a refused upgrade became a WebSocket"),
            Err(refused) => refused,
        };
        assert_eq!(refused.status, 403, "the backend's answer must reach the client");
        assert_eq!(refused.text(), "upgrade refused by the backend\n");
        assert!(refused.header("upgrade").is_none(), "no Upgrade header on a refusal: {:?}", refused.headers);

        // The connection is still HTTP, served by gale (which adds X-Real-IP and X-Scheme),
        // not a raw tunnel to the backend's connection.
        let mut stream = refused.stream;
        let host = gale.addr().to_string();
        write!(
            stream.get_mut(),
            "GET /whoami HTTP/1.1\r\nHost: {host}\r\nX-Scheme: forged\r\nConnection: close\r\n\r\n"
        )
        .expect("write the next request");
        let mut rest = String::new();
        stream.read_to_string(&mut rest).expect("read the next response");
        assert!(rest.starts_with("HTTP/1.1 200"), "the next request on the connection got:\n{rest}");
        let body = rest.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let who: serde_json::Value = serde_json::from_str(body).expect("whoami JSON");
        assert_eq!(who["protocol"], "http", "the request bypassed gale (X-Scheme not overwritten): {who}");
    }
    assert_eq!(tornadoes[0].hits("/ws-refuse"), 3);
    assert_eq!(stat(&tornadoes[0], "ws-open"), 0);

    let mut socket = ws::connect(gale.addr(), "/ws");
    socket.echo("the only tunnel slot was free");
}

#[test]
fn fifty_concurrent_websockets_all_echo() {
    const N: usize = 50;
    let (tornadoes, gale) = pool(1, |c| c);
    let addr = gale.addr();
    let opened = Arc::new(Barrier::new(N + 1));
    let checked = Arc::new(Barrier::new(N + 1));
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let (opened, checked) = (opened.clone(), checked.clone());
            thread::spawn(move || {
                let mut socket = ws::connect(addr, "/ws");
                opened.wait();
                for j in 0..20 {
                    socket.echo(&format!("socket {i} message {j} {}", "#".repeat(i * 37 + j)));
                }
                checked.wait();
                socket.send_close(1000).expect("send close");
                assert!(matches!(socket.recv(), Ok(Message::Close(Some(1000), _))), "socket {i}: close not answered");
            })
        })
        .collect();
    opened.wait();
    // Every socket is open at once, each its own tunnel to Tornado.
    assert_eq!(open_sockets(&tornadoes[0]), N as u64);
    checked.wait();
    for (i, client) in clients.into_iter().enumerate() {
        client.join().unwrap_or_else(|_| panic!("client {i} failed"));
    }
    wait_until(Duration::from_secs(20), "Tornado to see every socket closed", || {
        stat(&tornadoes[0], "ws-close") == N as u64
    });
    assert_eq!(stat(&tornadoes[0], "ws-open"), N as u64);
    assert_eq!(open_sockets(&tornadoes[0]), 0);
}

#[test]
fn max_tunnels_caps_open_websockets_with_503() {
    let (tornadoes, gale) =
        pool(1, |c| c.location("path = \"/ws\"\nproxy = { pass = \"tornadoes\", max_tunnels = 2 }"));
    let mut first = ws::connect(gale.addr(), "/ws");
    let mut second = ws::connect(gale.addr(), "/ws");
    match ws::try_connect(gale.addr(), "/ws").expect("handshake I/O") {
        Ok(_) => panic!("a third WebSocket opened past max_tunnels = 2"),
        Err(refused) => assert_eq!(refused.status, 503, "over the cap: {} {}", refused.status, refused.text()),
    }
    assert_eq!(stat(&tornadoes[0], "ws-open"), 2, "the refused handshake must not reach Tornado");
    first.echo("still fine");
    second.echo("still fine");

    // Closing one frees its slot.
    first.send_close(1000).expect("send close");
    assert!(matches!(first.recv(), Ok(Message::Close(..))));
    assert!(first.at_eof(), "the close handshake must end the connection");
    drop(first);
    let mut third = None;
    wait_until(Duration::from_secs(20), "a slot to free up after a close", || {
        match ws::try_connect(gale.addr(), "/ws").expect("handshake I/O") {
            Ok(socket) => {
                third = Some(socket);
                true
            }
            Err(refused) => {
                assert_eq!(refused.status, 503);
                false
            }
        }
    });
    third.expect("third socket").echo("in the freed slot");
    second.echo("the other one is untouched");
}

#[test]
fn closing_either_side_closes_the_other() {
    let (tornadoes, gale) = pool(1, |c| c);
    let tornado = &tornadoes[0];

    // A clean close from the client: Tornado's on_close runs, Tornado's close frame comes
    // back, then the connection ends.
    let mut socket = ws::connect(gale.addr(), "/ws");
    socket.echo("one");
    socket.send_close(1000).expect("send close");
    assert!(matches!(socket.recv(), Ok(Message::Close(Some(1000), _))), "Tornado's close frame must come back");
    assert!(socket.at_eof(), "the connection must end after the close handshake");
    wait_until(Duration::from_secs(20), "on_close after a clean close", || stat(tornado, "ws-close") == 1);

    // A client that vanishes (TCP closed, no close frame): gale must close the backend side.
    let mut socket = ws::connect(gale.addr(), "/ws");
    socket.echo("two");
    assert_eq!(open_sockets(tornado), 1);
    socket.abort();
    wait_until(Duration::from_secs(20), "on_close after the client vanished", || stat(tornado, "ws-close") == 2);
    assert_eq!(open_sockets(tornado), 0);

    // The backend closes: the client gets its close frame, then EOF.
    let mut socket = ws::connect(gale.addr(), "/ws");
    socket.send_text("__close__").expect("ask the backend to close");
    assert_eq!(socket.recv().expect("close frame"), Message::Close(Some(1000), "closed by the backend".into()));
    socket.send_close(1000).expect("answer the close");
    assert!(socket.at_eof(), "the client connection must end when the backend closed");
    wait_until(Duration::from_secs(20), "on_close after the backend closed", || stat(tornado, "ws-close") == 3);
}

#[test]
fn tunnel_idle_timeout_is_separate_from_read_timeout() {
    // read_timeout would cut a quiet tunnel after 1 s if it applied to tunnels; it must not.
    let (tornadoes, gale) = pool(1, |c| {
        c.upstream("read_timeout", "1s")
            .location("path = \"/ws\"\nproxy = { pass = \"tornadoes\", tunnel_idle_timeout = \"1h\" }")
            .location("path = \"/idle/\"\nproxy = { pass = \"tornadoes\", tunnel_idle_timeout = \"1s\" }")
    });
    let mut quiet = ws::connect(gale.addr(), "/ws");
    quiet.echo("before the pause");
    thread::sleep(Duration::from_millis(2500));
    quiet.echo("after 2.5 s of silence, past read_timeout: still open");

    // On the route with a 1 s idle timeout, a silent tunnel is closed on both sides.
    let mut idle = ws::connect(gale.addr(), "/idle/ws");
    idle.echo("then silence");
    assert!(idle.at_eof(), "gale must close a tunnel idle past tunnel_idle_timeout (read timeout: 20 s)");
    wait_until(Duration::from_secs(20), "Tornado to see the idle tunnel closed", || {
        stat(&tornadoes[0], "ws-close") == 1
    });
    quiet.echo("the other route's tunnel is untouched");
}

#[test]
fn max_tunnels_still_counts_tunnels_opened_before_a_reload() {
    let (tornadoes, gale) =
        pool(1, |c| c.location("path = \"/ws\"\nproxy = { pass = \"tornadoes\", max_tunnels = 2 }"));
    let mut first = ws::connect(gale.addr(), "/ws");
    let mut second = ws::connect(gale.addr(), "/ws");

    // The same config again: the route and its cap are unchanged, and two tunnels are open.
    let config = std::fs::read_to_string(gale.config_path()).expect("read gale.toml");
    gale_tests::reload::sighup(&gale, &config).expect_reloaded();
    first.echo("open across the reload");
    second.echo("open across the reload");
    match ws::try_connect(gale.addr(), "/ws").expect("handshake I/O") {
        Ok(_) => panic!(
            "a third WebSocket opened past max_tunnels = 2 after a reload (Tornado has {} open)",
            open_sockets(&tornadoes[0])
        ),
        Err(refused) => assert_eq!(refused.status, 503, "over the cap: {} {}", refused.status, refused.text()),
    }
}
