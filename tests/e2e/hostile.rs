//! Hostile clients of the HTTP ingest endpoint (issue 16): strangers who
//! send large bodies without a token, hold connections open or trickle
//! bytes, and an authorized sender whose body would swell in memory. The
//! process's peak memory (VmHWM) is measured, not guessed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use velonotify_test_support::peers::free_port;
use velonotify_test_support::service::{Running, metric, peak_rss_kib, post_events, rows_reaching};
use velonotify_test_support::{scratch, stderr};

use super::{EXE, velonotify, write_config};

const TOKEN: &str = "ingest-token-0123456789";

/// A service with the ingest endpoint on `port` and `limits` added to its
/// `[ingest]` section, and one module watching `Custom.Ingest`.
fn ingest_service(dir: &std::path::Path, port: u16, limits: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "[host]\nstate = \"state.db\"\n[ingest]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n{limits}\n\
             [[module]]\nname = \"detect\"\npath = \"detect.wasm\"\n[module.params]\nQueue = \"Custom.Ingest\"\n\
             Condition = \"Column,Regex\\nName,^never$\\n\"\nAlertName = \"{{Name}}\"\n"
        ),
    )
}

fn started(config: &std::path::Path) -> Running {
    let mut run = Running::start(EXE, config);
    run.wait("the endpoint", Duration::from_secs(60), |r| {
        r.log().contains("HTTP ingest at")
    });
    run
}

/// Sends a POST's headers (no body yet) and returns the connection.
fn post_headers(port: u16, token: Option<&str>, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "POST /v1/events?queue=Custom.Ingest HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {length}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    stream
}

/// The status of the answer on `stream`, read within `within` (0: the
/// connection ended without one; None: nothing came in time).
fn status_within(stream: &mut TcpStream, within: Duration) -> Option<u16> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    Some(text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0))
}

/// Whether the server closed `stream` within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Forty strangers posting 15 MB each: answered 401 from their headers,
/// their bodies never held; the process's peak memory barely moves.
#[test]
fn bodies_without_a_token_are_refused_unread_and_cost_no_memory() {
    let dir = scratch();
    let port = free_port();
    let run = started(&ingest_service(dir.path(), port, ""));
    let before = peak_rss_kib(run.child.id());
    let body = vec![b'x'; 15_000_000];
    let strangers: Vec<_> = (0..40)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut stream = post_headers(port, None, body.len());
                let status = status_within(&mut stream, Duration::from_secs(10));
                // Sent anyway, as an attacker would.
                let _ = stream.write_all(&body);
                status
            })
        })
        .collect();
    for stranger in strangers {
        assert_eq!(stranger.join().unwrap(), Some(401), "answered from the headers alone");
    }
    let grown_mib = peak_rss_kib(run.child.id()).saturating_sub(before) / 1024;
    eprintln!("40 unauthenticated 15 MB posts: peak memory grew {grown_mib} MiB");
    assert!(grown_mib < 40, "peak memory grew {grown_mib} MiB");
    // A body over the limit without a token is a 401 too, not a 413.
    let mut stream = post_headers(port, None, 100_000_000);
    assert_eq!(status_within(&mut stream, Duration::from_secs(10)), Some(401));
}

/// An authorized 16 MB body of `{}` lines (5.6 million rows) is refused at
/// the row past `max_rows`, before its rows become events.
#[test]
fn a_body_of_countless_tiny_rows_is_refused_with_memory_bounded() {
    let dir = scratch();
    let port = free_port();
    let run = started(&ingest_service(dir.path(), port, ""));
    let before = peak_rss_kib(run.child.id());
    let lines = "{}\n".repeat(16_000_000 / 3);
    let (status, answer) = post_events(port, Some(TOKEN), "queue=Custom.Ingest", lines.as_bytes());
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("more than 10000 rows in one body"), "{answer}");
    let array = format!("[{}{{}}]", "{},".repeat(16_000_000 / 3 - 1));
    assert_eq!(
        post_events(port, Some(TOKEN), "queue=Custom.Ingest", array.as_bytes()).0,
        413
    );
    let grown_mib = peak_rss_kib(run.child.id()).saturating_sub(before) / 1024;
    eprintln!("two authorized 16 MB bodies of tiny rows: peak memory grew {grown_mib} MiB");
    assert!(grown_mib < 100, "peak memory grew {grown_mib} MiB");
}

/// Clients that hold connections: headers or a body sent a byte at a time
/// are cut after their timeout; past `max_connections` a connection is
/// closed on arrival; then a sender gets through again.
#[test]
fn slow_and_surplus_connections_are_cut() {
    let dir = scratch();
    let port = free_port();
    let limits = "max_connections = 4\nheader_timeout_s = 1\nbody_timeout_s = 1\n";
    let _run = started(&ingest_service(dir.path(), port, limits));

    // Headers a byte at a time.
    let mut trickle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    for byte in b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: yes" {
        if trickle.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    assert!(
        closed_within(&mut trickle, Duration::from_secs(2)),
        "headers trickled: still open"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body that never comes.
    let mut stalled = post_headers(port, Some(TOKEN), 100);
    stalled.write_all(b"{\"Name\":").unwrap();
    assert_eq!(status_within(&mut stalled, Duration::from_secs(5)), Some(408));

    // Four idle connections fill the room: a fifth is closed at once.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut surplus = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let arrived = Instant::now();
    assert!(
        closed_within(&mut surplus, Duration::from_millis(900)),
        "a fifth connection was kept"
    );
    assert!(arrived.elapsed() < Duration::from_millis(900));
    std::thread::sleep(Duration::from_millis(1500)); // the idle ones time out
    drop(idle);
    let (status, answer) = post_events(port, Some(TOKEN), "queue=Custom.Ingest", b"{\"Name\":\"a\"}\n");
    assert_eq!((status, answer.as_str()), (200, "{\"accepted\":1,\"unwatched\":0}"));
}

/// Numbers from input that would overflow the host's time arithmetic are
/// refused where they come in, naming what is wrong; the rest goes on.
#[test]
fn times_and_numbers_past_what_the_host_can_count_are_refused_by_name() {
    let dir = scratch();
    let config = write_config(
        dir.path(),
        "[[module]]\nname = \"soc-mail\"\npath = \"alerts.wasm\"\n[module.params]\n\
         Recipients = \"Address\\nsoc@example.org\\n\"\n",
    );
    let events = dir.path().join("events.jsonl");
    let row = |ts: &str, name: &str| {
        format!(
            "{{\"_Source\":\"Server.Internal.Alerts\",\"_ts\":{ts},\"client_id\":\"C.1\",\"name\":\"{name}\",\
             \"timestamp\":\"2026-01-01T00:00:00Z\",\"event_data\":{{}}}}\n"
        )
    };
    std::fs::write(
        &events,
        row("1767000000", "first") + &row("1e300", "far") + &row("1767000060", "last"),
    )
    .unwrap();
    let (config_arg, events_arg) = (config.display().to_string(), events.display().to_string());
    let out = dir.path().join("out").display().to_string();
    let replay = |more: &[&str]| {
        let mut args = vec!["replay", "-c", &config_arg, "--events", &events_arg, "--out", &out];
        args.extend(more);
        velonotify(&args)
    };
    let output = replay(&[]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains("_ts 1e+300 is not epoch seconds (it is after the year 9999)"),
        "{err}"
    );
    let summary = std::fs::read_to_string(dir.path().join("out/summary.jsonl")).unwrap();
    assert_eq!(summary.lines().count(), 2, "the rows around it are handled: {summary}");

    let output = replay(&["--end", "99999999999999"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--end <TS>"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not in 0..=253402300799"),
        "{}",
        stderr(&output)
    );
    let output = velonotify(&["outbox", "-c", &config_arg, "purge", "--older-than-s", "18446744073710"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not in 0..=253402300799"),
        "{}",
        stderr(&output)
    );

    let huge = write_config(
        dir.path(),
        "[[module]]\nname = \"soc-mail\"\npath = \"alerts.wasm\"\n[module.params]\nSendInterval = \"9223372036854775807\"\n",
    );
    let output = velonotify(&["check", "-c", &huge.display().to_string()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output)
            .contains("parameter SendInterval: 9223372036854775807 is out of range (-1000000000 to 1000000000)"),
        "{}",
        stderr(&output)
    );
}

/// What the endpoint answers 200 for goes somewhere, or the answer, the log
/// and a counter say it went nowhere; a row no module could read is refused
/// naming its line; a token posts only for its orgs, refused before its
/// body is read.
#[test]
fn rows_are_taken_only_for_orgs_the_token_may_post_for_and_only_if_a_module_can_read_them() {
    let dir = scratch();
    let (port, metrics_port) = (free_port(), free_port());
    const O2_TOKEN: &str = "o2-ingest-token-0123456789";
    let config = ingest_service(
        dir.path(),
        port,
        &format!(
            "[[ingest.tokens]]\ntoken = \"{O2_TOKEN}\"\norgs = [\"O2\"]\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\""
        ),
    );
    let run = started(&config);
    let row = "{\"Name\":\"x\"}\n";

    let (status, answer) = post_events(port, Some(TOKEN), "queue=Custom.Ingest", row.repeat(2).as_bytes());
    assert_eq!((status, answer.as_str()), (200, r#"{"accepted":2,"unwatched":0}"#));
    let (status, answer) = post_events(port, Some(TOKEN), "queue=Custom.Elsewhere", row.repeat(3).as_bytes());
    assert_eq!((status, answer.as_str()), (200, r#"{"accepted":3,"unwatched":3}"#));
    assert!(
        run.log().contains(
            "ingest: rows no module watches, handled by nobody: 3 for org \"root\" queue \"Custom.Elsewhere\""
        ),
        "{}",
        run.log()
    );
    assert_eq!(metric(metrics_port, "velonotify_events_unwatched_total"), 3);

    let deep = format!("{{\"Name\":{}1{}}}\n", "[".repeat(200_000), "]".repeat(200_000));
    for (bad, why) in [
        (deep.as_str(), "recursion limit exceeded"),
        ("{\"Name\":\"\\ud800\"}\n", "hex escape"),
        ("{\"Name\":1e999}\n", "number out of range"),
    ] {
        let body = format!("{row}{bad}{row}");
        let (status, answer) = post_events(port, Some(TOKEN), "queue=Custom.Ingest", body.as_bytes());
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer.contains("line 2: malformed JSON") && answer.contains(why),
            "{answer}"
        );
    }

    // The root token may not post for O2, nor the O2 token for root; the
    // refusal comes from the headers (the body is never sent).
    let mut stream = post_headers_for(port, TOKEN, "O2");
    assert_eq!(status_within(&mut stream, Duration::from_secs(10)), Some(403));
    let (status, answer) = post_events(port, Some(O2_TOKEN), "queue=Custom.Ingest", row.as_bytes());
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("may not post rows for org \\\"root\\\""), "{answer}");
    let (status, answer) = post_events(port, Some(O2_TOKEN), "queue=Custom.Ingest&org_id=O2", row.as_bytes());
    assert_eq!((status, answer.as_str()), (200, r#"{"accepted":1,"unwatched":1}"#));
    assert_eq!(rows_reaching(metrics_port, "detect"), 2);
}

/// A POST's headers for `org`, with a large body declared and not sent.
fn post_headers_for(port: u16, token: &str, org: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /v1/events?queue=Custom.Ingest&org_id={org} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 1000000\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream
}

/// A sender never waits without limit: a batch the service has not taken
/// within `answer_timeout_s` (here the service is held in each commit) is
/// answered 503 and left alone, never handled behind the sender's back;
/// a batch the service took is answered when it is committed.
#[test]
fn a_batch_not_taken_in_time_is_answered_503_and_never_handled() {
    let dir = scratch();
    let (port, metrics_port) = (free_port(), free_port());
    let config = ingest_service(
        dir.path(),
        port,
        &format!("answer_timeout_s = 1\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\""),
    );
    let mut run = Running::start_env(EXE, &config, &[("FAILPOINTS", "service::before-commit=sleep(3000)")]);
    run.wait("the endpoint", Duration::from_secs(60), |r| {
        r.log().contains("HTTP ingest at")
    });
    let first =
        std::thread::spawn(move || post_events(port, Some(TOKEN), "queue=Custom.Ingest", b"{\"Name\":\"a\"}\n"));
    // "a" is handled and held in its commit before "b" is sent.
    run.wait("the first batch in its commit", Duration::from_secs(30), |_| {
        rows_reaching(metrics_port, "detect") == 1
    });
    let started = Instant::now();
    let (status, answer) = post_events(port, Some(TOKEN), "queue=Custom.Ingest", b"{\"Name\":\"b\"}\n");
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("not taken within 1 s"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered at its deadline");
    let (status, answer) = first.join().unwrap();
    assert_eq!((status, answer.as_str()), (200, r#"{"accepted":1,"unwatched":0}"#));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        rows_reaching(metrics_port, "detect"),
        1,
        "the abandoned batch was not handled:\n{}",
        run.log()
    );
}
